"""Content claims: the first (shard, path) to claim a content hash owns it; later ones are duplicates.

A claim is a small file named by the hash, created only if the name is free, so two shard runs
racing on the same content get one winner without any lock server, and a re-run of the owning
shard finds its own claim and keeps ownership:

* in a folder, it is published with ``os.link`` from a temp file: link fails if the name exists;
* on an object store (``s3://``), it is a conditional PUT (``If-None-Match: *``): the store
  accepts one of any number of concurrent creates and refuses the others with 412, after which
  they read the winner. (AWS may answer a create that overlaps another with 409 instead: that
  raises, and the asset's retry policy runs the step again.)
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from upath import UPath

from audio_platform.storage.object_store import STORAGE_OPTIONS, is_object_store

# The claims live beside the lake's tables (a name Lake.tables() skips), on the same store.
INDEX_DIR = "_content_index"


class ContentIndex:
    """The claims under ``root``: a local folder (Path or str) or an ``s3://bucket/prefix`` URI."""

    def __init__(self, root: Path | str) -> None:
        self.remote = is_object_store(root)
        self.root = UPath(root, **STORAGE_OPTIONS) if self.remote else UPath(Path(root))

    def _path(self, content_hash: str) -> UPath:
        return self.root / content_hash[:2] / content_hash

    def owner(self, content_hash: str) -> str | None:
        try:
            return self._path(content_hash).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def claim(self, content_hash: str, claimant: str) -> str:
        """Claim ``content_hash`` for ``claimant``; return the owner (``claimant`` if it won)."""
        final = self._path(content_hash)
        if self.remote:
            try:
                final.fs.pipe_file(final.path, claimant.encode("utf-8"), mode="create")
                return claimant
            except FileExistsError:
                return final.read_text(encoding="utf-8")
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.parent / f".{content_hash}.{uuid.uuid4().hex}"
        temp.write_text(claimant, encoding="utf-8")
        try:
            os.link(temp.path, final.path)
            return claimant
        except FileExistsError:
            return final.read_text(encoding="utf-8")
        finally:
            temp.unlink(missing_ok=True)

    def release(self, content_hash: str, claimant: str) -> bool:
        """Give up ``claimant``'s claim on ``content_hash`` (a removed or changed file), so the next
        file with that content owns it. Another claimant's claim is left alone. Returns whether a
        claim was released. Not atomic with a concurrent claim of the same hash: the registration
        that releases also re-runs every shard that held a duplicate of it."""
        if self.owner(content_hash) != claimant:
            return False
        path = self._path(content_hash)
        if self.remote:
            path.fs.rm_file(path.path)
        else:
            Path(path.path).unlink(missing_ok=True)
        return True
