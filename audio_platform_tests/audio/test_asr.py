"""ASR: packing and its offset map (synthetic), and the packed Whisper tiny.en on real corpus clips."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.tokenizer import Tokenizer
from scipy.signal import resample_poly

from audio_platform.audio import asr as asr_module
from audio_platform.audio.asr import (
    CPU_AUTO_BATCH,
    SAMPLE_RATE,
    AsrConfig,
    SegmentTranscript,
    WhisperTranscriber,
    WordTiming,
    _implausible,
    _said_twice,
    fitted_gpu_batch,
    halving_on_out_of_memory,
    usable_cpus,
)
from audio_platform.audio.asr_packing import Piece, SpeechContext, pack_pieces, render_window, split_long_segment
from audio_platform.audio.whisper_models import DEFAULT_MODEL, model_folder
from audio_platform.evaluation.wer import corpus_wer, word_error_rate

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not (CORPUS / "manifest.csv").is_file(), reason="shared corpus not available")

JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
# Whole-clip segments (AN4 spelled letters and numbers, LibriVox, JFK, a digit command) plus three
# VAD files with several labelled speech spans each.
WER_CLIPS = (
    "audio/whisper/jfk.flac",
    "audio/librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
    "audio/librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
    "audio/librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
    "audio/librivox/sense_and_sensibility_01_austen_64kb-0920.wav",
    "audio/librivox/sense_and_sensibility_01_austen_64kb-0930.wav",
    "audio/an4/an128-mcen-b.wav",
    "audio/an4/an129-mcen-b.wav",
    "audio/an4/an251-fash-b.wav",
    "audio/an4/an315-fkai-b.wav",
    "audio/an4/cen3-fplp-b.wav",
    "audio/pocketsphinx/goforward.wav",
    "vad/vad_04.wav",
    "vad/vad_06.wav",
    "vad/vad_09.wav",
)
# Measured on these clips (215 reference words): packed 0.070 (15 errors), naive per-segment
# `WhisperModel.transcribe` with the same greedy settings 0.074. Most errors are AN4 spelled
# letters and 'ill disposed' -> 'old-sposed'. The floor leaves ~6 words for int8 kernel
# differences between CPUs, while one lost utterance (>= 7 words here) fails it.
POOLED_WER_FLOOR = 0.10
WORD_SLACK_S = 0.2


def load_16k(relative: str) -> np.ndarray:
    audio, rate = sf.read(CORPUS / relative, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = math.gcd(rate, SAMPLE_RATE)
        mono = resample_poly(mono, SAMPLE_RATE // g, rate // g)
    return np.asarray(mono, dtype=np.float32)


def vad_labels(name: str) -> list[tuple[float, float]]:
    with open(CORPUS / "vad" / "vad_labels.csv", newline="") as f:
        return [(float(r["start_s"]), float(r["end_s"])) for r in csv.DictReader(f) if r["file"] == name]


def transcripts() -> dict[str, str]:
    with open(CORPUS / "manifest.csv", newline="", encoding="utf-8") as f:
        return {r["path"]: r["transcript"] for r in csv.DictReader(f)}


def assert_words_well_formed(result: SegmentTranscript, start: float, end: float) -> None:
    previous = -math.inf
    for word in result.words:
        assert start - WORD_SLACK_S <= word.start_s <= word.end_s <= end + WORD_SLACK_S, (word, start, end)
        assert word.start_s >= previous, result.words
        assert 0.0 <= word.probability <= 1.0
        previous = word.start_s
    assert (result.text == "") == (result.words == ())


# ---------------------------------------------------------------------------------------------
# Configuration and packing (no model)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "tpu"}, "device"),
        ({"compute_type": "int4"}, "compute_type"),
        ({"beam_size": 0}, "beam_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_size": -1}, "batch_size"),
        ({"cpu_threads": -1}, "cpu_threads"),
        ({"workers": -1}, "workers"),
        ({"workers": True}, "workers"),
        ({"language": " "}, "language"),
        ({"window_s": 31.0}, "window_s"),
        ({"window_s": 0.0}, "window_s"),
        ({"gap_s": -0.1}, "gap_s"),
        ({"model": " "}, "model"),
        ({"short_context_s": 3.0}, "short_context_s"),
        ({"short_context_s": 31.0}, "short_context_s"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AsrConfig(**kwargs)  # type: ignore[arg-type]


def test_automatic_batch_size_is_the_cpu_default_here_and_fits_free_gpu_memory() -> None:
    automatic = WhisperTranscriber(AsrConfig(device="cpu"))
    assert automatic.batch_size * automatic.workers == CPU_AUTO_BATCH  # windows in flight, whatever the decoders
    assert WhisperTranscriber(AsrConfig(device="cpu", batch_size=3)).batch_size == 3
    gib = 1 << 30
    assert fitted_gpu_batch(free_bytes=0) == 1  # never below one window
    assert fitted_gpu_batch(free_bytes=8 * gib) == 8  # half of the free memory at 512 MiB per window
    assert fitted_gpu_batch(free_bytes=139 * gib) == 64  # capped


def test_out_of_memory_halves_the_batch_until_it_fits() -> None:
    tried: list[int] = []

    def run(batch_size: int) -> str:
        tried.append(batch_size)
        if batch_size > 3:
            raise RuntimeError("CUDA failed with error out of memory")
        return f"decoded with {batch_size}"

    assert halving_on_out_of_memory(run, 16) == ("decoded with 2", 2)
    assert tried == [16, 8, 4, 2]


def test_other_errors_and_out_of_memory_at_batch_one_propagate() -> None:
    def broken(batch_size: int) -> None:
        raise RuntimeError("model file is corrupt")

    with pytest.raises(RuntimeError, match="corrupt"):
        halving_on_out_of_memory(broken, 8)

    def always_oom(batch_size: int) -> None:
        raise MemoryError

    with pytest.raises(MemoryError):
        halving_on_out_of_memory(always_oom, 4)


def test_default_model_is_the_packaged_ctranslate2_model() -> None:
    assert AsrConfig().model == DEFAULT_MODEL == "tiny.en"
    assert (model_folder(DEFAULT_MODEL) / "model.bin").is_file()


def test_packing_fills_windows_in_order_with_gaps() -> None:
    rng = np.random.default_rng(0)
    spans = []
    for item in range(3):
        t = 0.0
        for k in range(12):
            start = t + rng.uniform(0.1, 2.0)
            t = start + rng.uniform(0.2, 9.0)
            spans.append((item, k, start, t))
    windows = pack_pieces(spans, window_s=30.0, gap_s=0.5)

    assert [(p.item, p.segment, p.file_start_s, p.file_end_s) for w in windows for p in w.pieces] == spans
    for window in windows:
        assert window.duration_s <= 30.0
        assert window.pieces[0].window_start_s == 0.0
        for before, after in itertools.pairwise(window.pieces):
            assert after.window_start_s == pytest.approx(before.window_end_s + 0.5)
    # Next-fit: a window is only closed when the next span does not fit.
    for window, following in itertools.pairwise(windows):
        assert window.duration_s + 0.5 + following.pieces[0].duration_s > 30.0


def test_windows_hold_one_file_unless_packing_across_files() -> None:
    spans = [(0, 0, 0.0, 1.0), (0, 1, 2.0, 3.0), (1, 0, 0.0, 1.0), (2, 0, 0.0, 1.0), (2, 1, 5.0, 6.0)]
    shared = pack_pieces(spans, window_s=30.0, gap_s=0.5)
    private = pack_pieces(spans, window_s=30.0, gap_s=0.5, across_items=False)
    assert len(shared) == 1
    assert [[(p.item, p.segment) for p in w.pieces] for w in private] == [[(0, 0), (0, 1)], [(1, 0)], [(2, 0), (2, 1)]]


def test_offset_map_round_trips_and_assigns_gap_words_to_the_nearer_piece() -> None:
    (window,) = pack_pieces([(0, 0, 3.0, 5.0), (0, 1, 10.0, 11.5), (1, 0, 0.0, 2.0)], window_s=30.0, gap_s=0.5)
    # Layout: [0, 2] <gap> [2.5, 4.0] <gap> [4.5, 6.5]
    for index, piece in enumerate(window.pieces):
        for fraction in (0.0, 0.3, 1.0):
            window_t = piece.window_start_s + fraction * piece.duration_s
            file_t = piece.to_file_time(window_t)
            assert file_t == pytest.approx(piece.file_start_s + fraction * piece.duration_s)
            assert file_t - piece.file_start_s + piece.window_start_s == pytest.approx(window_t)
            if fraction < 1.0:
                assert window.piece_index(window_t) == index
    assert window.piece_index(2.1) == 0  # in a gap: the nearer piece
    assert window.piece_index(2.4) == 1
    assert window.piece_index(7.0) == 2  # after the last piece
    # A word continuing its predecessor's decoder segment stays with it across the gap.
    assert window.piece_index(2.4, previous=0) == 0
    assert window.piece_index(2.4, previous=1) == 1
    assert window.piece_index(2.1, previous=None) == 0
    # Times outside a piece clamp to it, so a word never leaves its segment.
    assert window.pieces[1].to_file_time(1.0) == 10.0
    assert window.pieces[1].to_file_time(9.0) == 11.5


def _words(n: int, duration_s: float) -> list[WordTiming]:
    step = duration_s / max(n, 1)
    return [WordTiming(f"w{i}", i * step, (i + 1) * step, 0.9) for i in range(n)]


def test_a_piece_with_an_impossible_word_count_is_flagged_for_a_window_of_its_own() -> None:
    piece = Piece(item=0, segment=0, file_start_s=0.0, file_end_s=3.0, window_start_s=0.0)
    assert _implausible(piece, _words(1, 1.0))  # a garbled word for a 3-s sentence
    assert not _implausible(piece, _words(3, 3.0))
    assert not _implausible(piece, _words(12, 3.0))  # 4 words/s: fast, but speech
    assert _implausible(piece, _words(16, 3.0))  # a neighbour's sentence landed here
    short = Piece(item=0, segment=0, file_start_s=0.0, file_end_s=1.0, window_start_s=0.0)
    assert not _implausible(short, [])  # too short to judge: a lone "yes" may be missed


def test_a_phrase_said_twice_over_is_a_failed_decode_and_one_said_once_is_not() -> None:
    def said(text: str) -> list[WordTiming]:
        return [WordTiming(w, 0.1 * i, 0.1 * i + 0.1, 0.9) for i, w in enumerate(text.split())]

    assert _said_twice(said("Go forward 10 meters. Go forward 10 meters."))
    assert _said_twice(said("Stop. stop"))
    assert not _said_twice(said("Stop."))
    assert not _said_twice(said("go forward go"))
    assert not _said_twice(said("Go forward 10 meters."))
    piece = Piece(item=0, segment=0, file_start_s=0.0, file_end_s=4.0, window_start_s=0.0)
    assert _implausible(piece, said("go forward ten meters go forward ten meters"))


def test_a_word_stretched_over_skipped_speech_flags_its_piece() -> None:
    # Measured on LJ050-0245: "the" aligned over 2.3 s where "service could or should increase" was skipped.
    piece = Piece(item=0, segment=0, file_start_s=4.16, file_end_s=10.04, window_start_s=0.0)
    words = [WordTiming("that", 5.18, 5.62, 0.98), WordTiming("the", 5.62, 7.9, 0.99), WordTiming("its", 7.9, 8.3, 0.5)]
    words += _words(8, 1.5)  # enough words that the count alone looks like speech
    assert _implausible(piece, words)
    assert not _implausible(piece, [w for w in words if w.word != "the"])


def test_context_is_the_files_own_audio_up_to_half_a_long_pause_and_never_inside_speech() -> None:
    context = SpeechContext([[(1.0, 2.0), (2.4, 5.0), (9.0, 10.0)]], [10.5], pad_s=1.0)
    assert context.pads((0, 0, 1.0, 2.0)) == pytest.approx((1.0, 0.0))  # a 0.4-s pause: no context across it
    assert context.pads((0, 1, 2.4, 3.5)) == pytest.approx((0.0, 0.0))  # a split: its cut is inside speech
    assert context.pads((0, 1, 3.5, 5.0)) == pytest.approx((0.0, 1.0))  # 4 s to the next segment
    assert context.pads((0, 2, 9.0, 10.0)) == pytest.approx((1.0, 0.5))  # the file ends 0.5 s later
    between = SpeechContext([[(0.0, 1.0), (3.0, 4.0)]], [4.0], pad_s=1.5)
    assert between.pads((0, 0, 0.0, 1.0)) == pytest.approx((0.0, 1.0))  # half the 2-s pause
    assert SpeechContext([[(1.0, 2.0)]], [3.0], pad_s=0.0).pads((0, 0, 1.0, 2.0)) == (0.0, 0.0)


def test_packed_pieces_carry_their_context_and_render_the_files_audio_around_them() -> None:
    audio = np.arange(5 * SAMPLE_RATE, dtype=np.float32) / (5 * SAMPLE_RATE)
    spans = [(0, 0, 1.0, 2.0), (0, 1, 3.0, 4.0)]
    (window,) = pack_pieces(spans, window_s=30.0, gap_s=0.5, context=lambda span: (0.25, 0.25))
    first, second = window.pieces
    assert (first.window_start_s, first.pad_before_s, first.pad_after_s) == (0.25, 0.25, 0.25)
    assert second.window_start_s == pytest.approx(1.25 + 0.25 + 0.5 + 0.25)  # core, context, gap, context
    assert window.duration_s == pytest.approx(second.window_end_s + 0.25)
    rendered = render_window(window, [audio])
    # The window opens on the first piece's context (file time 0.75 s); between contexts is silence.
    assert rendered[0] == pytest.approx(audio[round(0.75 * SAMPLE_RATE)])
    gap = rendered[round(1.5 * SAMPLE_RATE) + 10 : round(2.0 * SAMPLE_RATE) - 10]
    assert not gap.any()
    # Context shrinks so that a span and its context fit the window.
    (tight,) = pack_pieces([(0, 0, 0.0, 29.8)], window_s=30.0, gap_s=0.5, context=lambda span: (1.0, 1.0))
    assert tight.pieces[0].pad_before_s + tight.pieces[0].pad_after_s == pytest.approx(0.2)
    assert tight.duration_s <= 30.0


def test_packing_rejects_a_span_longer_than_the_window() -> None:
    with pytest.raises(ValueError, match="longer than"):
        pack_pieces([(0, 0, 0.0, 31.0)], window_s=30.0, gap_s=0.5)


def test_long_segment_is_cut_at_quiet_frames_into_window_sized_spans() -> None:
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal(70 * SAMPLE_RATE)).astype(np.float32)
    for hole in (27.0, 54.5):  # pauses inside each cut's search stretch (the last 5 s before 30 s)
        audio[int(hole * SAMPLE_RATE) : int((hole + 0.2) * SAMPLE_RATE)] = 0.0
    spans = split_long_segment(audio, 0.0, 70.0, window_s=30.0)

    assert len(spans) == 3
    assert spans[0][0] == 0.0 and spans[-1][1] == 70.0
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end == start
    assert all(end - start <= 30.0 for start, end in spans)
    assert 27.0 <= spans[0][1] <= 27.2
    assert 54.5 <= spans[1][1] <= 54.7
    assert split_long_segment(audio, 1.0, 20.0, window_s=30.0) == [(1.0, 20.0)]


# ---------------------------------------------------------------------------------------------
# Whisper tiny.en on real clips


@pytest.fixture(scope="module")
def transcriber() -> WhisperTranscriber:
    return WhisperTranscriber(AsrConfig(cpu_threads=2))


@needs_corpus
def test_jfk_is_transcribed_with_word_timings(transcriber: WhisperTranscriber) -> None:
    audio = load_16k("audio/whisper/jfk.flac")
    (result,) = transcriber.transcribe(audio, [(0.0, len(audio) / SAMPLE_RATE)])

    assert transcriber.model_name == "tiny.en"
    assert word_error_rate(JFK, result.text).wer <= 0.05
    assert result.language == "en" and result.language_probability is None  # configured, not detected
    assert result.avg_logprob < 0.0
    assert 0.0 <= result.no_speech_prob <= 1.0
    assert result.compression_ratio > 0.0
    assert_words_well_formed(result, 0.0, len(audio) / SAMPLE_RATE)


@needs_corpus
def test_packed_clips_keep_one_result_per_segment_within_bounds(transcriber: WhisperTranscriber) -> None:
    references = transcripts()
    items: list[tuple[np.ndarray, Sequence[tuple[float, float]]]] = []
    for path in WER_CLIPS:
        audio = load_16k(path)
        segments = vad_labels(Path(path).name) if path.startswith("vad/") else [(0.0, len(audio) / SAMPLE_RATE)]
        items.append((audio, segments))

    results = transcriber.transcribe_many(items)

    assert len(results) == len(items)
    for (_, spans), per_file in zip(items, results, strict=True):
        assert len(per_file) == len(spans)
        for (start, end), result in zip(spans, per_file, strict=True):
            assert_words_well_formed(result, start, end)
    pooled = corpus_wer(
        (references[path], " ".join(r.text for r in per_file))
        for path, per_file in zip(WER_CLIPS, results, strict=True)
    )
    assert pooled.reference_words == 215
    assert pooled.wer <= POOLED_WER_FLOOR, pooled


def test_decode_options_are_those_faster_whispers_batched_transcribe_builds(transcriber: WhisperTranscriber) -> None:
    model = transcriber._model
    _, info = BatchedInferencePipeline(model).transcribe(
        np.zeros(SAMPLE_RATE, dtype=np.float32),
        language="en",
        beam_size=transcriber.config.beam_size,
        clip_timestamps=[{"start": 0.0, "end": 1.0}],
        vad_filter=False,
        without_timestamps=False,
        word_timestamps=True,
        temperature=0.0,
        max_new_tokens=40,
    )
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")

    ours = dataclasses.asdict(dataclasses.replace(transcriber._decode_options(tokenizer), max_new_tokens=40))
    theirs = dataclasses.asdict(info.transcription_options)
    assert ours == theirs | {"clip_timestamps": []}


@needs_corpus
def test_short_windows_are_encoded_with_the_short_context_and_long_ones_with_30_s(
    transcriber: WhisperTranscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard: list[int] = []
    forward = BatchedInferencePipeline.forward

    def spy(self: BatchedInferencePipeline, features: np.ndarray, *args: object) -> object:
        heard.extend([features.shape[-1]] * len(features))
        return forward(self, features, *args)

    monkeypatch.setattr(BatchedInferencePipeline, "forward", spy)
    command = load_16k("audio/pocketsphinx/goforward.wav")  # "go forward ten meters", 2.8 s
    jfk = load_16k("audio/whisper/jfk.flac")  # 11 s: past the 7 s a 10-s context takes
    (short,), (long,) = transcriber.transcribe_many(
        [(command, [(0.0, len(command) / SAMPLE_RATE)]), (jfk, [(0.0, len(jfk) / SAMPLE_RATE)])]
    )
    assert sorted(heard) == [1000, 3000]
    assert word_error_rate("go forward ten meters", short.text).wer == 0.0
    assert word_error_rate(JFK, long.text).wer <= 0.05

    # Off, or without the fallback that catches its failures, every window hears 30 s.
    for change in ({"short_context_s": 0.0}, {"temperature_fallback": False}):
        heard.clear()
        full_context = WhisperTranscriber(replace(transcriber.config, **change))  # type: ignore[arg-type]
        (again,) = full_context.transcribe(command, [(0.0, len(command) / SAMPLE_RATE)])
        assert heard == [3000]
        assert word_error_rate("go forward ten meters", again.text).wer == 0.0


@needs_corpus
def test_a_files_transcript_does_not_depend_on_the_files_decoded_with_it(transcriber: WhisperTranscriber) -> None:
    paths = ("audio/vctk/p226_002.wav", "audio/pocketsphinx/goforward.wav", "audio/an4/an251-fash-b.wav")
    items = [(audio, [(0.0, len(audio) / SAMPLE_RATE)]) for audio in (load_16k(p) for p in paths)]

    together = transcriber.transcribe_many(items)
    alone = [transcriber.transcribe(audio, segments) for audio, segments in items]

    assert together == alone


def test_workers_share_the_threads_and_the_batch_between_decoders() -> None:
    def decoders(transcriber: WhisperTranscriber) -> tuple[int, int, int, int]:
        model = transcriber._model.model
        return transcriber.workers, transcriber.threads_per_worker, model.num_workers, transcriber.batch_size

    # Automatic: two one-thread decoders on two threads, the batch of 4 split between them.
    assert decoders(WhisperTranscriber(AsrConfig(device="cpu", cpu_threads=2))) == (2, 1, 2, CPU_AUTO_BATCH // 2)
    assert decoders(WhisperTranscriber(AsrConfig(device="cpu", cpu_threads=4))) == (2, 2, 2, CPU_AUTO_BATCH // 2)
    assert decoders(WhisperTranscriber(AsrConfig(device="cpu", cpu_threads=1))) == (1, 1, 1, CPU_AUTO_BATCH)
    # An odd count: one decoder with every thread, none left idle.
    assert decoders(WhisperTranscriber(AsrConfig(device="cpu", cpu_threads=3))) == (1, 3, 1, CPU_AUTO_BATCH)
    assert decoders(WhisperTranscriber(AsrConfig(device="cpu", cpu_threads=2, workers=1))) == (1, 2, 1, CPU_AUTO_BATCH)
    assert WhisperTranscriber(AsrConfig(device="cpu", cpu_threads=2, workers=2, batch_size=3)).batch_size == 3
    assert WhisperTranscriber(AsrConfig(device="cpu")).cpu_threads == min(4, usable_cpus())
    with pytest.raises(ValueError, match=r"workers \(3\) must not exceed cpu_threads \(2\)"):
        WhisperTranscriber(AsrConfig(device="cpu", cpu_threads=2, workers=3))


def test_cuda_gets_one_decoder_with_the_fitted_batch_and_a_failed_load_the_cpu_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load = asr_module._load_model
    monkeypatch.setattr(asr_module.ctranslate2, "get_cuda_device_count", lambda: 1)
    monkeypatch.setattr(asr_module, "fitted_gpu_batch", lambda: 8)

    # A usable GPU (the CPU model stands in for it): one decoder, the whole fitted batch.
    def cpu_as_gpu(path: str, device: str, compute: str, threads: int, workers: int) -> WhisperModel:
        return load(path, "cpu", "int8", threads, workers)

    monkeypatch.setattr(asr_module, "_load_model", cpu_as_gpu)
    on_gpu = WhisperTranscriber(AsrConfig(cpu_threads=2))
    assert (on_gpu.device, on_gpu.workers, on_gpu.batch_size) == ("cuda", 1, 8)

    def unusable_gpu(path: str, device: str, compute: str, threads: int, workers: int) -> WhisperModel:
        if device == "cuda":
            raise RuntimeError("CUDA driver version is insufficient")
        return load(path, device, compute, threads, workers)

    monkeypatch.setattr(asr_module, "_load_model", unusable_gpu)
    fell_back = WhisperTranscriber(AsrConfig(cpu_threads=2))
    assert (fell_back.device, fell_back.workers, fell_back.threads_per_worker, fell_back.batch_size) == (
        "cpu",
        2,
        1,
        CPU_AUTO_BATCH // 2,
    )


@needs_corpus
def test_decoders_at_once_give_the_transcripts_of_one_at_a_time(
    transcriber: WhisperTranscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    # vad_09 as one segment is decoded again at temperature 0.2 (sampling, see below).
    clips = [p for p in WER_CLIPS if p != "vad/vad_09.wav"]
    paths = [*clips, *(f"audio/audiomnist/{p.name}" for p in sorted((CORPUS / "audio/audiomnist").iterdir()))]
    items = [(audio, [(0.0, len(audio) / SAMPLE_RATE)]) for audio in (load_16k(p) for p in paths)]
    batches: list[tuple[float, float]] = []
    fallback_temperatures: list[float] = []
    forward, fallback = BatchedInferencePipeline.forward, WhisperModel.generate_with_fallback

    def spy_forward(self: BatchedInferencePipeline, *args: object) -> object:
        started = time.perf_counter()
        try:
            return forward(self, *args)
        finally:
            batches.append((started, time.perf_counter()))

    def spy_fallback(self: WhisperModel, *args: Any) -> Any:
        decoded = fallback(self, *args)
        fallback_temperatures.append(decoded[2])
        return decoded

    monkeypatch.setattr(BatchedInferencePipeline, "forward", spy_forward)
    monkeypatch.setattr(WhisperModel, "generate_with_fallback", spy_fallback)
    decoders = WhisperTranscriber(replace(transcriber.config, workers=2))
    at_once = decoders.transcribe_many(items)
    batches.sort()
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(batches))  # two decoded at once
    # Pieces that failed were decoded again, without sampling: what follows may ask for equal
    # transcripts (a piece decoded again at a temperature above 0 may differ between runs).
    assert fallback_temperatures and set(fallback_temperatures) == {0.0}

    # The same batches on the same one-thread decoders, one at a time: the same words and times;
    # probabilities to float precision. (Not compared: one decoder with both threads, or other
    # batches; a batch's make-up and the thread count change CTranslate2's sums, and with them a
    # word time here and there: 1.44 s instead of 1.46 s for one digit.)
    assert decoders.threads_per_worker == 1
    one_at_a_time = WhisperTranscriber(decoders.config)
    monkeypatch.setattr(one_at_a_time, "_map", lambda work, items: [work(item) for item in items])
    alone = one_at_a_time.transcribe_many(items)

    def said(results: list[list[SegmentTranscript]]) -> list[list[tuple[object, ...]]]:
        return [[(r.text, [(w.word, w.start_s, w.end_s) for w in r.words]) for r in per_file] for per_file in results]

    def scores(results: list[list[SegmentTranscript]]) -> list[float]:
        return [x for per_file in results for r in per_file for x in (r.avg_logprob, r.no_speech_prob)]

    assert said(alone) == said(at_once)
    assert scores(alone) == pytest.approx(scores(at_once), rel=1e-5)
    assert decoders.transcribe_many(items) == at_once  # and decoders at once repeat themselves


@needs_corpus
def test_segments_come_back_in_input_order_including_empty_ones(transcriber: WhisperTranscriber) -> None:
    audio = load_16k("vad/vad_04.wav")
    labels = vad_labels("vad_04.wav")
    duration = len(audio) / SAMPLE_RATE
    segments = [*reversed(labels), (5.0, 5.0), (duration + 1.0, duration + 2.0)]

    results = transcriber.transcribe(audio, segments)

    assert len(results) == len(segments)
    in_order = transcriber.transcribe(audio, labels)
    assert [r.text for r in results[: len(labels)]] == [r.text for r in reversed(in_order)]
    assert all(r.text for r in in_order)
    for empty in results[len(labels) :]:
        assert (empty.text, empty.words, empty.no_speech_prob) == ("", (), 1.0)
    assert transcriber.transcribe(audio, []) == []


@needs_corpus
def test_segment_longer_than_the_window_is_split_and_rejoined(transcriber: WhisperTranscriber) -> None:
    short_windows = WhisperTranscriber(AsrConfig(cpu_threads=2, window_s=6.0))
    assert short_windows._model is transcriber._model  # one cached model per (path, device, type, threads, decoders)
    audio = load_16k("audio/whisper/jfk.flac")
    duration = len(audio) / SAMPLE_RATE

    (result,) = short_windows.transcribe(audio, [(0.0, duration)])

    assert word_error_rate(JFK, result.text).wer <= 0.15
    assert_words_well_formed(result, 0.0, duration)


@needs_corpus
def test_progress_is_reported_while_decoding_and_adds_up_to_the_segments() -> None:
    # One decoder: decode calls of four one-window batches.
    one_window_batches = WhisperTranscriber(AsrConfig(cpu_threads=2, batch_size=1, workers=1))
    items: list[tuple[np.ndarray, Sequence[tuple[float, float]]]] = []
    for path in WER_CLIPS[5:12]:  # seven files, a window each: two decode calls
        audio = load_16k(path)
        items.append((audio, [(0.0, len(audio) / SAMPLE_RATE)]))
    audio, ((_, duration),) = items[0]
    # Seconds that are not decoded count as well: past the end of the audio, too short, or a file's only segment.
    items[0] = (audio, [(0.0, duration / 2), (duration / 2, duration + 1.0), (0.5, 0.52)])
    items.append((audio, [(1.0, 1.02)]))
    total = sum(end - start for _, segments in items for start, end in segments)
    reported: list[float] = []

    results = one_window_batches.transcribe_many(items, on_progress=reported.append)

    assert [len(r) for r in results] == [len(segments) for _, segments in items]
    assert len(reported) > 1 and all(seconds >= 0.0 for seconds in reported)
    assert reported[0] < total  # reported while windows were left to decode, not once at the end
    assert sum(reported) == pytest.approx(total, rel=1e-9)


def test_bad_inputs_are_rejected_before_decoding(transcriber: WhisperTranscriber) -> None:
    audio = np.zeros(SAMPLE_RATE, dtype=np.float32)
    with pytest.raises(ValueError, match="1-D"):
        transcriber.transcribe(np.zeros((2, SAMPLE_RATE), dtype=np.float32), [(0.0, 1.0)])
    with pytest.raises(ValueError, match="float"):
        transcriber.transcribe(np.zeros(SAMPLE_RATE, dtype=np.int16), [(0.0, 1.0)])
    with pytest.raises(ValueError, match="start_s"):
        transcriber.transcribe(audio, [(0.5, 0.2)])
    with pytest.raises(ValueError, match="start_s"):
        transcriber.transcribe(audio, [(-1.0, 0.2)])
