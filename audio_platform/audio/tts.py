"""Offline speech synthesis with espeak-ng (GPL-3.0-or-later), whose shared library and voice
data ``espeakng_loader`` provides and which is only called at run time.

Used by the demo drop (``audio_platform.demo``) and by keyword training (synthetic positives).
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
from pathlib import Path

import numpy as np

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


@dataclass(frozen=True)
class Utterance:
    text: str
    voice: str
    rate_wpm: int = 160
    pitch: int = 50


def _synthesize_batch(utterances: Sequence[Utterance]) -> list[tuple[np.ndarray, int]]:
    return [synthesize_speech(u.text, u.voice, u.rate_wpm, u.pitch) for u in utterances]


# Runs in a child interpreter; reads utterances as JSON, writes an .npz to stdout.
_WORKER_SCRIPT = """
import io, json, sys
import numpy as np
from audio_platform.audio.tts import Utterance, _synthesize_batch
batch = _synthesize_batch([Utterance(**fields) for fields in json.load(sys.stdin)])
buffer = io.BytesIO()
np.savez(buffer, *[samples for samples, _ in batch], rates=np.array([rate for _, rate in batch]))
sys.stdout.buffer.write(buffer.getvalue())
"""


def synthesize_in_fresh_process(utterances: Sequence[Utterance]) -> list[tuple[np.ndarray, int]]:
    # espeak-ng's wave generator keeps state (pitch-flutter phase, noise) across
    # utterances, even across espeak_Terminate/Initialize, so output depends on
    # what the process said before. A fresh interpreter starts from the
    # library's initial state, which makes the drop byte-reproducible. A plain
    # subprocess rather than multiprocessing: spawn would re-import the
    # caller's __main__, and fork would inherit the parent's espeak state.
    package_root = str(Path(__file__).resolve().parents[2])
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


