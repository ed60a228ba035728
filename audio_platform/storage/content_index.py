"""Content claims: the first (shard, path) to claim a content hash owns it; later ones are duplicates.

A claim is a small file named by the hash, published with ``os.link`` from a temp file: link
fails if the name exists, so two shard runs racing on the same content get one winner without
any lock server, and a re-run of the owning shard finds its own claim and keeps ownership.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


class ContentIndex:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, content_hash: str) -> Path:
        return self.root / content_hash[:2] / content_hash

    def owner(self, content_hash: str) -> str | None:
        try:
            return self._path(content_hash).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def claim(self, content_hash: str, claimant: str) -> str:
        """Claim ``content_hash`` for ``claimant``; return the owner (``claimant`` if it won)."""
        final = self._path(content_hash)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.parent / f".{content_hash}.{uuid.uuid4().hex}"
        temp.write_text(claimant, encoding="utf-8")
        try:
            os.link(temp, final)
            return claimant
        except FileExistsError:
            owner = final.read_text(encoding="utf-8")
            return owner
        finally:
            temp.unlink(missing_ok=True)
