"""Decoded 16 kHz mono audio, cached once per content hash so later stages never decode again.

Stored as raw little-endian float32 (``<file_id>.f32``) and read back with ``np.memmap``, so a
stage touches only the pages it needs and a long file never has to sit in memory whole. Pages a
stage has read stay mapped (and counted in its RSS) until the mapping closes, so stages that
walk a long file call :func:`release_pages` behind themselves.
"""

from __future__ import annotations

import mmap
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from audio_platform.storage.temp_files import remove_stale_temps

_DTYPE = np.dtype("<f4")
_PAGE = mmap.PAGESIZE
_TEMP_SUFFIX = ".tmp"


class PcmCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, file_id: str) -> Path:
        return self.root / file_id[:2] / f"{file_id}.f32"

    def has(self, file_id: str) -> bool:
        return self.path(file_id).is_file()

    def write(self, file_id: str, blocks: Iterable[np.ndarray]) -> int:
        """Stream ``blocks`` into the cache atomically; return the number of samples written."""
        target = self.path(file_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Decoding a long file can write GBs that a killed writer would leave forever.
        remove_stale_temps(target.parent, f".*{_TEMP_SUFFIX}")
        temp = target.parent / f".{file_id}.{uuid.uuid4().hex}{_TEMP_SUFFIX}"
        samples = 0
        try:
            with open(temp, "wb") as handle:
                for block in blocks:
                    data = np.ascontiguousarray(block, dtype=_DTYPE)
                    handle.write(data.tobytes())
                    samples += data.size
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        return samples

    def discard(self, file_id: str) -> None:
        self.path(file_id).unlink(missing_ok=True)

    def load(self, file_id: str) -> np.ndarray:
        path = self.path(file_id)
        if path.stat().st_size == 0:
            return np.zeros(0, dtype=np.float32)
        return np.memmap(path, dtype=_DTYPE, mode="r")

    def samples(self, file_id: str) -> int:
        return self.path(file_id).stat().st_size // _DTYPE.itemsize


def release_pages(audio: np.ndarray, start: int = 0, stop: int | None = None) -> None:
    """Drop ``audio[start:stop]``'s pages from this process's memory if it is a view of a cache
    mapping (a no-op for ordinary arrays).

    The pages are clean copies of the file, so nothing is lost: a later read faults them back in
    from the OS page cache. This keeps a stage's RSS flat on a multi-hour file instead of
    growing to the file's size as it reads.
    """
    base: object = audio
    while isinstance(base, np.ndarray):
        base = base.base
    if not isinstance(base, mmap.mmap) or audio.size == 0:
        return
    origin = audio.__array_interface__["data"][0] - _mapping_address(base, audio)
    stop = audio.size if stop is None else min(stop, audio.size)
    first = origin + max(start, 0) * audio.itemsize
    last = origin + stop * audio.itemsize
    # Only whole pages inside the range: a page shared with unread samples is kept.
    first = -(-first // _PAGE) * _PAGE
    last = min(last // _PAGE * _PAGE, len(base))
    if last > first:
        base.madvise(mmap.MADV_DONTNEED, first, last - first)


def _mapping_address(mapping: mmap.mmap, view: np.ndarray) -> int:
    """Address of the mapping's first byte (the array may start anywhere inside it)."""
    whole = np.frombuffer(mapping, dtype=np.uint8, count=0)
    return int(whole.__array_interface__["data"][0])
