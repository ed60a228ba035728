"""Object-store locations (``s3://bucket/prefix``) and the filesystem that reaches them.

Any S3-compatible store works (AWS S3, MinIO, Ceph RGW, GCS's S3 API). Endpoint, region and
credentials come from the standard AWS configuration chain (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, web identity or instance
roles), never from a platform setting, so no secret is part of a setting, a Dagster run config or
a log line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fsspec

S3_SCHEME = "s3://"
# Listings are never cached: other run pods add shards and content claims at any time, and a
# cached listing would hide them for the life of a long-running process (the code server).
STORAGE_OPTIONS: dict[str, Any] = {"use_listings_cache": False}


def is_object_store(location: str | Path) -> bool:
    """True for ``s3://`` locations; a local folder (str or Path) is not one."""
    return isinstance(location, str) and location.startswith(S3_SCHEME)


def query_filesystem() -> fsspec.AbstractFileSystem:
    """A new ``s3://`` filesystem for one DuckDB connection, caching listings for its own life.

    DuckDB asks for each file's size and date about a dozen times per query; answered from the
    listing its glob just made, that is no request instead of a HEAD each (~5x fewer requests).
    A fresh instance per connection keeps that cache to one query's snapshot of the lake.
    """
    return fsspec.filesystem("s3", use_listings_cache=True, skip_instance_cache=True)
