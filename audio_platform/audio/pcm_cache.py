"""Decoded 16 kHz mono audio, cached once per content hash so later stages never decode again.

Stored as raw little-endian float32 (``<file_id>.f32``) and read back with ``np.memmap``, so a
stage touches only the pages it needs and a long file never has to sit in memory whole.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
_DTYPE = np.dtype("<f4")


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
        temp = target.parent / f".{file_id}.{uuid.uuid4().hex}.tmp"
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
