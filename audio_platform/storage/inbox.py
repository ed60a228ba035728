"""The inbox: each sub-folder is a drop; a drop is complete when marked ready or quiet long enough.

A producer either writes a marker file (``_READY``/``_SUCCESS``/``.ready``) when it has finished
copying, or simply stops writing: a drop whose newest file is older than the quiet period is
taken as complete. Half-copied drops are therefore never processed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from audio_platform.storage.drops import READY_MARKERS


@dataclass(frozen=True)
class DropStatus:
    path: Path
    complete: bool
    files: int
    reason: str


def inspect_drop(folder: Path, quiet_period_s: float, now: float) -> DropStatus:
    """Decide whether ``folder`` is complete, with the reason (shown in sensor logs)."""
    newest = 0.0
    files = 0
    marked = False
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name in READY_MARKERS:
                marked = True
                continue
            if name.startswith("."):
                # In-flight copies (rsync/gsutil temp names) are hidden: the drop is not done.
                newest = now
                continue
            files += 1
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except FileNotFoundError:
                newest = now  # a file moved while we looked: still changing
    if marked:
        return DropStatus(folder, True, files, "ready marker present")
    if files == 0:
        return DropStatus(folder, False, 0, "empty")
    idle = now - newest
    if idle >= quiet_period_s:
        return DropStatus(folder, True, files, f"quiet for {idle:.0f} s")
    return DropStatus(folder, False, files, f"changed {idle:.0f} s ago (quiet period {quiet_period_s:.0f} s)")


def pending_drops(inbox: Path, seen: set[str]) -> list[Path]:
    """Sub-folders of ``inbox`` not yet processed, oldest name first (names are usually timestamps)."""
    if not inbox.is_dir():
        return []
    return sorted(p for p in inbox.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in seen)
