"""decode_mono_16k / stream_mono_16k: the real corpus, resampling, bad input, fuzzing."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.signal import resample_poly

from audio_platform.audio.decode import decode_mono_16k, stream_mono_16k
from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.audio.probe import UnsupportedAudioError, probe_audio
from audio_platform_tests.audio.test_probe import (
    CORPUS,
    MANIFEST,
    drop_flac_length,
    needs_corpus,
    tone,
    write_sphere,
)


def expected_length(frames: int, rate: int) -> int:
    return math.ceil(frames * SAMPLE_RATE / rate)


def decode_reason(path: Path, **kwargs: float) -> str:
    with pytest.raises(UnsupportedAudioError) as caught:
        decode_mono_16k(path, **kwargs)
    return caught.value.reason


# ------------------------------------------------------------------------ real corpus


@needs_corpus
@pytest.mark.parametrize("row", MANIFEST, ids=lambda row: row["path"])
def test_corpus_file_decodes_to_16k_mono(row: dict[str, str]) -> None:
    path = CORPUS / row["path"]
    info = probe_audio(path)
    audio = decode_mono_16k(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == expected_length(info.num_frames, info.sample_rate)
    assert len(audio) / SAMPLE_RATE == pytest.approx(float(row["duration_s"]), abs=0.05)
    assert np.isfinite(audio).all()
    # Band-limiting a clipped source rings slightly past full scale (ESC-50 4-107117-A-33
    # reaches 1.07); nothing is clipped back, so "roughly [-1, 1]" is the promise.
    assert 0.0 < np.abs(audio).max() <= 1.2


# One file for each kind of input the decoder routes differently.
STREAM_CASES = [
    "an4/an326-ftal-b.sph",
    "deepspeech/LDC93S1_pcms16le_1_8000.wav",
    "deepspeech/LDC93S1_pcms16le_2_44100.wav",
    "ljspeech/LJ050-0161.wav",
    "vctk/p226_001.wav",
    "whisper/jfk.flac",
    "silero/test.mp3",
    "silero/test.opus",
    "ami/trn01.wav",
]


@needs_corpus
@pytest.mark.parametrize("name", STREAM_CASES)
def test_stream_blocks_concatenate_to_decode(name: str) -> None:
    path = CORPUS / "audio" / name
    blocks = list(stream_mono_16k(path, block_seconds=0.37))
    assert len(blocks) > 1
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    np.testing.assert_allclose(np.concatenate(blocks), decode_mono_16k(path), atol=1e-6)


@needs_corpus
def test_max_duration_from_header() -> None:
    path = CORPUS / "audio" / "silero" / "aepyx_8k.wav"  # 169 s
    assert decode_reason(path, max_duration_s=60) == "longer than the configured maximum of 60 s"
    assert len(decode_mono_16k(path, max_duration_s=200)) == expected_length(1353216, 8000)


@needs_corpus
def test_max_duration_while_decoding_mp3() -> None:
    # MP3 headers give no exact length, so the limit is enforced on decoded frames.
    path = CORPUS / "audio" / "silero" / "test.mp3"  # 2.53 s
    assert decode_reason(path, max_duration_s=1.5) == "longer than the configured maximum of 1.5 s"
    assert len(decode_mono_16k(path, max_duration_s=3)) == expected_length(111744, 44100)


# ------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000, 96000, 12345])
def test_streamed_resampling_equals_whole_signal_resampling(tmp_path: Path, rate: int) -> None:
    signal = np.random.default_rng(rate).uniform(-0.5, 0.5, int(2.3 * rate)).astype(np.float32)
    path = tmp_path / "noise.wav"
    sf.write(path, signal, rate, subtype="FLOAT")
    whole = resample_poly(signal, SAMPLE_RATE, rate)
    for block_seconds in (0.05, 0.31, 60.0):
        streamed = np.concatenate(list(stream_mono_16k(path, block_seconds=block_seconds)))
        assert len(streamed) == len(whole) == expected_length(len(signal), rate)
        np.testing.assert_allclose(streamed, whole, atol=1e-6)


def test_tone_keeps_its_frequency_and_level(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(2.0, 44100, freq=1000.0), 44100, subtype="PCM_16")
    audio = decode_mono_16k(path)
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) * SAMPLE_RATE / len(audio) == pytest.approx(1000, abs=1)
    assert np.sqrt(np.mean(audio[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_content_above_8khz_is_filtered_not_aliased(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(1.0, 48000, freq=11000.0), 48000, subtype="FLOAT")
    audio = decode_mono_16k(path)
    assert np.sqrt(np.mean(audio[500:-500] ** 2)) < 0.005  # would alias to 5 kHz at ~0.35


def test_channels_are_averaged(tmp_path: Path) -> None:
    left = tone(0.5, 16000)[:, 0]
    sf.write(tmp_path / "same.wav", np.stack([left, left], 1), 16000, subtype="FLOAT")
    sf.write(tmp_path / "opposite.wav", np.stack([left, -left], 1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(decode_mono_16k(tmp_path / "same.wav"), left, atol=1e-7)
    np.testing.assert_allclose(decode_mono_16k(tmp_path / "opposite.wav"), 0.0, atol=1e-7)


@pytest.mark.parametrize(("byte_format", "dtype"), [("01", np.int16), ("10", np.int16), ("3210", np.int32)])
def test_sphere_samples(tmp_path: Path, byte_format: str, dtype: type) -> None:
    full_scale = np.iinfo(dtype).max + 1
    samples: np.ndarray = (tone(0.1, 16000, 2) * full_scale).astype(dtype)
    path = write_sphere(tmp_path / "a.sph", samples, 16000, byte_format=byte_format)
    np.testing.assert_allclose(decode_mono_16k(path), samples.mean(axis=1) / full_scale, atol=1e-7)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
def test_flac_without_length_decodes_like_flac_with_it(tmp_path: Path, subtype: str) -> None:
    # The two files take different decoders (libsndfile, then FFmpeg): same samples.
    sf.write(tmp_path / "a.flac", tone(0.7, 44100, 2), 44100, subtype=subtype)
    sf.write(tmp_path / "b.flac", tone(0.7, 44100, 2), 44100, subtype=subtype)
    drop_flac_length(tmp_path / "b.flac")
    np.testing.assert_array_equal(decode_mono_16k(tmp_path / "a.flac"), decode_mono_16k(tmp_path / "b.flac"))


def test_damaged_mp3_frames_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "a.mp3"
    sf.write(path, tone(1.0, 44100), 44100, format="MP3")
    data = bytearray(path.read_bytes())
    for pos in range(1000, len(data), 50):  # some frames no longer decode
        data[pos] ^= 0xFF
    path.write_bytes(bytes(data))
    info = probe_audio(path)
    assert 0 < info.num_frames < 44100
    assert len(decode_mono_16k(path)) == expected_length(info.num_frames, 44100)


def test_streaming_memory_stays_bounded(tmp_path: Path) -> None:
    # 3 minutes of 48 kHz stereo is 66 MiB as float32 at the native rate.
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", 48000, 2, subtype="PCM_16") as f:
        for _ in range(18):
            f.write(tone(10.0, 48000, 2))
    tracemalloc.start()
    try:
        total = sum(len(block) for block in stream_mono_16k(path, block_seconds=10.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 180 * SAMPLE_RATE
    assert peak < 16 * 2**20


def test_block_seconds_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="block_seconds"):
        next(stream_mono_16k(tmp_path / "a.wav", block_seconds=0))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path: Path, bad: float) -> None:
    samples = tone(0.5, 16000)
    samples[4000] = bad
    sf.write(tmp_path / "a.wav", samples, 16000, subtype="FLOAT")
    assert decode_reason(tmp_path / "a.wav") == "contains NaN/Inf samples"


def test_zero_sample_wav(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros((0, 1), np.float32), 16000, subtype="PCM_16")
    assert decode_reason(tmp_path / "a.wav") == "no audio samples"


def test_truncated_wav_decodes_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(1.0, 8000), 8000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[: 44 + 2 * 3000])
    assert len(decode_mono_16k(path)) == 6000


def test_truncated_flac(tmp_path: Path) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, tone(2.0, 16000), 16000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:-300])
    assert decode_reason(path) == "truncated FLAC stream"


def test_text_and_empty_input(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_text("not audio at all\n")
    (tmp_path / "b.flac").write_bytes(b"")
    assert decode_reason(tmp_path / "a.wav") == "not audio: looks like text"
    assert decode_reason(tmp_path / "b.flac") == "empty file (0 bytes)"


# ----------------------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def fuzz_seeds(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Small valid files of every routed kind, plus the real corpus ones where present."""
    folder = tmp_path_factory.mktemp("seeds")
    signal = tone(0.3, 22050, 2)
    sf.write(folder / "s16.wav", signal, 22050, subtype="PCM_16")
    sf.write(folder / "f32.wav", signal, 22050, subtype="FLOAT")
    sf.write(folder / "a.flac", signal, 22050, subtype="PCM_24")
    sf.write(folder / "a.ogg", signal, 22050, format="OGG", subtype="VORBIS")
    sf.write(folder / "a.opus", signal, 16000, format="OGG", subtype="OPUS")
    sf.write(folder / "a.mp3", signal, 22050, format="MP3")
    write_sphere(folder / "a.sph", (signal * 32767).astype(np.int16), 22050)
    seeds = [p.read_bytes() for p in sorted(folder.iterdir())]
    if MANIFEST:
        for name in ("an4/an326-ftal-b.sph", "librispeech/1034-121119-0046.flac", "keywords/snowboy.wav"):
            seeds.append((CORPUS / "audio" / name).read_bytes())
    return seeds


@given(data=st.data())
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_damaged_real_bytes_only_raise_unsupported_audio(
    fuzz_seeds: list[bytes], tmp_path: Path, data: st.DataObject
) -> None:
    seed = bytearray(data.draw(st.sampled_from(fuzz_seeds), label="seed"))
    cut = data.draw(st.integers(0, len(seed)), label="keep bytes")
    del seed[cut:]
    if seed:
        edits = st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255))
        for pos, value in data.draw(st.lists(edits, max_size=20), label="edits"):
            seed[pos] = value
    path = tmp_path / "fuzz.bin"
    path.write_bytes(bytes(seed))
    try:
        info = probe_audio(path)
        audio = decode_mono_16k(path)
    except UnsupportedAudioError as err:
        assert err.reason
        return
    # When both succeed they must agree on the length.
    assert len(audio) == expected_length(info.num_frames, info.sample_rate)
