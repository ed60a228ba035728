"""Benchmark: the ASR model profiles (`tiny.en`, `base`) on the corpus's transcribed speech.

    .venv/bin/python -m benchmarks.model_profiles [--corpus ../shared/corpus]

The corpus's files with a reference transcript go through the platform's stages once
(``pipeline_bench.run_platform_stages``: ingest, VAD, segment criteria); the shipped ASR stage
(``stages.transcribe_shard``) then decodes the same VAD segments, source group by source group, with
`tiny.en`, `base` in English and `base` detecting each file's language. Printed: per source group,
reference words, WER and ASR wall seconds per run (files whose reference is not English speech,
``pipeline_bench.WER_EXCLUDED``, are left out of WER), then the detected languages against the
files' known ones.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import polars as pl

from audio_platform.audio.asr import AsrConfig, WhisperTranscriber
from audio_platform.audio.pcm_cache import PcmCache
from audio_platform.definitions import build_definitions
from audio_platform.evaluation.wer import WerResult, corpus_wer
from audio_platform.settings import Settings
from audio_platform.stages import transcribe_shard
from benchmarks.pipeline_bench import (
    CORPUS,
    DEFAULT_CORPUS,
    WER_EXCLUDED,
    AsrInput,
    PlatformModels,
    Subset,
    _pct,
    _source,
    hypotheses_by_file,
    log,
    read_manifest,
    run_platform_stages,
)

RUNS = (
    ("tiny.en", AsrConfig()),
    ("base (en)", AsrConfig(model="base")),
    ("base (detected)", AsrConfig(model="base", language=None)),
)
# Languages of the transcribed corpus files other than English (the manifest's notes say so).
LANGUAGES = {"audio/deepspeech/ru.wav": "ru"}


def corpus_subset(corpus: Path) -> Subset:
    """Every manifest file with a reference transcript, read in place; WER references exclude
    what is not English speech on one channel."""
    rows = [r for r in read_manifest(corpus) if r["transcript"].strip()]
    references = {r["path"]: r["transcript"] for r in rows if Path(r["path"]).name not in WER_EXCLUDED}
    return Subset(CORPUS, corpus, tuple(sorted(r["path"] for r in rows)), references)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.model_profiles", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="the shared corpus folder")
    args = parser.parse_args()
    subset = corpus_subset(args.corpus)
    transcribers = {name: WhisperTranscriber(config) for name, config in RUNS}
    with tempfile.TemporaryDirectory(prefix="audio_platform_profiles_") as work:
        cache = PcmCache(Path(work) / "cache")
        settings = Settings(home=Path(work) / "home")
        resources = dict(build_definitions(settings).resources or {})
        models = PlatformModels(
            resources["vad"].build(), transcribers["tiny.en"], resources["curation"], settings.max_file_duration_s
        )
        log("platform stages up to ASR (and a first tiny.en pass, which warms it up)")
        _, _, asr_input = run_platform_stages(subset, models, cache, {})
        for transcriber in transcribers.values():  # every model loaded and run once before timing
            transcribe_shard(asr_input.segments.head(1), cache.load, transcriber)
        rel_path_of = asr_input.rel_path_of
        by_source: dict[str, list[str]] = {}
        for file_id, rel in sorted(rel_path_of.items(), key=lambda item: item[1]):
            by_source.setdefault(_source(rel), []).append(file_id)
        hypotheses: dict[str, dict[str, str]] = {name: {} for name in transcribers}
        seconds: dict[tuple[str, str], float] = {}
        detected: list[pl.DataFrame] = []
        for source, file_ids in by_source.items():
            segments = asr_input.segments.filter(pl.col("file_id").is_in(file_ids))
            source_input = replace(asr_input, segments=segments, rel_path_of={f: rel_path_of[f] for f in file_ids})
            for name, transcriber in transcribers.items():
                log(f"{name}: {source}")
                started = time.perf_counter()
                transcripts, _ = transcribe_shard(segments, cache.load, transcriber)
                seconds[(source, name)] = time.perf_counter() - started
                hypotheses[name] |= hypotheses_by_file(source_input, transcripts)
                if transcriber.config.language is None:
                    detected.append(transcripts)
    print(wer_table(subset, by_source, rel_path_of, hypotheses, seconds))
    print()
    print(language_table(asr_input, pl.concat(detected)))
    return 0


def wer_table(
    subset: Subset,
    by_source: dict[str, list[str]],
    rel_path_of: dict[str, str],
    hypotheses: dict[str, dict[str, str]],
    seconds: dict[tuple[str, str], float],
) -> str:
    """Per source group: reference words, then WER (errors) and ASR seconds of each run."""
    header = ["source", "files", "words"] + [f"{label} {name}" for name, _ in RUNS for label in ("WER", "s")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = {
        source: [rel_path_of[f] for f in file_ids if rel_path_of[f] in subset.references]
        for source, file_ids in by_source.items()
    }
    groups["all"] = [rel for rels in groups.values() for rel in rels]
    for source, rels in groups.items():
        wers: list[WerResult] = []
        row = [source, str(len(rels))]
        for name, _ in RUNS:
            wers.append(corpus_wer((subset.references[rel], hypotheses[name].get(rel, "")) for rel in rels))
            wall = sum(s for (group, run), s in seconds.items() if run == name and source in (group, "all"))
            row += [f"{_pct(wers[-1].wer)} ({wers[-1].errors})", f"{wall:.1f}"]
        lines.append("| " + " | ".join([*row[:2], str(wers[0].reference_words), *row[2:]]) + " |")
    return "\n".join(lines)


def language_table(asr_input: AsrInput, transcripts: pl.DataFrame) -> str:
    """Per source group: files whose detected language is their known one (English unless
    ``LANGUAGES`` says otherwise), the lowest probability, files under the curation floors Granary
    and Emilia use (0.7, 0.8), and every miss."""
    files = transcripts.group_by("file_id").agg(pl.col("language").first(), pl.col("language_probability").first())
    by_source: dict[str, list[tuple[str, str, str, float]]] = {}
    for file_id, language, probability in files.iter_rows():
        rel = asr_input.rel_path_of[file_id]
        by_source.setdefault(_source(rel), []).append((rel, LANGUAGES.get(rel, "en"), language, probability))
    lines = [
        "| source | files | correct | lowest probability | under 0.7 | under 0.8 | misses |",
        "|---|---|---|---|---|---|---|",
    ]
    for source, rows in sorted(by_source.items()):
        misses = ", ".join(f"{Path(rel).name}: {got} ({p:.2f}) for {want}" for rel, want, got, p in rows if got != want)
        correct = sum(got == want for _, want, got, _ in rows)
        probabilities = [p for *_, p in rows]
        under = [sum(p < floor for p in probabilities) for floor in (0.7, 0.8)]
        lines.append(
            f"| {source} | {len(rows)} | {correct} | {min(probabilities):.2f} | {under[0]} | {under[1]} | {misses} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
