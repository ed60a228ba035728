"""Inventory of one input file: identity, safety, dedup, probing and the one decode.

Every input ends as exactly one row with status ``ok``, ``quarantined`` (with a reason a person
can act on) or ``duplicate`` (with the path of the copy that owns the content). Nothing here
raises for bad input: one broken file must never fail its shard.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from audio_platform.audio.decode import stream_mono_16k
from audio_platform.audio.pcm_cache import SAMPLE_RATE, PcmCache
from audio_platform.audio.probe import UnsupportedAudioError, content_hash, probe_audio

OK, QUARANTINED, DUPLICATE = "ok", "quarantined", "duplicate"


@dataclass(frozen=True)
class InventoryRecord:
    file_id: str | None
    source_path: str
    rel_path: str
    status: str
    reason: str | None
    bytes: int | None = None
    format: str | None = None
    codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    duration_s: float | None = None
    duplicate_of: str | None = None

    def as_row(self) -> dict[str, object]:
        return asdict(self)


def claimant_for(shard: str, source_path: str) -> str:
    return json.dumps({"shard": shard, "source_path": source_path}, sort_keys=True)


def _quarantine(source: Path, rel_path: str, reason: str, **known: object) -> InventoryRecord:
    return InventoryRecord(
        file_id=known.pop("file_id", None),  # type: ignore[arg-type]
        source_path=str(source),
        rel_path=rel_path,
        status=QUARANTINED,
        reason=reason,
        **known,  # type: ignore[arg-type]
    )


def _unsafe_location(source: Path, drop_root: Path) -> str | None:
    """Reason to refuse a path that escapes the drop (symlink or ``..``), else None."""
    try:
        resolved = source.resolve(strict=True)
    except (FileNotFoundError, RuntimeError, OSError) as err:
        return f"cannot resolve path: {type(err).__name__}: {err}"
    if not resolved.is_relative_to(drop_root.resolve()):
        return f"path resolves outside the drop root ({resolved}); refusing to read it"
    return None


def inventory_file(
    source: Path,
    rel_path: str,
    drop_root: Path,
    claimant: str,
    claim: Callable[[str, str], str],
    cache: PcmCache,
    max_duration_s: float | None = None,
) -> InventoryRecord:
    """Account for one input file. ``claim(file_id, claimant)`` returns the owner of the content:
    ``claimant`` when this file owns it (or owned it on an earlier run), another claimant's string
    (see :func:`claimant_for`) when it is a duplicate."""
    try:
        before = source.lstat()
    except FileNotFoundError:
        return _quarantine(source, rel_path, "file vanished before it could be read")
    except OSError as err:
        return _quarantine(source, rel_path, f"cannot stat file: {err.strerror or err}")

    unsafe = _unsafe_location(source, drop_root)
    if unsafe:
        return _quarantine(source, rel_path, unsafe)
    target_stat = source.stat() if stat.S_ISLNK(before.st_mode) else before
    if not stat.S_ISREG(target_stat.st_mode):
        return _quarantine(source, rel_path, "not a regular file")
    size = target_stat.st_size
    try:
        file_id = content_hash(source)
    except PermissionError:
        return _quarantine(source, rel_path, "unreadable: permission denied", bytes=size)
    except OSError as err:
        return _quarantine(source, rel_path, f"unreadable: {err.strerror or err}", bytes=size)

    owner = claim(file_id, claimant)
    if owner != claimant:
        duplicate_of = json.loads(owner).get("source_path")
        return InventoryRecord(
            file_id=file_id,
            source_path=str(source),
            rel_path=rel_path,
            status=DUPLICATE,
            reason=f"same content as {duplicate_of}",
            bytes=size,
            duplicate_of=duplicate_of,
        )
    if size == 0:
        return _quarantine(source, rel_path, "empty file (0 bytes)", file_id=file_id, bytes=0)

    try:
        info = probe_audio(source)
        if cache.has(file_id):
            samples = cache.samples(file_id)
        else:
            samples = cache.write(file_id, stream_mono_16k(source, max_duration_s=max_duration_s))
    except UnsupportedAudioError as err:
        return _quarantine(source, rel_path, err.reason, file_id=file_id, bytes=size)
    except OSError as err:
        reason = f"read failed: {err.strerror or err}"
        return _quarantine(source, rel_path, reason, file_id=file_id, bytes=size)

    known = {
        "file_id": file_id,
        "bytes": size,
        "format": info.format,
        "codec": info.codec,
        "sample_rate": info.sample_rate,
        "channels": info.channels,
        "duration_s": samples / SAMPLE_RATE,
    }
    try:
        after = source.stat()
    except FileNotFoundError:
        return _quarantine(source, rel_path, "file was deleted while it was being processed", **known)
    if (after.st_size, after.st_mtime_ns) != (target_stat.st_size, target_stat.st_mtime_ns):
        return _quarantine(source, rel_path, "file changed while it was being processed; re-drop it", **known)
    if samples == 0:
        return _quarantine(source, rel_path, "no audio samples", **known)
    return InventoryRecord(source_path=str(source), rel_path=rel_path, status=OK, reason=None, **known)  # type: ignore[arg-type]
