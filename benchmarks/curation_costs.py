"""Benchmark: what each curation measure costs per hour of speech, on the corpus's speech.

    .venv/bin/python -m benchmarks.curation_costs [--corpus ../shared/corpus] [--clips 40]

The shipped functions on the same clips (the first ``--clips`` files of the corpus's speech
sources, whole): DNSMOS P.835 (``audio.dnsmos.DnsmosScorer``, one thread, as the VAD stage runs
it), the near-duplicate fingerprint (``audio.fingerprint.fingerprint``) and the text-plausibility
criteria (``curation.criteria.add_plausibility_criteria`` on the manifest transcripts). Printed:
audio seconds, wall seconds, audio seconds per wall second and CPU seconds per hour of audio.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from audio_platform.audio.decode import decode_mono_16k
from audio_platform.audio.dnsmos import DnsmosScorer
from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.audio.fingerprint import fingerprint
from audio_platform.curation.criteria import add_plausibility_criteria
from benchmarks.pipeline_bench import DEFAULT_CORPUS


def _timed(work: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``work``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--clips", type=int, default=40)
    args = parser.parse_args(argv)
    with open(args.corpus / "manifest.csv", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["kind"] == "speech" and r["transcript"]][: args.clips]
    clips = [decode_mono_16k(args.corpus / row["path"]) for row in rows]
    audio_s = sum(clip.size for clip in clips) / SAMPLE_RATE
    texts = pl.DataFrame(
        {
            "text": [row["transcript"] for row in rows],
            "duration_s": [clip.size / SAMPLE_RATE for clip in clips],
        }
    )
    scorer = DnsmosScorer(num_threads=1)
    measures = {
        "DNSMOS P.835 (SIG, BAK, OVRL)": lambda: scorer.score_many(clips),
        "near-duplicate fingerprint": lambda: [fingerprint(clip) for clip in clips],
        "text plausibility criteria": lambda: add_plausibility_criteria(texts),
    }
    print(f"{len(clips)} corpus speech clips, {audio_s:.1f} s of audio\n")
    print("| measure | wall s | audio s per wall s | CPU s per audio hour |")
    print("|---|---:|---:|---:|")
    for name, work in measures.items():
        wall, cpu = _timed(work)
        print(f"| {name} | {wall:.2f} | {audio_s / wall:.0f} | {cpu / audio_s * 3600:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
