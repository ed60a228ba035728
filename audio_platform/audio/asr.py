"""Whisper speech-to-text for VAD speech segments, packed into shared windows for speed.

Whisper's encoder always sees 30 s of audio, so transcribing short VAD segments one at a time
spends most of the compute on padding. Instead, consecutive segments of one file (of many files
with ``transcribe_many`` and ``pack_across_files``) are packed back to back into windows of at
most ``window_s`` seconds, ``gap_s`` of digital silence apart so that the model and the word
aligner see a pause between them; a segment longer than ``window_s`` is first cut at quiet frames. The windows are
decoded in batches by faster-whisper's ``BatchedInferencePipeline`` (beam search, timestamp
tokens on, DTW word timestamps), and every word is mapped through its window's offset map to the
segment it starts in and to file time. The packing itself is in ``audio.asr_packing``. A window of
a few seconds (a short file) is encoded as ``short_context_s`` (10 s) of audio instead of Whisper's
30 s: most of a 30-s encoding of a one-word clip is padding.

Each segment is rendered with up to ``context_pad_s`` of its file's own audio on both sides
(towards another segment of the file only across a pause of 2 s or more, and at most half of it),
so the decoder hears the VAD cut's surroundings rather than digital silence: on one-word clips
the tight VAD cut alone turned "six" into "Take". Words are kept for the segment they start in
(clamped to it).

Packing has one failure mode that per-segment decoding does not: Whisper may stop before the
end of a window, or skip an utterance after a pause. Segments (or their tails) that the decoder
did not reach are therefore decoded again at the start of a new window, much like sequential
Whisper seeks past what it has transcribed; a packed segment with an implausible result (a word
count speech cannot have, a word stretched over skipped speech) is decoded again alone. A
segment alone in its window whose decode failed by Whisper's own signs (repetitive text, unlikely
tokens) is decoded once more as plain faster-whisper does, with temperature fallback.

Language: a configured ``language`` is used as is. With ``language=None`` and a multilingual
model (the ``base`` profile, see ``audio.whisper_models``), each file's language is detected once
from its speech and the file is transcribed in it; every segment records the language and its
probability (``language_probability``, None where nothing was detected).

Segment statistics:

* ``avg_logprob`` is the mean log of the segment's word probabilities (each the mean aligned
  token probability of the word), so it describes that segment and not its window-mates. A
  segment without words falls back to the window-level value.
* ``no_speech_prob`` is Whisper's window-level value (it is only computed once per window),
  duration-weighted when a long segment spans several windows.
* ``compression_ratio`` is Whisper's gzip ratio of the segment's own text (0.0 when empty).
  Short texts compress badly, so values are lower than window-level ones.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import inspect
import itertools
import logging
import math
import os
import threading
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import ctranslate2
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import Segment, TranscriptionOptions, Word, get_suppressed_tokens

from audio_platform.audio.asr_packing import (
    Piece,
    Span,
    SpeechContext,
    Window,
    pack_pieces,
    render_window,
    split_long_segment,
)
from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.audio.pcm_cache import release_pages
from audio_platform.audio.whisper_models import DEFAULT_MODEL, PROFILES, model_folder, model_name

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_A = TypeVar("_A")
# Whisper's encoder input length; a longer window would be silently truncated.
MAX_WINDOW_S = 30.0
# A window is encoded with the short context only when it is this much shorter than the context:
# speech near the end of a short context was decoded less reliably.
SHORT_CONTEXT_MARGIN_S = 3.0
# Decoding stops after this many tokens per second of window (plus a few), at most Whisper's 448:
# English speech needs ~6, syllable-dense scripts up to ~25 (a Telugu sentence: 111 tokens for
# 27 syllables), so only a decoder stuck in a loop reaches it on a short window, and a batch no
# longer waits for one window's loop to fill 448 tokens.
_MAX_TOKENS_PER_S = 30
_MIN_NEW_TOKENS = 16
# Windows of one batch are placed this far apart on faster-whisper's time axis: its word-timing
# heuristics carry the last speech time from one window to the next, and spaced out every window
# starts long after the previous one's speech, as when decoded alone (the first word's stretch is
# trimmed the same way whatever its batch-mates).
_BATCH_SPACING_S = 2 * MAX_WINDOW_S
# Shorter segments cannot hold a word; they are not decoded (and get an empty transcript).
MIN_SEGMENT_S = 0.05
# When a window's last word ends more than this before the end of its piece, the decoder stopped
# early and the rest of the piece is decoded again...
_RETRY_TAIL_S = 1.0
# ...provided the decoder got at least this far into the piece, so every retry makes progress.
_MIN_PROGRESS_S = 1.0
# A packed piece at least this long with fewer words per second than this is decoded again alone
# (normal speech has 2-3 words per second; VAD's false alarms on noise cost one solo window each).
_SPARSE_MIN_S = 1.5
_SPARSE_WORDS_PER_S = 0.75
# Fast read speech reaches ~4 words per second; spelled-out letters stay below that.
_DENSE_WORDS_PER_S = 4.5
# Slow, stressed words last up to ~1 s; a longer one covers speech the decoder skipped.
_MAX_WORD_S = 1.5
# Sequential Whisper's temperature fallback (faster-whisper's defaults), for a piece whose decode
# failed: retried at rising temperatures while its text compresses better than the ratio allows
# or its average token log-probability is below the floor.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
FALLBACK_COMPRESSION_RATIO = 2.4
FALLBACK_LOG_PROB = -1.0
_FALLBACK_SEED = 0
# Batch sizes for batch_size=0 (auto). On CPU the encoder's self-attention scores (heads x 1500 x
# 1500 floats per window) dominate memory: batch 8 peaked ~270 MB higher than batch 4 for the same
# CPU seconds on 2 cores (batch 2 cost 8 % more CPU), so 4 windows in flight at once, shared by the
# decoders (a batch of 2 each for two: with a batch of 4 each, the ASR stage's peak RSS on a 25-min
# file was 1.2-1.3 GiB instead of 0.9 and grew with the duration). On CUDA the batch is fitted to
# free memory at a conservative per-window cost (large-v3 in float16 with word alignment), shared
# by the decoders, capped where larger batches stop paying off, and halved on out-of-memory.
CPU_AUTO_BATCH = 4
# Decoders for workers=0 (auto) on CPU with an even thread count (an odd one would leave a thread
# idle): two one-thread decoders on 2 cores were ~1.35x faster than one two-thread decoder with
# the same errors on every source (see AsrConfig.workers); more than two is not measured. One on
# CUDA: its batch already fills the device.
CPU_AUTO_DECODERS = 2
_GPU_BYTES_PER_WINDOW = 512 << 20
_GPU_MEMORY_SHARE = 0.5
_GPU_MAX_BATCH = 64
_MAX_CONTEXT_PAD_S = 2.0
_DEVICES = frozenset({"auto", "cpu", "cuda"})
_COMPUTE_TYPES = frozenset(
    {
        "default",
        "auto",
        "int8",
        "int8_float32",
        "int8_float16",
        "int8_bfloat16",
        "int16",
        "float16",
        "bfloat16",
        "float32",
    }
)


@dataclass(frozen=True)
class WordTiming:
    """One recognized word; times are seconds from the start of the file."""

    word: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True)
class Hypothesis:
    """One of Whisper's likeliest texts of a clip."""

    text: str
    # CTranslate2's beam score with length penalty 1: the text's log-probability divided by its
    # token count (end of text included), about the mean log-probability per token.
    avg_logprob: float


