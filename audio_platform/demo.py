"""Built-in demo drop: synthetic audio a user can ingest without any corpus.

Speech comes from espeak-ng (GPL-3.0-or-later), whose shared library and voice
data ``espeakng_loader`` provides and which is only called at run time;
everything else is generated numerically. No recording, generated or
third-party, is shipped or committed. The drop deliberately mixes formats, sample rates
and defective inputs so that decoding, quarantine and de-duplication all have
something to do.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from math import gcd
from pathlib import Path
from typing import Literal

import av
import numpy as np
import soundfile as sf
from scipy import signal
from scipy.io import wavfile

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0
_RATE_RANGE_WPM = (80, 450)
_PITCH_RANGE = (0, 100)

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Espeak:
    """One initialised libespeak-ng; the library is process-global, so only one exists."""

    def __init__(self) -> None:
        try:
            import espeakng_loader

            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data_path: str = espeakng_loader.get_data_path()
        except (ImportError, OSError, RuntimeError) as exc:
            raise RuntimeError(
                f"cannot load libespeak-ng for speech synthesis ({exc}); "
                "install the 'espeakng-loader' package"
            ) from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        # DONT_EXIT: without it a missing data directory makes the library call exit().
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed with data path {data_path!r}")
        self._lib = lib
        self.sample_rate: int = rate
        self._chunks: list[np.ndarray] = []
        # Held on self: ctypes frees the C trampoline once the Python object is collected.
        self._callback = _SynthCallback(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: ctypes._Pointer[ctypes.c_short], n_samples: int, _events: int | None) -> int:
        if wav and n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0  # 0 = keep synthesising

    def synthesize(self, text: str, voice: str, rate_wpm: int, pitch: int) -> np.ndarray:
        if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise ValueError(
                f"unknown espeak-ng voice {voice!r}; use names such as 'en-us', 'en', "
                "'en-gb-x-rp' or 'en-gb-scotland', optionally with a variant like '+f3'"
            )
        self._lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0)
        self._lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
        # The breathiness noise of variants such as +f2 is otherwise seeded from the clock.
        self._lib.espeak_ng_SetRandSeed(0)
        encoded = text.encode("utf-8")
        self._chunks = []
        status = self._lib.espeak_Synth(
            encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        self._lib.espeak_Synchronize()
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status}")
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._chunks).astype(np.float32) / np.float32(32768)


_engine_lock = threading.Lock()
_engine: _Espeak | None = None


def synthesize_speech(
    text: str, voice: str = "en-us", rate_wpm: int = 160, pitch: int = 50
) -> tuple[np.ndarray, int]:
    """Speak ``text`` offline with espeak-ng; returns float32 mono samples and their rate.

    Raises ``RuntimeError`` if libespeak-ng cannot be loaded and ``ValueError``
    for an unknown voice or out-of-range rate/pitch. espeak-ng keeps
    wave-generator state between utterances, so repeating a call in the same
    process gives slightly different samples (and lengths a few samples apart);
    ``build_demo_drop`` synthesises in a fresh process to stay byte-reproducible.
    """
    if not text.strip():
        raise ValueError("text must not be empty")
    if not _RATE_RANGE_WPM[0] <= rate_wpm <= _RATE_RANGE_WPM[1]:
        raise ValueError(f"rate_wpm must be within {_RATE_RANGE_WPM}, got {rate_wpm}")
    if not _PITCH_RANGE[0] <= pitch <= _PITCH_RANGE[1]:
        raise ValueError(f"pitch must be within {_PITCH_RANGE}, got {pitch}")
    global _engine
    # The library has a single global synthesiser and our callback a single buffer.
    with _engine_lock:
        if _engine is None:
            _engine = _Espeak()
        return _engine.synthesize(text, voice, rate_wpm, pitch), _engine.sample_rate


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
class Utterance:
    text: str
    voice: str
    rate_wpm: int = 160
    pitch: int = 50


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

_NONSPEECH_RATE = 16_000
_NONSPEECH_SECONDS = 5.0
_NOISE_FLOOR_DBFS = -60.0


def _synthesize_batch(utterances: Sequence[Utterance]) -> list[tuple[np.ndarray, int]]:
    return [synthesize_speech(u.text, u.voice, u.rate_wpm, u.pitch) for u in utterances]


# Runs in a child interpreter; reads utterances as JSON, writes an .npz to stdout.
_WORKER_SCRIPT = """
import io, json, sys
import numpy as np
from audio_platform.demo import Utterance, _synthesize_batch
batch = _synthesize_batch([Utterance(**fields) for fields in json.load(sys.stdin)])
buffer = io.BytesIO()
np.savez(buffer, *[samples for samples, _ in batch], rates=np.array([rate for _, rate in batch]))
sys.stdout.buffer.write(buffer.getvalue())
"""


def _synthesize_in_fresh_process(utterances: Sequence[Utterance]) -> list[tuple[np.ndarray, int]]:
    # espeak-ng's wave generator keeps state (pitch-flutter phase, noise) across
    # utterances, even across espeak_Terminate/Initialize, so output depends on
    # what the process said before. A fresh interpreter starts from the
    # library's initial state, which makes the drop byte-reproducible. A plain
    # subprocess rather than multiprocessing: spawn would re-import the
    # caller's __main__, and fork would inherit the parent's espeak state.
    package_root = str(Path(__file__).resolve().parents[1])
    python_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", _WORKER_SCRIPT],
        input=json.dumps([asdict(u) for u in utterances]).encode(),
        capture_output=True,
        env={**os.environ, "PYTHONPATH": python_path},
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"speech synthesis worker failed:\n{result.stderr.decode()[-2000:]}")
    with np.load(io.BytesIO(result.stdout), allow_pickle=False) as archive:
        rates = archive["rates"]
        return [(archive[f"arr_{index}"], int(rate)) for index, rate in enumerate(rates)]


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


def _resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    if source_rate == target_rate:
        return samples
    divisor = gcd(source_rate, target_rate)
    resampled = signal.resample_poly(samples, target_rate // divisor, source_rate // divisor)
    return np.asarray(resampled, dtype=np.float32)


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
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    frequencies = np.arange(spectrum.size, dtype=np.float64)
    frequencies[0] = 1.0  # keep DC finite; its weight is irrelevant after mean removal
    noise = np.fft.irfft(spectrum / np.sqrt(frequencies), n_samples)
    noise -= noise.mean()
    rms = float(np.sqrt(np.mean(noise**2)))
    return (noise * (10 ** (-20 / 20) / rms)).astype(np.float32)  # -20 dBFS RMS


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


def build_demo_drop(destination: Path, seed: int = 0) -> list[Path]:
    """Write the demo drop into ``destination`` and return the paths of all its files.

    The drop holds the ``SPEECH_CLIPS`` in six encodings, three non-speech
    files, an undecodable and an empty ``.wav`` (to be quarantined) and a
    byte-identical copy of ``speech_01.wav`` (to be marked duplicate). The same
    ``seed`` yields byte-identical files, and files already holding the right
    bytes are not rewritten, so rebuilding changes nothing downstream.
    """
    synthesized = iter(_synthesize_in_fresh_process([u for clip in SPEECH_CLIPS for u in clip.utterances]))
    rng = np.random.default_rng(seed)
    files: list[tuple[str, bytes]] = []
    for clip in SPEECH_CLIPS:
        segments, rates = zip(*(next(synthesized) for _ in clip.utterances), strict=True)
        audio = _assemble(rng, segments, rates[0]) * clip.gain
        files.append((clip.file_name, _encode(_resample(audio, rates[0], clip.sample_rate), clip.encoding)))
    files.extend(_nonspeech_files(rng))
    files.append(("broken_random_bytes.wav", rng.bytes(4096)))
    files.append(("broken_empty.wav", b""))
    files.append(("speech_01_copy.wav", dict(files)["speech_01.wav"]))

    destination.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files:
        path = destination / name
        _write_if_changed(path, data)
        paths.append(path)
    return paths
