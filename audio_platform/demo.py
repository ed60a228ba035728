"""Built-in demo drop: synthetic audio a user can ingest without any corpus.

Speech comes from espeak-ng through :mod:`audio_platform.audio.tts`; everything else is
generated numerically. No recording, generated or third-party, is shipped or committed. The drop
deliberately mixes formats, sample rates and defective inputs so that decoding, quarantine and
de-duplication all have something to do.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
import soundfile as sf
from scipy import signal
from scipy.io import wavfile

from audio_platform.audio.dsp import SAMPLE_RATE, colored_noise, dbfs_gain, resample
from audio_platform.audio.tts import Utterance, synthesize_in_fresh_process

Encoding = Literal["wav_pcm16", "wav_pcm16_stereo", "wav_float32", "flac", "opus", "mp3"]

# file extension and sample rate of each encoding
_ENCODINGS: dict[Encoding, tuple[str, int]] = {
    "wav_pcm16": (".wav", 16_000),
    "wav_pcm16_stereo": (".wav", 44_100),
    "wav_float32": (".wav", 22_050),
    "flac": (".flac", 22_050),
    "opus": (".opus", 48_000),
    "mp3": (".mp3", 44_100),
}


@dataclass(frozen=True)
class DemoClip:
    """One speech file of the drop; several utterances are joined with pauses."""

    stem: str
    encoding: Encoding
    utterances: tuple[Utterance, ...]
    gain: float = 1.0

    @property
    def file_name(self) -> str:
        return self.stem + _ENCODINGS[self.encoding][0]

    @property
    def sample_rate(self) -> int:
        return _ENCODINGS[self.encoding][1]


# Keywords six/seven/stop/go recur so a keyword spotter has positives; two
# sentences contain none of them to serve as negatives.
SPEECH_CLIPS: tuple[DemoClip, ...] = (
    DemoClip(
        "speech_01",
        "wav_pcm16",
        (
            Utterance(
                "Six people waited at the bus stop until the light turned green and we could go.",
                "en-us",
                160,
                50,
            ),
        ),
    ),
    DemoClip(
        "speech_02",
        "wav_pcm16",
        (Utterance("Please stop the recording at seven, then go home and rest.", "en", 150, 45),),
    ),
    DemoClip(
        "speech_03",
        "wav_pcm16_stereo",
        (Utterance("Seven, six, stop, go. Once again: seven, six, stop, go.", "en-us+f3", 140, 65),),
    ),
    DemoClip(
        "speech_04",
        "flac",
        (
            Utterance(
                "The weather today is mild, with a light breeze coming from the west.",
                "en-gb-scotland",
                170,
                40,
            ),
        ),
    ),
    DemoClip(
        "speech_05",
        "opus",
        (Utterance("We go to the market at six and stop for a coffee at seven.", "en-us-nyc", 175, 55),),
    ),
    DemoClip(
        "speech_06",
        "mp3",
        (Utterance("If the alarm rings, stop what you are doing and go outside.", "en-gb-x-rp+f2", 155, 60),),
    ),
    DemoClip(
        "speech_07",
        "wav_float32",
        (Utterance("She counted six red boats and seven blue ones in the harbour.", "en-029", 165, 50),),
        gain=0.5,
    ),
    DemoClip(
        "speech_08",
        "wav_pcm16",
        (
            Utterance(
                "Reading a good book on a quiet evening is one of life's simple pleasures.",
                "en-us+m3",
                185,
                35,
            ),
        ),
    ),
    DemoClip(
        "speech_09",
        "flac",
        (Utterance("Go left at the second stop, then walk for six minutes.", "en+f4", 145, 70),),
        gain=0.3,
    ),
    DemoClip(
        "speech_10",
        "wav_pcm16",
        (Utterance("The meeting moved from six to seven, so do not stop, just go.", "en-us+klatt", 160, 50),),
    ),
    DemoClip(
        "speech_long",
        "wav_pcm16",
        (
            Utterance("Welcome to the audio platform demo recording.", "en-us", 150, 50),
            Utterance(
                "In this longer file, a single speaker reads several sentences, with pauses in between them.",
                "en-us",
                150,
                50,
            ),
            Utterance(
                "The keyword spotter listens for the words six, seven, stop, and go.", "en-us", 150, 50
            ),
            Utterance(
                "Say go to start a task, and say stop to end it. Six and seven are just numbers.",
                "en-us",
                150,
                50,
            ),
            Utterance("When you hear seven beeps, stop talking and go to the next room.", "en-us", 150, 50),
            Utterance("Thank you for listening to this demonstration.", "en-us", 150, 50),
        ),
    ),
)

_NONSPEECH_RATE = SAMPLE_RATE
_NONSPEECH_SECONDS = 5.0
_NOISE_FLOOR_DBFS = -60.0


def _noise_floor(rng: np.random.Generator, n_samples: int) -> np.ndarray:
    return (rng.standard_normal(n_samples) * 10 ** (_NOISE_FLOOR_DBFS / 20)).astype(np.float32)


def _assemble(rng: np.random.Generator, segments: Sequence[np.ndarray], rate: int) -> np.ndarray:
    """Pad with 0.3-1 s of noise floor at both ends and 1-2 s between segments."""
    parts = [_noise_floor(rng, int(rate * rng.uniform(0.3, 1.0)))]
    for index, segment in enumerate(segments):
        if index:
            parts.append(_noise_floor(rng, int(rate * rng.uniform(1.0, 2.0))))
        parts.append(segment)
    parts.append(_noise_floor(rng, int(rate * rng.uniform(0.3, 1.0))))
    return np.concatenate(parts)


def _to_pcm16(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)


def _encode_wav(samples: np.ndarray, rate: int) -> bytes:
    # scipy rather than libsndfile: libsndfile stamps float WAVs with a
    # wall-clock time in their PEAK chunk, which would break byte-reproducibility.
    buffer = io.BytesIO()
    wavfile.write(buffer, rate, samples)
    return buffer.getvalue()


def _encode_flac(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _encode_lossy(
    samples: np.ndarray, rate: int, container: str, codec: Literal["libopus", "libmp3lame"]
) -> bytes:
    buffer = io.BytesIO()
    # bitexact drops the random Ogg serial number and the FFmpeg version tags.
    bitexact = {"fflags": "+bitexact"}
    with av.open(buffer, "w", format=container, container_options=bitexact) as output:
        stream = output.add_stream(codec, rate=rate, layout="mono", options={"flags": "+bitexact"})
        stream.bit_rate = 48_000
        frame = av.AudioFrame.from_ndarray(samples[np.newaxis, :], format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue()


def _encode(samples: np.ndarray, encoding: Encoding) -> bytes:
    rate = _ENCODINGS[encoding][1]
    samples = np.clip(samples, -1.0, 1.0).astype(np.float32)
    if encoding == "wav_pcm16":
        return _encode_wav(_to_pcm16(samples), rate)
    if encoding == "wav_pcm16_stereo":
        # A quieter, 0.2 ms-late right channel, as from two spaced microphones,
        # so that downmixing has two genuinely different channels to combine.
        right = 0.8 * np.concatenate([np.zeros(9, dtype=np.float32), samples[:-9]])
        return _encode_wav(_to_pcm16(np.stack([samples, right], axis=1)), rate)
    if encoding == "wav_float32":
        return _encode_wav(samples, rate)
    if encoding == "flac":
        return _encode_flac(samples, rate)
    if encoding == "opus":
        return _encode_lossy(samples, rate, "ogg", "libopus")
    return _encode_lossy(samples, rate, "mp3", "libmp3lame")


def _pink_noise(rng: np.random.Generator, n_samples: int) -> np.ndarray:
    return (colored_noise(rng, n_samples, 1.0) * dbfs_gain(-20.0)).astype(np.float32)  # -20 dBFS RMS


def _nonspeech_files(rng: np.random.Generator) -> list[tuple[str, bytes]]:
    n_samples = int(_NONSPEECH_RATE * _NONSPEECH_SECONDS)
    times = np.arange(n_samples) / _NONSPEECH_RATE
    sweep = 0.5 * signal.chirp(times, 50.0, _NONSPEECH_SECONDS, 7_500.0, method="logarithmic")
    return [
        ("nonspeech_silence.wav", _encode_wav(np.zeros(n_samples, np.int16), _NONSPEECH_RATE)),
        ("nonspeech_pink_noise.wav", _encode_wav(_to_pcm16(_pink_noise(rng, n_samples)), _NONSPEECH_RATE)),
        ("nonspeech_sweep.wav", _encode_wav(_to_pcm16(sweep), _NONSPEECH_RATE)),
    ]


def _write_if_changed(path: Path, data: bytes) -> None:
    if path.is_file() and path.read_bytes() == data:
        return  # leave mtime alone so change-detecting sensors see nothing new
    # Write then rename so a watcher never ingests a half-written file.
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


# The drop's reference transcripts (audiofolder metadata.csv): `audio-platform evaluate` scores them.
METADATA_FILE = "metadata.csv"


def _reference_transcripts() -> bytes:
    lines = io.StringIO()
    writer = csv.writer(lines, lineterminator="\n")
    writer.writerow(["file_name", "transcription"])
    writer.writerows((clip.file_name, " ".join(u.text for u in clip.utterances)) for clip in SPEECH_CLIPS)
    return lines.getvalue().encode("utf-8")


def build_demo_drop(destination: Path, seed: int = 0) -> list[Path]:
    """Write the demo drop into ``destination`` and return the paths of all its files.

    The drop holds the ``SPEECH_CLIPS`` in six encodings, three non-speech
    files, an undecodable and an empty ``.wav`` (to be quarantined) and a
    byte-identical copy of ``speech_01.wav`` (to be marked duplicate), and the reference
    transcripts of the speech in ``metadata.csv`` (not an input: drop metadata). The same
    ``seed`` yields byte-identical files, and files already holding the right
    bytes are not rewritten, so rebuilding changes nothing downstream.
    """
    synthesized = iter(synthesize_in_fresh_process([u for clip in SPEECH_CLIPS for u in clip.utterances]))
    rng = np.random.default_rng(seed)
    files: list[tuple[str, bytes]] = []
    for clip in SPEECH_CLIPS:
        segments, rates = zip(*(next(synthesized) for _ in clip.utterances), strict=True)
        audio = _assemble(rng, segments, rates[0]) * clip.gain
        files.append((clip.file_name, _encode(resample(audio, rates[0], clip.sample_rate), clip.encoding)))
    files.extend(_nonspeech_files(rng))
    files.append(("broken_random_bytes.wav", rng.bytes(4096)))
    files.append(("broken_empty.wav", b""))
    files.append(("speech_01_copy.wav", dict(files)["speech_01.wav"]))
    files.append((METADATA_FILE, _reference_transcripts()))

    destination.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files:
        path = destination / name
        _write_if_changed(path, data)
        paths.append(path)
    return paths