@dataclass(frozen=True)
class SegmentTranscript:
    """Transcript of one input speech segment (statistics as described in the module docstring)."""

    text: str
    language: str
    # Whisper's probability of ``language`` for the segment's file; None where it was not detected
    # (a configured language, an English-only model, a file without speech).
    language_probability: float | None
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    words: tuple[WordTiming, ...]


@dataclass(frozen=True)
class AsrConfig:
    """Model and decoding settings; ``gap_s`` is the silence put between packed segments."""

    model: str = DEFAULT_MODEL
    """`tiny.en` (packaged, English only), `base` (Whisper base, multilingual: detects each file's
    language when `language` is null; joined on first use into `AUDIO_PLATFORM_MODEL_CACHE`, default
    `~/.cache/audio_platform/models`) or the path of a CTranslate2 Whisper model folder."""
    device: str = "auto"
    """`cpu`, `cuda` or `auto`."""
    compute_type: str = "default"
    """CTranslate2 compute type; `default` is int8 on CPU, float16 on CUDA."""
    beam_size: int = 5
    """Beam width of the decoder (1 = greedy)."""
    batch_size: int = 0
    """Windows each decoder decodes together (windows in flight: `batch_size x workers`); 0 =
    automatic: 4 in flight on CPU, shared by the decoders (2 each for two); on CUDA fitted to free
    GPU memory; halved on out-of-memory."""
    cpu_threads: int = 0
    """CPU threads of the ASR stage, all decoders together; 0 = the CPUs this process may use, at
    most 4."""
    # On 2 cores (ASR stage on the benchmark's corpus and keyword clips, same VAD segments), two
    # one-thread decoders with a batch of 2 each took 85-87 s where one two-thread decoder with a
    # batch of 4 took 115-116 s, with the same errors on every source: a decoder's threads idle
    # while it extracts features and aligns words in Python, and at the ends of small matrix
    # products; another decoder's batch fills them. They share the automatic batch
    # (CPU_AUTO_BATCH), so the windows in flight stay as with one decoder: the stage's peak RSS
    # on a 25-min file was 932 MiB against 851 (a batch of 4 each: 1,226 MiB).
    workers: int = 0
    """Batches of windows decoded at once, each by its own decoder with `cpu_threads / workers`
    threads (at most `cpu_threads` decoders on CPU); 0 = automatic: 2 on CPU with an even thread
    count, else 1; 1 on CUDA. A piece decoded again with sampling (temperature above 0, rare) can differ between
    runs with several decoders, since they draw random numbers in the order they are free; 1
    decoder repeats a run that starts with the same work."""
    language: str | None = "en"
    """Language to transcribe (a Whisper language code); null (`AUDIO_PLATFORM_ASR_LANGUAGE=null`):
    detect each file's language once from its speech and transcribe it in that language, recording
    the detection's probability (needs a multilingual model; `tiny.en` always transcribes `en`)."""
    window_s: float = MAX_WINDOW_S
    """Longest window of packed segments decoded at once (Whisper hears 30 s)."""
    gap_s: float = 0.5
    """Silence put between two segments packed into one window."""
    # Never into another segment's speech: at most half the pause to it.
    context_pad_s: float = 1.0
    """Seconds of the file's own audio decoded around each segment (at most half the pause to the
    next one): context at the VAD cut instead of digital silence."""
    # A piece alone in its window whose decode failed by Whisper's own signs (see _failed_decode)
    # is decoded again sequentially with temperature fallback, as plain faster-whisper does.
    temperature_fallback: bool = True
    """Decode a segment again with Whisper's temperature fallback when its decode failed by
    Whisper's own signs (repetitive text, unlikely tokens, too many words, a word stretched over
    speech)."""
    # Whisper's encoder was trained on 30 s, and shorter inputs change its output slightly: with a
    # 3-s margin, per-source WER on the benchmark's corpus and keyword clips was the same or better
    # (no source worse), while windows that nearly filled the context lost a word here and there.
    short_context_s: float = 10.0
    """Encoder context (seconds) for windows at most 3 s shorter than it: a window of a few seconds
    is encoded as `short_context_s` instead of 30 s (several times less encoder and cross-attention
    work on short files); a decode that fails is decoded again in 30 s by the temperature fallback,
    so this applies only with `temperature_fallback` on. 0 = always 30 s."""
    # One-word clips in random order: the spoken word found in 66 % of clips packed, 82 % with a
    # window per file.
    pack_across_files: bool = False
    """Let segments of different files share a 30-s window: several times faster on many short
    files, but words of one file then bleed into its neighbours' transcripts (short clips lose
    accuracy). Off: each window holds one file's segments."""

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ValueError(f"model must be a profile ({', '.join(PROFILES)}) or a CTranslate2 model folder")
        if self.device not in _DEVICES:
            raise ValueError(f"device must be one of {sorted(_DEVICES)}, got {self.device!r}")
        if self.compute_type not in _COMPUTE_TYPES:
            raise ValueError(f"compute_type must be one of {sorted(_COMPUTE_TYPES)}, got {self.compute_type!r}")
        if isinstance(self.beam_size, bool) or not isinstance(self.beam_size, int) or self.beam_size < 1:
            raise ValueError(f"beam_size must be an integer >= 1, got {self.beam_size!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 0:
            raise ValueError(f"batch_size must be an integer >= 0 (0 = automatic), got {self.batch_size!r}")
        if isinstance(self.cpu_threads, bool) or not isinstance(self.cpu_threads, int) or self.cpu_threads < 0:
            raise ValueError(f"cpu_threads must be an integer >= 0 (0 = automatic), got {self.cpu_threads!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers must be an integer >= 0 (0 = automatic), got {self.workers!r}")
        if self.language is not None and not self.language.strip():
            raise ValueError("language must be a language code such as 'en', or None to detect it")
        if not 0.0 < self.window_s <= MAX_WINDOW_S:
            raise ValueError(f"window_s must be in (0, {MAX_WINDOW_S}], got {self.window_s!r}")
        if not 0.0 <= self.gap_s < self.window_s:
            raise ValueError(f"gap_s must be in [0, window_s), got {self.gap_s!r}")
        if self.short_context_s != 0.0 and not SHORT_CONTEXT_MARGIN_S < self.short_context_s <= MAX_WINDOW_S:
            raise ValueError(
                f"short_context_s must be 0 (off) or in ({SHORT_CONTEXT_MARGIN_S}, {MAX_WINDOW_S}], "
                f"got {self.short_context_s!r}"
            )
        if not 0.0 <= self.context_pad_s <= _MAX_CONTEXT_PAD_S:
            raise ValueError(f"context_pad_s must be in [0, {_MAX_CONTEXT_PAD_S}], got {self.context_pad_s!r}")


# ---------------------------------------------------------------------------------------------
# Model


_MODEL_CACHE: dict[tuple[str, str, str, int, int], WhisperModel] = {}
_MODEL_LOCK = threading.Lock()


_WINDOWS_PER_CALL_BATCHES = 4


def _load_model(path: str, device: str, compute_type: str, threads: int, workers: int) -> WhisperModel:
    """The model with ``workers`` decoders (CTranslate2's ``num_workers``: calls from that many
    Python threads run at once) of ``threads`` CPU threads each."""
    # Loading takes ~0.5 s and the weights are shared read-only, so every transcriber in the
    # process with the same settings reuses one model.
    key = (path, device, compute_type, threads, workers)
    with _MODEL_LOCK:
        if key not in _MODEL_CACHE:
            if not Path(path, "model.bin").is_file():
                raise FileNotFoundError(f"no CTranslate2 Whisper model (model.bin) in {path!r}")
            _MODEL_CACHE[key] = WhisperModel(
                path,
                device=device,
                compute_type=compute_type,
                cpu_threads=threads,
                num_workers=workers,
                local_files_only=True,
            )
        return _MODEL_CACHE[key]


def _compute_type(config: AsrConfig, device: str) -> str:
    if config.compute_type != "default":
        return config.compute_type
    return "float16" if device == "cuda" else "int8"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask: a container's or taskset's cpuset), else
    the machine's."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def fitted_gpu_batch(free_bytes: int | None = None) -> int:
    """Windows per batch that fit in half the free GPU memory (``free_bytes``, else measured)."""
    if free_bytes is None:
        import torch  # only on the GPU path: CTranslate2 does not report free memory

        free_bytes = int(torch.cuda.mem_get_info()[0])
    fitted = int(free_bytes * _GPU_MEMORY_SHARE) // _GPU_BYTES_PER_WINDOW
    return max(1, min(_GPU_MAX_BATCH, fitted))


