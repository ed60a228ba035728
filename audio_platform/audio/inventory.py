"""Inventory of one input file: identity, safety, dedup, probing and the one decode.

Every input ends as exactly one row with status ``ok``, ``quarantined`` (with a reason a person
can act on), ``duplicate`` (with the path of the copy that owns the content) or ``removed`` (the
file left the drop folder after it was registered). Nothing here raises for bad input: one broken
file must never fail its shard.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from audio_platform.audio.decode import stream_mono_16k
from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.audio.pcm_cache import PcmCache
from audio_platform.audio.probe import UnsupportedAudioError, content_hash, probe_audio
from audio_platform.storage.drops import undecodable_original

OK, QUARANTINED, DUPLICATE, REMOVED = "ok", "quarantined", "duplicate", "removed"
FILE_STATUSES = (OK, QUARANTINED, DUPLICATE, REMOVED)

# Stable categories of quarantine reasons, for metadata keys and metrics labels: the reason texts
# themselves carry details (bytes, paths, frame counts) and are too many to plot or alert on.
# First matching prefix wins, so the specific "unreadable:" comes before "unreadable <format> file".
_CATEGORY_PREFIXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("empty", ("empty file",)),
    ("not_audio", ("not audio",)),
    ("no_samples", ("no audio samples",)),
    ("too_long", ("longer than the configured maximum",)),
    ("truncated", ("truncated",)),
    ("unsupported", ("unsupported ", "invalid channel count", "no audio stream", "sample rate changes")),
    ("changed", ("file vanished", "file was deleted", "file was replaced", "file changed")),
    ("hidden", ("hidden file",)),
    ("unsafe_path", ("path resolves outside", "broken symlink", "symlink loop", "not a regular file", "file name")),
    ("unreadable", ("unreadable:", "cannot stat", "cannot read", "cannot resolve", "read failed")),
    ("corrupt", ("corrupt ", "malformed ", "unreadable ", "cannot decode", "contains NaN")),
)
QUARANTINE_CATEGORIES: tuple[str, ...] = (*(category for category, _ in _CATEGORY_PREFIXES), "other")


def quarantine_category(reason: str) -> str:
    """The stable category (one of ``QUARANTINE_CATEGORIES``) of a quarantine reason text."""
    if "stream ends early" in reason:  # "<format> stream ends early: decoded N of M frames"
        return "truncated"
    return next((category for category, prefixes in _CATEGORY_PREFIXES if reason.startswith(prefixes)), "other")


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


_SHARD_SUFFIX = re.compile(r"-\d{4,}$")


def _same_file_same_drop(owner: str, claimant: str) -> bool:
    a, b = json.loads(owner), json.loads(claimant)
    same_drop = _SHARD_SUFFIX.sub("", str(a.get("shard"))) == _SHARD_SUFFIX.sub("", str(b.get("shard")))
    return a.get("source_path") == b.get("source_path") and same_drop


def removed_record(
    previous: dict[str, object] | None, source_path: str, rel_path: str, removed_at: str
) -> InventoryRecord:
    """The row of a file that left the drop: what was known of it (``previous``, its last
    ``audio_files`` row, when it was processed), with status ``removed``."""
    known = {k: v for k, v in (previous or {}).items() if k in InventoryRecord.__dataclass_fields__}
    known.update(
        source_path=source_path,
        rel_path=rel_path,
        status=REMOVED,
        reason=f"removed from the drop folder (noticed {removed_at}); its segments are no longer served",
        duplicate_of=None,
    )
    known.setdefault("file_id", None)
    return InventoryRecord(**known)  # type: ignore[arg-type]


def _quarantine(source: Path, rel_path: str, reason: str, **known: object) -> InventoryRecord:
    return InventoryRecord(
        file_id=known.pop("file_id", None),  # type: ignore[arg-type]
        source_path=str(source),
        rel_path=rel_path,
        status=QUARANTINED,
        reason=reason,
        **known,  # type: ignore[arg-type]
    )


def _resolve_inside(source: Path, drop_root: Path) -> tuple[Path, str | None]:
    """The symlink-free path of ``source`` and a reason to refuse it if it escapes the drop
    (symlink or ``..``), else None.

    Every later read goes through the resolved path, never through ``source``: a symlink swapped
    after this check then cannot redirect the read. A directory of the resolved path swapped for a
    symlink still could, which the identity check of :func:`_changed_since` catches afterwards.
    """
    try:
        resolved = source.resolve(strict=True)
    except FileNotFoundError:
        return source, "broken symlink: its target does not exist"
    except RuntimeError:  # Python < 3.13 reports a loop this way; 3.13 raises OSError(ELOOP)
        return source, "symlink loop: the path never resolves to a file"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return source, "symlink loop: the path never resolves to a file"
        return source, f"cannot resolve path: {err.strerror or err}"
    if not resolved.is_relative_to(drop_root.resolve()):
        return resolved, f"path resolves outside the drop root ({resolved}); refusing to read it"
    return resolved, None


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a named pipe", stat.S_ISSOCK: "a socket"}
    return next((name for test, name in kinds.items() if test(mode)), "a device or special file")


def _changed_since(source: Path, before: os.stat_result) -> str | None:
    """Reason to distrust what was read from ``source`` since ``before`` was taken, else None."""
    try:
        after = source.stat()
    except FileNotFoundError:
        return "file was deleted while it was being processed"
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        return "file was replaced while it was being processed (path now names another file); re-drop it"
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        return "file changed while it was being processed; re-drop it"
    return None


def inventory_file(
    source: Path,
    rel_path: str,
    drop_root: Path,
    claimant: str,
    claim: Callable[[str, str], str],
    cache: PcmCache,
    max_duration_s: float | None = None,
    release: Callable[[str, str], bool] | None = None,
) -> InventoryRecord:
    """Account for one input file. ``claim(file_id, claimant)`` returns the owner of the content:
    ``claimant`` when this file owns it (or owned it on an earlier run), another claimant's string
    (see :func:`claimant_for`) when it is a duplicate.

    An ``ok`` row may still carry a reason: a note on a usable file that is not what its header
    says (e.g. a cut-off WAV, processed up to the cut)."""
    if Path(rel_path).name.startswith("."):
        # Hidden names are editors' swap files, OS metadata (.DS_Store) and in-flight copies: never
        # processed, but listed so that every file of a drop is accounted for.
        return _quarantine(source, rel_path, "hidden file (name starts with '.'): not processed; rename it to use it")
    try:
        before = source.lstat()
    except FileNotFoundError:
        original = undecodable_original(str(source))
        if original is not None and os.path.lexists(original):
            # The lake can only hold UTF-8, so the name is stored escaped and cannot be reopened.
            return _quarantine(source, rel_path, "file name is not valid UTF-8 (shown with \\x escapes); rename it")
        return _quarantine(source, rel_path, "file vanished before it could be read")
    except OSError as err:
        return _quarantine(source, rel_path, f"cannot stat file: {err.strerror or err}")

    resolved, unsafe = _resolve_inside(source, drop_root)
    if unsafe:
        return _quarantine(source, rel_path, unsafe)
    try:
        target_stat = resolved.stat() if stat.S_ISLNK(before.st_mode) else before
    except FileNotFoundError:
        return _quarantine(source, rel_path, "file vanished before it could be read")
    if not stat.S_ISREG(target_stat.st_mode):
        return _quarantine(source, rel_path, f"not a regular file: {_file_kind(target_stat.st_mode)}")
    size = target_stat.st_size
    try:
        file_id = content_hash(resolved)
    except PermissionError:
        return _quarantine(source, rel_path, "unreadable: permission denied", bytes=size)
    except OSError as err:
        return _quarantine(source, rel_path, f"unreadable: {err.strerror or err}", bytes=size)
    if size == 0:
        # Before the claim: every empty file is reported as empty, not as a duplicate of the first.
        return _quarantine(source, rel_path, "empty file (0 bytes)", file_id=file_id, bytes=0)

    owner = claim(file_id, claimant)
    if owner != claimant and release is not None and _same_file_same_drop(owner, claimant):
        # An earlier version's layout put this very file in another shard of its drop: the file
        # takes its claim over instead of becoming a duplicate of itself.
        release(file_id, owner)
        owner = claim(file_id, claimant)
    if owner != claimant:
        owned_by = json.loads(owner)
        duplicate_of = owned_by.get("source_path")
        if duplicate_of == str(source):
            # Not a copy: the very same file, listed by an overlapping drop (a folder and its parent).
            reason = f"the same file is already processed in shard {owned_by.get('shard')} (overlapping drops)"
        else:
            reason = f"same content as {duplicate_of}"
        return InventoryRecord(
            file_id=file_id,
            source_path=str(source),
            rel_path=rel_path,
            status=DUPLICATE,
            reason=reason,
            bytes=size,
            duplicate_of=duplicate_of,
        )

    decoded_here = not cache.has(file_id)
    try:
        info = probe_audio(resolved)
        if decoded_here:
            samples = cache.write(file_id, stream_mono_16k(resolved, max_duration_s=max_duration_s))
        else:
            samples = cache.samples(file_id)
    except (UnsupportedAudioError, OSError) as err:
        # A file replaced or deleted mid-read fails to decode for that reason, not for its content.
        changed = _changed_since(resolved, target_stat)
        if changed:
            return _quarantine(source, rel_path, changed, file_id=file_id, bytes=size)
        if isinstance(err, UnsupportedAudioError):
            return _quarantine(source, rel_path, err.reason, file_id=file_id, bytes=size)
        return _quarantine(source, rel_path, f"read failed: {err.strerror or err}", file_id=file_id, bytes=size)

    known = {
        "file_id": file_id,
        "bytes": size,
        "format": info.format,
        "codec": info.codec,
        "sample_rate": info.sample_rate,
        "channels": info.channels,
        "duration_s": samples / SAMPLE_RATE,
    }
    changed = _changed_since(resolved, target_stat)
    if changed:
        if decoded_here:
            # What was decoded may be newer content than the hash names: never cache it under that hash.
            cache.discard(file_id)
        return _quarantine(source, rel_path, changed, **known)
    if samples == 0:
        return _quarantine(source, rel_path, "no audio samples", **known)
    return InventoryRecord(source_path=str(source), rel_path=rel_path, status=OK, reason=info.note, **known)  # type: ignore[arg-type]
