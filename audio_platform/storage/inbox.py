"""The inbox: each sub-folder is a drop, judged complete by watching it, not by its timestamps.

Each sensor tick lists every drop (names, sizes, modification times, inodes: a
:func:`~audio_platform.storage.drops.fingerprint`) and compares the listing with the one it saw
before. A drop is complete when

* it holds a ready marker (``_READY``/``_SUCCESS``/``.ready``) and its listing did not change
  since the previous tick (and no hidden in-flight file such as ``.name.partial`` is present), or
* its listing has been observed unchanged for the quiet period, marker or not.

File timestamps are never compared with the clock: a file copied with its old modification time
(``cp -p``, ``rsync -t``) still changes the listing when it arrives, and a file still being
written changes it on every tick. A drop with no files is never complete. After a drop is
registered, its listing is still watched: files added, changed or removed later make it change
again, and once it is complete again it is registered again (only what changed is processed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio_platform.storage.drops import READY_MARKERS, DropFile, fingerprint, is_platform_home, scan_drop


@dataclass(frozen=True)
class DropWatch:
    """What the sensor remembers of one drop between ticks (stored in its cursor)."""

    listing: str  # fingerprint of the last listing seen
    since: float  # when that listing was first seen
    registered: str | None = None  # fingerprint of the listing last registered
    drop_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"listing": self.listing, "since": self.since, "registered": self.registered, "drop_id": self.drop_id}

    @classmethod
    def from_json(cls, raw: Any) -> DropWatch:
        if isinstance(raw, str):  # cursor of an earlier version: {name: drop_id} of processed drops
            return cls(listing="", since=0.0, registered="", drop_id=raw)
        return cls(raw["listing"], float(raw["since"]), raw.get("registered"), raw.get("drop_id"))


@dataclass(frozen=True)
class DropStatus:
    path: Path
    complete: bool
    files: list[DropFile]
    reason: str
    watch: DropWatch
    follow_up: bool = False  # the drop was registered before and changed since


def _in_flight(files: list[DropFile]) -> int:
    return sum(1 for f in files if Path(f.rel_path).name.startswith("."))


def inspect_drop(folder: Path, quiet_period_s: float, now: float, previous: DropWatch | None = None) -> DropStatus:
    """Decide whether ``folder`` is complete, given what the last tick saw (``previous``)."""
    files = scan_drop(folder)
    listing = fingerprint(files)
    marked = any((folder / name).exists() for name in READY_MARKERS)
    if previous is None or previous.listing != listing:
        registered, drop_id = (previous.registered, previous.drop_id) if previous else (None, None)
        watch = DropWatch(listing, now, registered, drop_id)
    else:
        watch = previous
    follow_up = bool(watch.registered)

    def status(complete: bool, reason: str) -> DropStatus:
        return DropStatus(folder, complete, files, reason, watch, follow_up)

    if watch.registered == listing:
        return status(False, "registered; unchanged since")
    if not files and not follow_up:
        return status(False, "no files yet")  # a registered drop that empties is registered again
    stable_s = now - watch.since
    if stable_s <= 0:
        return status(False, "listing changed since the last look")
    if stable_s >= quiet_period_s:
        return status(True, f"unchanged for {stable_s:.0f} s")
    in_flight = _in_flight(files)
    if marked and not in_flight:
        return status(True, f"ready marker present, unchanged for {stable_s:.0f} s")
    waiting_for = f"{in_flight} hidden in-flight file(s)" if marked else "a ready marker or the quiet period"
    return status(False, f"unchanged for {stable_s:.0f} s; waiting for {waiting_for} ({quiet_period_s:.0f} s)")


def inbox_drops(inbox: Path) -> list[Path]:
    """Sub-folders of ``inbox`` (hidden ones excluded), oldest name first (names are usually timestamps)."""
    if not inbox.is_dir():
        return []
    return sorted(
        p
        for p in inbox.iterdir()
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".") and not is_platform_home(p)
    )