def halving_on_out_of_memory(run: Callable[[int], _T], batch_size: int) -> tuple[_T, int]:
    """``run(batch_size)``, halving the batch and retrying while it runs out of memory.

    Returns the result and the batch size that worked, which callers keep for later calls.
    Any other error, or running out of memory at batch size 1, propagates.
    """
    while True:
        try:
            return run(batch_size), batch_size
        except (RuntimeError, MemoryError) as err:
            if batch_size == 1 or not _is_out_of_memory(err):
                raise
            batch_size //= 2
            _log.warning("out of memory in batched ASR (%s); retrying with batch size %d", err, batch_size)


def _is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or "out of memory" in str(err).lower()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return getattr(libc, "malloc_trim", None)


def _return_freed_memory(audios: Sequence[np.ndarray]) -> None:
    """Give memory back after a batched call: the cache pages read for it, and the heap.

    CTranslate2's transient buffers (hundreds of MB per call) are freed to glibc's heap, which
    keeps them unless trimmed: without this the process's RSS only ever grows to its worst call.
    """
    for audio in audios:
        release_pages(audio)
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass(frozen=True)
class _PieceResult:
    words: tuple[WordTiming, ...]
    # Raw word strings keep Whisper's own spacing, which is not one space in every language.
    raw_words: tuple[str, ...]
    window_avg_logprob: float
    window_no_speech_prob: float
    seconds: float


