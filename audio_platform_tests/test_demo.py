from __future__ import annotations

import csv
import re
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from audio_platform.audio.tts import synthesize_speech
from audio_platform.demo import METADATA_FILE, SPEECH_CLIPS, build_demo_drop

# name -> (sample rate, channels, container/codec as reported by the decoder)
EXPECTED_SPEECH = {
    "speech_01.wav": (16_000, 1, "PCM_16"),
    "speech_02.wav": (16_000, 1, "PCM_16"),
    "speech_03.wav": (44_100, 2, "PCM_16"),
    "speech_04.flac": (22_050, 1, "FLAC"),
    "speech_05.opus": (48_000, 1, "opus"),
    "speech_06.mp3": (44_100, 1, "mp3float"),
    "speech_07.wav": (22_050, 1, "FLOAT"),
    "speech_08.wav": (16_000, 1, "PCM_16"),
    "speech_09.flac": (22_050, 1, "FLAC"),
    "speech_10.wav": (16_000, 1, "PCM_16"),
    "speech_long.wav": (16_000, 1, "PCM_16"),
    "speech_01_copy.wav": (16_000, 1, "PCM_16"),
}
NONSPEECH = {"nonspeech_silence.wav", "nonspeech_pink_noise.wav", "nonspeech_sweep.wav"}
BROKEN = {"broken_random_bytes.wav", "broken_empty.wav"}
SENTENCE = "Six people waited at the stop until the light turned green."


def _decode(path: Path) -> tuple[np.ndarray, int, int, str]:
    """Mono samples, sample rate, channels and a format label, via soundfile or PyAV."""
    if path.suffix in {".wav", ".flac"}:
        info = sf.info(str(path))
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        label = "FLAC" if info.format == "FLAC" else info.subtype
        return data.mean(axis=1), rate, info.channels, label
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        to_mono = av.AudioResampler(format="flt", layout="mono", rate=stream.rate)
        chunks = [out.to_ndarray().reshape(-1) for frame in container.decode(stream) for out in to_mono.resample(frame)]
        return np.concatenate(chunks), stream.rate, stream.codec_context.channels, stream.codec_context.name


@pytest.fixture(scope="module")
def drops(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[Path]]:
    first = build_demo_drop(tmp_path_factory.mktemp("first") / "drop")
    second = build_demo_drop(tmp_path_factory.mktemp("second") / "drop")
    return first, second


def test_synthesize_speech_gives_audible_sentence_of_plausible_length() -> None:
    samples, rate = synthesize_speech(SENTENCE)
    assert rate == 22_050
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert 1.0 < samples.size / rate < 6.0
    assert float(np.sqrt(np.mean(samples**2))) > 0.01 and float(np.abs(samples).max()) <= 1.0


def test_different_voices_sound_different() -> None:
    american, _ = synthesize_speech(SENTENCE, voice="en-us")
    british, _ = synthesize_speech(SENTENCE, voice="en-gb-x-rp", pitch=70)
    n = min(american.size, british.size)
    assert american.size != british.size or not np.allclose(american[:n], british[:n], atol=0.05)


@pytest.mark.parametrize(
    ("text", "kwargs"), [("hello", {"voice": "xx-nonexistent"}), ("   ", {}), ("hi", {"rate_wpm": 5})]
)
def test_synthesize_speech_rejects_bad_arguments(text: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        synthesize_speech(text, **kwargs)  # type: ignore[arg-type]


def test_sentences_repeat_every_keyword() -> None:
    words = re.findall(r"[a-z]+", " ".join(u.text for c in SPEECH_CLIPS for u in c.utterances).lower())
    for keyword in ("six", "seven", "stop", "go"):
        assert words.count(keyword) >= 5, keyword


def test_drop_holds_exactly_the_expected_files(drops: tuple[list[Path], list[Path]]) -> None:
    paths, _ = drops
    assert sorted(p.name for p in paths) == sorted({*EXPECTED_SPEECH, *NONSPEECH, *BROKEN, METADATA_FILE})
    assert sorted(p.name for p in paths[0].parent.iterdir()) == sorted(p.name for p in paths)


def test_metadata_gives_every_speech_clip_its_spoken_text(drops: tuple[list[Path], list[Path]]) -> None:
    (metadata,) = [p for p in drops[0] if p.name == METADATA_FILE]
    with open(metadata, newline="", encoding="utf-8") as handle:
        rows = {row["file_name"]: row["transcription"] for row in csv.DictReader(handle)}
    assert rows == {clip.file_name: " ".join(u.text for u in clip.utterances) for clip in SPEECH_CLIPS}


def test_drop_is_byte_identical_across_builds(drops: tuple[list[Path], list[Path]]) -> None:
    first, second = drops
    for a, b in zip(first, second, strict=True):
        assert a.name == b.name and a.read_bytes() == b.read_bytes(), a.name


def test_speech_files_decode_at_expected_rate(drops: tuple[list[Path], list[Path]]) -> None:
    total_s = 0.0
    for path in drops[0]:
        if path.name in BROKEN or path.name == METADATA_FILE:
            continue
        samples, rate, channels, label = _decode(path)
        duration_s = samples.size / rate
        total_s += duration_s
        if path.name in NONSPEECH:
            assert (rate, round(duration_s, 2)) == (16_000, 5.0), path.name
            continue
        assert (rate, channels, label) == EXPECTED_SPEECH[path.name]
        assert (20.0 < duration_s < 40.0) if path.name == "speech_long.wav" else (1.5 < duration_s < 10.0)
        assert float(np.sqrt(np.mean(samples**2))) > 0.01, path.name
    assert 60.0 < total_s < 120.0


def test_defective_inputs_are_present(drops: tuple[list[Path], list[Path]]) -> None:
    by_name = {p.name: p for p in drops[0]}
    assert by_name["speech_01_copy.wav"].read_bytes() == by_name["speech_01.wav"].read_bytes()
    assert by_name["broken_empty.wav"].stat().st_size == 0
    for name in BROKEN:
        with pytest.raises(sf.LibsndfileError):
            sf.info(str(by_name[name]))
    silence, _ = sf.read(str(by_name["nonspeech_silence.wav"]))
    assert not silence.any()


def test_rebuild_leaves_identical_files_untouched_and_repairs_changed_ones(
    drops: tuple[list[Path], list[Path]],
) -> None:
    paths, _ = drops
    folder = paths[0].parent
    damaged = folder / "speech_02.wav"
    original = damaged.read_bytes()
    damaged.write_bytes(b"tampered")
    mtimes = {p.name: p.stat().st_mtime_ns for p in paths if p != damaged}

    assert build_demo_drop(folder) == paths
    assert damaged.read_bytes() == original
    assert {p.name: p.stat().st_mtime_ns for p in paths if p != damaged} == mtimes
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths)


def test_seed_changes_the_generated_noise(drops: tuple[list[Path], list[Path]], tmp_path: Path) -> None:
    default = {p.name: p.read_bytes() for p in drops[0]}
    other = {p.name: p.read_bytes() for p in build_demo_drop(tmp_path, seed=1)}
    assert other["broken_random_bytes.wav"] != default["broken_random_bytes.wav"]
    assert other["speech_01.wav"] != default["speech_01.wav"]
    assert other["nonspeech_silence.wav"] == default["nonspeech_silence.wav"]
