"""ASR model profiles: the split `base` model joined into the model cache and checked, profile names
and local folders, and per-file language ID with the multilingual `base` on real and synthesized
speech."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from audio_platform.audio.asr import SAMPLE_RATE, AsrConfig, WhisperTranscriber
from audio_platform.audio.dsp import resample
from audio_platform.audio.tts import Utterance, synthesize_in_fresh_process
from audio_platform.audio.whisper_models import (
    MODEL_CACHE_ENV,
    WHISPER_BASE_SHA256,
    SplitModel,
    assembled,
    model_folder,
    model_name,
)
from audio_platform_tests.audio.test_asr import load_16k, needs_corpus

# English corpus clips of four sources (a speech, read books, a spelled-out census answer).
ENGLISH_CLIPS = (
    "audio/whisper/jfk.flac",
    "audio/ljspeech/LJ050-0161.wav",
    "audio/librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
    "audio/an4/an128-mcen-b.wav",
)
# espeak-ng voices whose speech Whisper base identifies (its French and Portuguese voices it does
# not: 0.15-0.6 for other languages), each with a sentence of that language.
SYNTHESIZED = {
    "de": "Der kleine Prinz schaute jeden Abend zu den Sternen und dachte an seine Rose.",
    "es": "El principito miraba las estrellas cada noche, pensando en su rosa.",
    "it": "Buongiorno a tutti. Oggi il tempo è molto bello a Roma, e andiamo a fare una passeggiata nel parco.",
}


def _split_model(tmp_path: Path, payload: bytes) -> SplitModel:
    """``payload`` in three parts plus a config file, pinned to the payload's SHA-256."""
    source = tmp_path / "packages"
    source.mkdir()
    thirds = [
        payload[: len(payload) // 3],
        payload[len(payload) // 3 : 2 * len(payload) // 3],
        payload[2 * len(payload) // 3 :],
    ]
    parts = []
    for i, chunk in enumerate(thirds, start=1):
        parts.append(source / f"model.bin.part{i}")
        parts[-1].write_bytes(chunk)
    (source / "config.json").write_text("{}")
    return SplitModel("whisper-test", tuple(parts), (source / "config.json",), hashlib.sha256(payload).hexdigest())


def test_split_model_is_joined_once_into_the_cache(tmp_path: Path) -> None:
    payload = np.random.default_rng(0).bytes(3 * 1024 * 1024 + 7)
    model = _split_model(tmp_path, payload)
    cache = tmp_path / "cache"
    folder = assembled(model, cache)
    assert folder == cache / "whisper-test"
    assert (folder / "model.bin").read_bytes() == payload
    assert (folder / "config.json").read_text() == "{}"
    assert [p.name for p in cache.iterdir()] == ["whisper-test"]  # no staging folder left
    # Assembled once: later uses take the cached folder without reading the parts.
    for part in model.parts:
        part.unlink()
    assert assembled(model, cache) == folder


def test_concurrent_assembly_publishes_one_complete_folder(tmp_path: Path) -> None:
    payload = np.random.default_rng(1).bytes(2 * 1024 * 1024)
    model = _split_model(tmp_path, payload)
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(4) as pool:
        folders = list(pool.map(lambda _: assembled(model, cache), range(4)))
    assert set(folders) == {cache / "whisper-test"}
    assert (cache / "whisper-test" / "model.bin").read_bytes() == payload
    assert [p.name for p in cache.iterdir()] == ["whisper-test"]


def test_a_corrupted_part_is_a_clear_error_and_leaves_no_cached_file(tmp_path: Path) -> None:
    payload = np.random.default_rng(2).bytes(1024 * 1024)
    model = _split_model(tmp_path, payload)
    damaged = bytearray(model.parts[1].read_bytes())
    damaged[100] ^= 0xFF
    model.parts[1].write_bytes(bytes(damaged))
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match=f"SHA-256 [0-9a-f]{{64}}, expected {model.sha256}.*reinstall"):
        assembled(model, cache)
    assert list(cache.iterdir()) == []


def test_profile_names_and_local_folders_resolve(tmp_path: Path) -> None:
    assert (model_folder("tiny.en") / "model.bin").is_file()
    local = tmp_path / "my-whisper"
    local.mkdir()
    (local / "model.bin").write_bytes(b"")
    assert model_folder(str(local)) == local
    assert [model_name("tiny.en"), model_name("base"), model_name(f"{local}/")] == ["tiny.en", "base", "my-whisper"]
    with pytest.raises(FileNotFoundError, match=r"neither a profile \(tiny\.en, base\)"):
        model_folder(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=r"no model\.bin"):
        model_folder("small")


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh model cache for this module: `base` is assembled in it from the installed packages."""
    cache = tmp_path_factory.mktemp("model_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MODEL_CACHE_ENV, str(cache))
        yield cache


@pytest.fixture(scope="module")
def base(model_cache: Path) -> WhisperTranscriber:
    return WhisperTranscriber(AsrConfig(model="base", language=None, device="cpu", cpu_threads=2))


def test_base_profile_is_assembled_into_the_model_cache_with_the_pinned_checksum(
    model_cache: Path, base: WhisperTranscriber
) -> None:
    folder = model_folder("base")
    assert folder.parent == model_cache and base.model_name == "base"
    digest = hashlib.sha256((folder / "model.bin").read_bytes()).hexdigest()
    assert digest == WHISPER_BASE_SHA256
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]


def _synthesized() -> dict[str, np.ndarray]:
    spoken = synthesize_in_fresh_process([Utterance(text, voice) for voice, text in SYNTHESIZED.items()])
    return {voice: resample(samples, rate) for voice, (samples, rate) in zip(SYNTHESIZED, spoken, strict=True)}


@pytest.fixture(scope="module")
def other_languages() -> dict[str, np.ndarray]:
    """Non-English speech by language: synthesized sentences and the corpus's Russian clip."""
    return {**_synthesized(), "ru": load_16k("audio/deepspeech/ru.wav")}


def _whole(audio: np.ndarray) -> list[tuple[float, float]]:
    return [(0.0, len(audio) / SAMPLE_RATE)]


@needs_corpus
def test_languages_are_identified_from_each_files_speech(
    base: WhisperTranscriber, other_languages: dict[str, np.ndarray]
) -> None:
    expected = ["en"] * len(ENGLISH_CLIPS) + list(other_languages)
    audios = [load_16k(clip) for clip in ENGLISH_CLIPS] + list(other_languages.values())
    languages = base.file_languages(audios, [_whole(a) for a in audios])
    for name, want, (language, probability) in zip(
        [*ENGLISH_CLIPS, *other_languages], expected, languages, strict=True
    ):
        assert language == want and probability is not None and probability > 0.7, (name, language, probability)


@needs_corpus
def test_each_file_is_transcribed_in_its_detected_language(
    base: WhisperTranscriber, other_languages: dict[str, np.ndarray]
) -> None:
    """Files of two languages in one call: each file's language is detected from its own speech,
    recorded on every segment of the file, and the file is transcribed (not translated) in it."""
    files = {language: other_languages[language] for language in ("de", "ru")}
    items = []
    for audio in files.values():
        end = len(audio) / SAMPLE_RATE
        items.append((audio, [(0.0, end / 2), (end / 2, end)]))
    results = base.transcribe_many(items)
    for language, segments in zip(files, results, strict=True):
        assert {s.language for s in segments} == {language}, segments
        assert len({s.language_probability for s in segments}) == 1 and segments[0].language_probability, segments
    german, russian = (" ".join(s.text for s in segments).lower() for segments in results)
    assert "prinz" in german and "sternen" in german, german
    assert "ребят" in russian, russian


@needs_corpus
def test_a_configured_language_is_not_detected(base: WhisperTranscriber) -> None:
    audio = load_16k("audio/whisper/jfk.flac")
    fixed = WhisperTranscriber(AsrConfig(model="base", language="en", device="cpu", cpu_threads=2))
    (result,) = fixed.transcribe(audio, [(0.0, len(audio) / SAMPLE_RATE)])
    assert (result.language, result.language_probability) == ("en", None)
    assert "country" in result.text
    # An English-only model has nothing to detect either.
    english_only = WhisperTranscriber(AsrConfig(language=None, device="cpu", cpu_threads=2))
    assert english_only.file_languages([audio], [[(0.0, 11.0)]]) == [("en", None)]
    # A file without speech is not sent to language ID.
    assert base.file_languages([audio], [[]]) == [("en", None)]