class _Progress:
    """Seconds of input segments done, handed to ``callback`` at each ``report``.

    A piece's decoded seconds count for their share of their item's segment seconds, which also
    hold what is never decoded (segments shorter than MIN_SEGMENT_S, audio past the end of the
    file), so the reports add up to all of them; an item with nothing to decode counts at the
    first report."""

    def __init__(self, callback: Callable[[float], None] | None, segment_s: list[float], spans: list[Span]) -> None:
        decoded_s = [0.0] * len(segment_s)
        for item, _, start, end in spans:
            decoded_s[item] += end - start
        self._callback = callback
        self._per_decoded_s = [s / d if d else 0.0 for s, d in zip(segment_s, decoded_s, strict=True)]
        self._unreported = sum(s for s, d in zip(segment_s, decoded_s, strict=True) if not d)

    def add(self, item: int, decoded_s: float) -> None:
        self._unreported += decoded_s * self._per_decoded_s[item]

    def report(self) -> None:
        if self._callback is not None and self._unreported:
            self._callback(self._unreported)
            self._unreported = 0.0


class WhisperTranscriber:
    """Transcribes speech segments with a (cached) faster-whisper model; see the module docstring."""

    def __init__(self, config: AsrConfig = AsrConfig()) -> None:
        self.config = config
        self._model_path = str(model_folder(config.model))
        device = config.device
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        threads = config.cpu_threads or min(4, usable_cpus())

        def load(device: str) -> tuple[WhisperModel, int, int]:
            automatic = CPU_AUTO_DECODERS if device == "cpu" and threads % CPU_AUTO_DECODERS == 0 else 1
            workers = config.workers or automatic
            if device == "cpu" and workers > threads:
                raise ValueError(
                    f"workers ({workers}) must not exceed cpu_threads ({threads}): a decoder needs a thread"
                )
            per_worker = max(1, threads // workers)
            model = _load_model(self._model_path, device, _compute_type(config, device), per_worker, workers)
            return model, workers, per_worker

        try:
            self._model, self.workers, self.threads_per_worker = load(device)
        except (RuntimeError, ValueError) as err:
            # A visible GPU can still be unusable (driver mismatch, another process holding it):
            # with device=auto the shard goes on on the CPU instead of failing.
            if config.device != "auto" or device == "cpu":
                raise
            _log.warning("CUDA model load failed (%s); falling back to the CPU", err)
            device = "cpu"
            self._model, self.workers, self.threads_per_worker = load(device)
        self.device = device
        self.cpu_threads = threads
        self.compute_type = _compute_type(config, device)
        self.batch_size = config.batch_size or max(
            1, (fitted_gpu_batch() if device == "cuda" else CPU_AUTO_BATCH) // self.workers
        )

    @property
    def model_name(self) -> str:
        """The profile name (`tiny.en`, `base`), else the model directory's name."""
        return model_name(self.config.model)

    def transcribe(self, audio_16k: np.ndarray, segments: Sequence[tuple[float, float]]) -> list[SegmentTranscript]:
        """One transcript per ``(start_s, end_s)`` segment of 16 kHz mono ``audio_16k``, in input order.

        Segments may come in any order and overlap. Word times are file times, clamped to the
        word's segment. A segment shorter than ``MIN_SEGMENT_S`` (after clipping to the audio)
        is not decoded: text ``''``, no words, ``no_speech_prob`` 1.0.
        """
        return self.transcribe_many([(audio_16k, segments)])[0]

    def transcribe_many(
        self,
        items: Sequence[tuple[np.ndarray, Sequence[tuple[float, float]]]],
        *,
        on_progress: Callable[[float], None] | None = None,
    ) -> list[list[SegmentTranscript]]:
        """Like ``transcribe`` for several files at once; their segments share windows.

        Sharing windows across files is what makes many short files cheap. When the language
        must be detected (``language=None`` with a multilingual model) each file's language is
        detected first (``file_languages``) and only files of the same language share windows, so
        that one file's language is not forced on another.

        ``on_progress(seconds)`` is called as decoding proceeds (after each call of a few batches
        of windows) with the seconds of input segments (``end_s - start_s``) done since the
        previous call; the calls add up to the segments' total (see ``_Progress``).
        """
        audios: list[np.ndarray] = []
        spans: list[Span] = []
        speech: list[list[tuple[float, float]]] = []
        segment_s: list[float] = []
        for item, (audio, segments) in enumerate(items):
            audio = _as_mono_float32(audio)
            audios.append(audio)
            duration = len(audio) / SAMPLE_RATE
            speech.append([])
            segment_s.append(0.0)
            for k in sorted(range(len(segments)), key=lambda k: segments[k][0]):
                start, end = _checked_segment(segments[k])
                segment_s[item] += end - start
                end = min(end, duration)
                if end - start >= MIN_SEGMENT_S:  # shorter ones are not decoded, nor speech to keep clear of
                    speech[item].append((start, end))
                    spans.extend(
                        (item, k, a, b)
                        for a, b in split_long_segment(audio, start, end, self.config.window_s)
                        if b - a >= MIN_SEGMENT_S
                    )

        languages = self.file_languages(audios, speech)
        by_language: dict[str, list[Span]] = {}
        for span in spans:
            by_language.setdefault(languages[span[0]][0], []).append(span)
        done: dict[tuple[int, int, float], _PieceResult] = {}
        context = SpeechContext(speech, [len(a) / SAMPLE_RATE for a in audios], self.config.context_pad_s)
        progress = _Progress(on_progress, segment_s, spans)
        for language, group in by_language.items():
            self._decode(group, audios, done, context, progress, language)
        progress.report()  # what no decode reported: items with nothing to decode

        by_segment: dict[tuple[int, int], list[tuple[float, _PieceResult]]] = {}
        for (item, k, start), result in done.items():
            by_segment.setdefault((item, k), []).append((start, result))
        return [
            [
                _finish(
                    [r for _, r in sorted(by_segment.get((item, k), []), key=lambda x: x[0])],
                    *languages[item],
                )
                for k in range(len(segments))
            ]
            for item, (_, segments) in enumerate(items)
        ]

    def file_languages(
        self, audios: Sequence[np.ndarray], speech: Sequence[Sequence[tuple[float, float]]]
    ) -> list[tuple[str, float | None]]:
        """Each file's language and the probability Whisper gave it, from the file's ``speech``
        (``(start_s, end_s)`` spans of its 16 kHz ``audios``).

        The configured language, or `en` for an English-only model, is not detected (probability
        None). Otherwise Whisper's language ID (one encoder pass, as in faster-whisper's
        ``detect_language``) hears the first 30 s of the file's speech laid end to end and padded
        with silence: the language of what is transcribed, not of music or noise around it, and
        one language per file so that a file's segments are not transcribed in different ones.
        A file without speech keeps `en` (nothing of it is decoded)."""
        fixed = self.config.language or (None if self._model.model.is_multilingual else "en")
        languages: list[tuple[str, float | None]] = [(fixed or "en", None)] * len(audios)
        if fixed is not None:
            return languages
        extractor = self._model.feature_extractor
        heard = [item for item, spans in enumerate(speech) if spans]
        clips = [_speech_clip(audios[item], speech[item], extractor.n_samples) for item in heard]

        def detect_batch(batch: list[np.ndarray]) -> list[tuple[str, float]]:
            features = np.stack([extractor(c)[:, : extractor.nb_max_frames] for c in batch])
            # Per file, every language token with its probability, the likeliest first.
            ranked = self._model.model.detect_language(self._model.encode(features))
            return [(tokens[0][0][2:-2], float(tokens[0][1])) for tokens in ranked]  # "<|de|>" -> "de"

        detected = self._map_batched(detect_batch, clips)
        for item, result in zip(heard, detected, strict=True):
            languages[item] = result
        return languages

    def hypotheses(self, clips: Sequence[np.ndarray], count: int) -> list[list[Hypothesis]]:
        """The ``count`` likeliest texts of each 16 kHz mono clip (at most 30 s), likeliest first:
        each clip decoded alone in a 30-s window, without timestamps or fallback, with a beam of
        ``max(beam_size, count)`` (CTranslate2's n-best list), in the configured language (`en`
        when it is detected per file). Each text comes with its score (``Hypothesis``); the batch
        halves on out-of-memory as in the other decodes."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        tokenizer = self._tokenizer(self.config.language or "en")
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        extractor = self._model.feature_extractor
        suppressed = _suppressed_tokens(tokenizer)

        def decode_batch(batch: list[np.ndarray]) -> list[list[Hypothesis]]:
            if any(len(clip) > extractor.n_samples for clip in batch):
                raise ValueError(f"clips must be at most {extractor.n_samples / SAMPLE_RATE:.0f} s long")
            features = np.stack([pad_or_trim(extractor(clip)[..., :-1]) for clip in batch])
            longest_s = max(len(clip) for clip in batch) / SAMPLE_RATE
            results = self._model.model.generate(
                self._model.encode(features),
                [prompt] * len(batch),
                beam_size=max(self.config.beam_size, count),
                num_hypotheses=count,
                # Whisper's decoder has 448 positions: a looping decode stops there, not past them.
                max_length=min(
                    self._model.max_length, len(prompt) + _MIN_NEW_TOKENS + math.ceil(_MAX_TOKENS_PER_S * longest_s)
                ),
                suppress_tokens=suppressed,
                return_scores=True,
            )
            return [
                [
                    Hypothesis(tokenizer.decode([t for t in tokens if t < tokenizer.eot]).strip(), score)
                    for tokens, score in zip(result.sequences_ids, result.scores, strict=True)
                ]
                for result in results
            ]

        return self._map_batched(decode_batch, [_as_mono_float32(clip) for clip in clips])

    def _decode(
        self,
        spans: list[Span],
        audios: list[np.ndarray],
        done: dict[tuple[int, int, float], _PieceResult],
        context: SpeechContext,
        progress: _Progress,
        language: str,
    ) -> None:
        """Decode spans (all in ``language``) into ``done`` (keyed by item, segment, start),
        reporting each piece to ``progress`` as it is done."""

        def finish(piece: Piece, result: _PieceResult) -> None:
            done[(piece.item, piece.segment, piece.file_start_s)] = result
            progress.add(piece.item, result.seconds)

        pending = spans
        solo: list[Span] = []
        cfg = self.config
        while pending or solo:
            windows = pack_pieces(pending, cfg.window_s, cfg.gap_s, cfg.pack_across_files, context.pads)
            for span in solo:
                windows += pack_pieces([span], cfg.window_s, cfg.gap_s, context=context.pads)
            pending, solo = [], []
            # Decode a few batches of windows at a time: rendering every window of a long file at
            # once (and faster-whisper's features for all of them) makes memory grow with speech length.
            # Each call's windows are placed (and progress reported) before the next call.
            start = 0
            while start < len(windows):
                # Sized per call: an out-of-memory halving shrinks the calls after it too.
                chunk = windows[start : start + _WINDOWS_PER_CALL_BATCHES * self.batch_size * self.workers]
                start += len(chunk)
                chunk_outputs, self.batch_size = halving_on_out_of_memory(
                    functools.partial(self._run, chunk, audios, language), self.batch_size
                )
                _return_freed_memory(audios)
                failed: list[Window] = []
                for window, outputs in zip(chunk, chunk_outputs, strict=True):
                    placed, reach = self._place_words(window, outputs)
                    stats = (outputs[0].avg_logprob, outputs[0].no_speech_prob)
                    if (
                        cfg.temperature_fallback
                        and len(window.pieces) == 1
                        and _failed_decode(window.pieces[0], placed[0], stats[0])
                    ):
                        failed.append(window)
                        continue
                    for i, (piece, words) in enumerate(zip(window.pieces, placed, strict=True)):
                        # Whisper decodes a window from its start and may stop early or skip an
                        # utterance after a pause. What it did not reach is decoded again at the start
                        # of a new window, like sequential Whisper's seek. A window's first piece is
                        # final (or shrinks by at least _MIN_PROGRESS_S), so this terminates.
                        if i > 0 and (not words or piece.window_start_s >= reach):
                            pending.append((piece.item, piece.segment, piece.file_start_s, piece.file_end_s))
                            continue
                        if len(window.pieces) > 1 and _implausible(piece, [w for w, _ in words]):
                            solo.append((piece.item, piece.segment, piece.file_start_s, piece.file_end_s))
                            continue
                        kept_end = piece.file_end_s
                        if piece.window_start_s + _MIN_PROGRESS_S <= reach <= piece.window_end_s - _RETRY_TAIL_S:
                            kept_end = piece.to_file_time(reach)
                            pending.append((piece.item, piece.segment, kept_end, piece.file_end_s))
                        finish(
                            piece,
                            _PieceResult(
                                tuple(w for w, _ in words),
                                tuple(r for _, r in words),
                                *stats,
                                kept_end - piece.file_start_s,
                            ),
                        )
                fallbacks = self._map(lambda window: self._decode_with_fallback(window, audios, language), failed)
                for window, result in zip(failed, fallbacks, strict=True):
                    finish(window.pieces[0], result)
                progress.report()

    def _map_batched(self, work: Callable[[list[_A]], list[_T]], items: list[_A]) -> list[_T]:
        """``work`` on ``items`` in batches of ``batch_size`` (through ``_map``), its results one
        per item in order; on out-of-memory the batch halves, and stays halved for later calls."""

        def run(batch_size: int) -> list[_T]:
            return [done for per_batch in self._map(work, _in_batches(items, batch_size)) for done in per_batch]

        results, self.batch_size = halving_on_out_of_memory(run, self.batch_size)
        return results

    def _map(self, work: Callable[[_A], _T], items: Sequence[_A]) -> list[_T]:
        """``work`` on each item, up to ``workers`` at once (one per decoder of the model); the
        results in the items' order. On an exception (or an interrupt) the items not started are
        dropped, and it is raised once those running have finished."""
        if self.workers == 1 or len(items) <= 1:
            return [work(item) for item in items]
        pool = ThreadPoolExecutor(min(self.workers, len(items)), thread_name_prefix="asr-decoder")
        try:
            return list(pool.map(work, items))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _decode_with_fallback(self, window: Window, audios: list[np.ndarray], language: str) -> _PieceResult:
        """Decode a one-piece window again as sequential Whisper does: with temperature fallback
        (a decode whose text repeats itself or whose tokens are unlikely is retried at higher
        temperatures) and its no-speech rule; the piece's result."""
        cfg = self.config
        (piece,) = window.pieces
        # Sampling above temperature 0 draws random numbers. CTranslate2 seeds each of its decoder
        # threads once, at its first draw: with one decoder a process that starts with the same
        # work repeats its transcripts; several decoders draw in the order they are free, so a
        # piece that needed sampling may come out differently between runs (see AsrConfig.workers).
        ctranslate2.set_random_seed(_FALLBACK_SEED)
        outputs, _ = self._model.transcribe(
            render_window(window, audios),
            # The file's language (detected once per file when the configured one is None).
            language=language,
            beam_size=cfg.beam_size,
            vad_filter=False,
            word_timestamps=True,
            condition_on_previous_text=False,
            temperature=FALLBACK_TEMPERATURES,
            compression_ratio_threshold=FALLBACK_COMPRESSION_RATIO,
            log_prob_threshold=FALLBACK_LOG_PROB,
        )
        segments = list(outputs)  # the generator decodes as it is consumed
        # Sequential output carries word times from the window's start (its seek is where each pass started).
        placed, _ = self._place_words(window, segments) if segments else ([[]], 0.0)
        words = placed[0]
        avg_logprob = float(np.mean([seg.avg_logprob for seg in segments])) if segments else FALLBACK_LOG_PROB
        no_speech = float(np.mean([seg.no_speech_prob for seg in segments])) if segments else 1.0
        return _PieceResult(
            tuple(w for w, _ in words), tuple(r for _, r in words), avg_logprob, no_speech, piece.duration_s
        )

    def _run(
        self, windows: list[Window], audios: list[np.ndarray], language: str, batch_size: int
    ) -> list[list[Segment]]:
        """Batched decode of the windows in ``language``: per window its output segments, times
        counted from the window's start.

        Each window is encoded with the context it fits in (``_context_frames``); windows of one
        context are batched shortest first, so that each batch's token cap fits its windows."""
        tokenizer = self._tokenizer(language)
        extractor = self._model.feature_extractor
        rendered = [render_window(w, audios) for w in windows]
        durations = [len(r) / SAMPLE_RATE for r in rendered]
        frames = [self._context_frames(d) for d in durations]
        order = sorted(range(len(windows)), key=lambda i: (frames[i], durations[i]))
        options = self._decode_options(tokenizer)
        token_room = self._model.max_length - len(tokenizer.sot_sequence)
        batches = [
            batch
            for _, same in itertools.groupby(order, key=lambda i: frames[i])
            for batch in _in_batches(list(same), batch_size)
        ]

        def decode(batch: list[int]) -> list[list[Segment]]:
            features = np.stack([pad_or_trim(extractor(rendered[i])[..., :-1], frames[i]) for i in batch])
            # The longest window last: its length bounds the tokens any window of the batch needs.
            cap = _MIN_NEW_TOKENS + math.ceil(_MAX_TOKENS_PER_S * durations[batch[-1]])
            capped = dataclasses.replace(options, max_new_tokens=min(cap, token_room))
            offsets = [(k + 1) * _BATCH_SPACING_S for k in range(len(batch))]
            chunks = [{"offset": offset, "duration": durations[i]} for offset, i in zip(offsets, batch, strict=True)]
            # A pipeline per batch: it carries the last speech time from window to window, which
            # must start from 0 in each batch (see _BATCH_SPACING_S).
            decoded = BatchedInferencePipeline(self._model).forward(features, tokenizer, chunks, capped)
            return [
                [_as_segment(segment, capped, offset) for segment in segments]
                for offset, segments in zip(offsets, decoded, strict=True)
            ]

        outputs: list[list[Segment]] = [[] for _ in windows]
        for batch, decoded in zip(batches, self._map(decode, batches), strict=True):
            for i, segments in zip(batch, decoded, strict=True):
                outputs[i] = segments
        return outputs

    def _tokenizer(self, language: str) -> Tokenizer:
        return Tokenizer(
            self._model.hf_tokenizer, self._model.model.is_multilingual, task="transcribe", language=language
        )

    def _context_frames(self, duration_s: float) -> int:
        """Mel frames the encoder hears for a window of ``duration_s``: the short context when the
        window fits in it with ``SHORT_CONTEXT_MARGIN_S`` to spare, else Whisper's 30 s.

        Only with the temperature fallback: a short-context decode goes wrong more often (a
        one-word clip looped into dozens of words), and the fallback, in 30 s, is what catches it;
        without it the benchmark's AudioMNIST digits came out as 20 errors for 4 words."""
        short_s = self.config.short_context_s
        if short_s and self.config.temperature_fallback and duration_s <= short_s - SHORT_CONTEXT_MARGIN_S:
            return round(short_s * self._model.frames_per_second)
        return int(self._model.feature_extractor.nb_max_frames)

    def _decode_options(self, tokenizer: Tokenizer) -> TranscriptionOptions:
        """The options faster-whisper's batched ``transcribe`` would build for this module's
        settings (its own defaults for the rest): one temperature, no conditioning, timestamp
        tokens, word timestamps; ``max_new_tokens`` is set per batch."""
        defaults = _transcribe_defaults()
        chosen: dict[str, Any] = {
            "beam_size": self.config.beam_size,
            "temperatures": [0.0],
            "condition_on_previous_text": False,
            # Timestamp tokens let the decoder segment a window of many utterances; without
            # them it stops after the first pause far more often.
            "without_timestamps": False,
            "max_initial_timestamp": 0.0,
            "word_timestamps": True,
            "suppress_tokens": _suppressed_tokens(tokenizer),
            "multilingual": False,
            "max_new_tokens": None,
            "clip_timestamps": [],
            "hallucination_silence_threshold": None,
        }
        return TranscriptionOptions(
            **{
                f.name: chosen[f.name] if f.name in chosen else defaults[f.name]
                for f in dataclasses.fields(TranscriptionOptions)
            }
        )

    @staticmethod
    def _place_words(window: Window, outputs: list[Segment]) -> tuple[list[list[tuple[WordTiming, str]]], float]:
        """Each piece's words (in file time, with the raw word text) and the window time decoded up to;
        ``outputs``' times count from the window's start."""
        placed: list[list[tuple[WordTiming, str]]] = [[] for _ in window.pieces]
        reach = 0.0
        for out in outputs:
            previous: int | None = None
            for word in out.words or ():
                text = word.word.strip()
                if not any(c.isalnum() for c in text):  # a lone "." or "-" is not speech
                    continue
                start, end = word.start, word.end
                reach = max(reach, end)
                i = previous = window.piece_index(start, previous)
                piece = window.pieces[i]
                file_start = piece.to_file_time(start)
                if placed[i]:  # the aligner's boundary heuristics may nudge a word before its predecessor
                    file_start = max(file_start, placed[i][-1][0].start_s)
                file_end = max(piece.to_file_time(end), file_start)
                timing = WordTiming(
                    text, round(float(file_start), 3), round(float(file_end), 3), float(word.probability)
                )
                placed[i].append((timing, word.word))
        return placed, reach


@functools.cache
def _transcribe_defaults() -> dict[str, Any]:
    """faster-whisper's defaults of its batched ``transcribe`` (punctuation merged into words, ...)."""
    parameters = inspect.signature(BatchedInferencePipeline.transcribe).parameters
    return {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}


def _suppressed_tokens(tokenizer: Tokenizer) -> Sequence[int] | None:
    """The tokens faster-whisper's ``transcribe`` suppresses by default, for ``tokenizer``."""
    return get_suppressed_tokens(tokenizer, _transcribe_defaults()["suppress_tokens"])


def _in_batches(items: list[_T], size: int) -> list[list[_T]]:
    """``items`` in consecutive batches of at most ``size``."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def _as_segment(segment: dict[str, Any], options: TranscriptionOptions, offset: float) -> Segment:
    """A segment of ``BatchedInferencePipeline.forward``'s output as the ``Segment`` its ``transcribe``
    yields, its times moved back by its window's ``offset``."""
    words = [
        Word(start=w["start"] - offset, end=w["end"] - offset, word=w["word"], probability=w["probability"])
        for w in segment.get("words", ())
    ]
    return Segment(
        id=0,
        seek=0,
        start=segment["start"] - offset,
        end=segment["end"] - offset,
        text=segment["text"],
        tokens=segment["tokens"],
        avg_logprob=segment["avg_logprob"],
        compression_ratio=segment["compression_ratio"],
        no_speech_prob=segment["no_speech_prob"],
        words=words,
        temperature=options.temperatures[0],
    )


def _failed_decode(piece: Piece, words: list[tuple[WordTiming, str]], window_avg_logprob: float) -> bool:
    """Whisper's own signs of a failed greedy/beam decode, for a piece alone in its window: text
    that repeats itself (gzip compression ratio, or said twice over), unlikely tokens (average
    log-probability), more words than the audio can hold (a hallucinated loop), or a word stretched
    over skipped speech."""
    text = "".join(raw for _, raw in words).strip()
    return (
        _compression_ratio(text) > FALLBACK_COMPRESSION_RATIO
        or _said_twice([w for w, _ in words])
        or window_avg_logprob < FALLBACK_LOG_PROB
        or _too_dense(piece, len(words))
        or _skipped_speech([w for w, _ in words])
    )


def _implausible(piece: Piece, words: list[WordTiming]) -> bool:
    """A word count speech cannot have, or a word stretched over speech: the decoder lost its way
    in a packed window (a garbled word or two for a whole sentence, words skipped), or a
    neighbour's words landed in this piece. Such a piece is decoded again in a window of its own."""
    sparse = piece.duration_s >= _SPARSE_MIN_S and len(words) < _SPARSE_WORDS_PER_S * piece.duration_s
    return sparse or _too_dense(piece, len(words)) or _skipped_speech(words) or _said_twice(words)


def _too_dense(piece: Piece, word_count: int) -> bool:
    """More words than the piece's audio can hold: a hallucinated loop or a neighbour's words."""
    return word_count > _DENSE_WORDS_PER_S * piece.duration_s + 2


def _said_twice(words: Sequence[WordTiming]) -> bool:
    """The words are one phrase twice over ("Go forward 10 meters. Go forward 10 meters." on a clip
    that says it once): a short loop, too short for the compression ratio to see. Decoded again
    (in 30 s, with fallback), a real repetition comes back as it was said."""
    said = ["".join(c for c in w.word.lower() if c.isalnum()) for w in words]
    half = len(said) // 2
    return len(said) >= 2 and len(said) % 2 == 0 and said[:half] == said[half:]


def _skipped_speech(words: Sequence[WordTiming]) -> bool:
    """A word longer than any spoken word: the aligner stretched it over speech the decoder skipped
    (VAD segments hold no long pause, and word times are clamped to the segment)."""
    return any(w.end_s - w.start_s > _MAX_WORD_S for w in words)


def _as_mono_float32(audio: np.ndarray) -> np.ndarray:
    if audio.ndim != 1:
        raise ValueError(f"audio_16k must be a 1-D mono array, got shape {audio.shape}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio_16k must be float samples in [-1, 1], got dtype {audio.dtype}")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _speech_clip(audio: np.ndarray, spans: Sequence[tuple[float, float]], n_samples: int) -> np.ndarray:
    """The audio of ``spans`` laid end to end, cut or padded with silence to ``n_samples``."""
    clip = np.zeros(n_samples, dtype=np.float32)
    filled = 0
    for start, end in spans:
        piece = audio[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)][: n_samples - filled]
        clip[filled : filled + len(piece)] = piece
        filled += len(piece)
    return clip


