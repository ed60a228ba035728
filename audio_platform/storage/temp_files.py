"""Temp files of atomic writers (write beside the target, then ``os.replace``), and the sweep of
those that a killed writer left behind."""

from __future__ import annotations

import time
from pathlib import Path

# A temp file this old belongs to a writer that was killed; newer ones may be in flight.
STALE_TEMP_AGE_S = 3600.0


def remove_stale_temps(folder: Path, pattern: str) -> None:
    """Delete the files of ``folder`` matching ``pattern`` that are older than ``STALE_TEMP_AGE_S``."""
    now = time.time()
    for temp in folder.glob(pattern):
        try:
            if now - temp.stat().st_mtime > STALE_TEMP_AGE_S:
                temp.unlink()
        except FileNotFoundError:
            continue