def _checked_segment(segment: tuple[float, float]) -> tuple[float, float]:
    start, end = float(segment[0]), float(segment[1])
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
        raise ValueError(f"segment must satisfy 0 <= start_s <= end_s, got {segment!r}")
    return start, end


def _finish(pieces: list[_PieceResult], language: str, language_probability: float | None) -> SegmentTranscript:
    """Merge a segment's pieces (in file order) into its transcript."""
    if not pieces:  # shorter than MIN_SEGMENT_S or beyond the end of the audio: nothing decoded
        return SegmentTranscript(
            "", language, language_probability, avg_logprob=0.0, no_speech_prob=1.0, compression_ratio=0.0, words=()
        )
    words = tuple(w for p in pieces for w in p.words)
    text = "".join(r for p in pieces for r in p.raw_words).strip()
    if words:
        avg_logprob = float(np.mean([math.log(max(w.probability, 1e-10)) for w in words]))
    else:
        avg_logprob = _duration_weighted([p.window_avg_logprob for p in pieces], pieces)
    return SegmentTranscript(
        text=text,
        language=language,
        language_probability=language_probability,
        avg_logprob=avg_logprob,
        no_speech_prob=_duration_weighted([p.window_no_speech_prob for p in pieces], pieces),
        compression_ratio=_compression_ratio(text),
        words=words,
    )


def _duration_weighted(values: list[float], pieces: list[_PieceResult]) -> float:
    weights = [p.seconds for p in pieces]
    return float(np.average(values, weights=weights))
