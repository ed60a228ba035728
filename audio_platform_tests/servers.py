"""Real servers for the production-store tests, started by the tests on loopback ports.

- ``s3_server``: moto's S3-compatible HTTP server. The AWS environment variables point at it
  (endpoint, dummy credentials, region), exactly how a deployment points the platform at its
  object store; the platform is never told about the test.
- ``postgres_server``: a throwaway PostgreSQL cluster (``initdb`` in a temp folder, password auth
  on 127.0.0.1). PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user.
  Without the server binaries the tests skip, except on CI (``CI`` set), where they fail:
  ``.ci/run`` installs them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest
import s3fs
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"


class _QuietHandler(MotoRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # one line per request drowns test output
        pass


class S3Server:
    """The running server, reached through the AWS_* variables the fixture sets."""

    def new_bucket(self) -> str:
        """A fresh bucket (tests never share one); returns its name."""
        name = f"test-{uuid.uuid4().hex[:12]}"
        boto3.client("s3").create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in ``bucket`` under ``prefix``, sorted (read with boto3, not the platform)."""
        pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    # One request at a time, like the store's own ordering of writes to a key: moto checks a
    # conditional PUT's precondition and stores the object in two steps, which concurrent handler
    # threads could interleave (real S3 does not). Clients still race: requests queue at the socket.
    server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="moto-s3", daemon=True)
    thread.start()
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_port}")
        env.setenv("AWS_ACCESS_KEY_ID", "test-key-id")
        env.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        # fsspec caches filesystem instances per process; one made before the variables were set
        # would talk to another endpoint.
        s3fs.S3FileSystem.clear_instance_cache()
        try:
            yield S3Server()
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.shutdown()
            thread.join(timeout=10)


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str

    def url(self, database: str, scheme: str = "postgresql") -> str:
        """A libpq URI, or with ``scheme="postgresql+psycopg2"`` a SQLAlchemy URL (MLflow)."""
        return f"{scheme}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database (tests never share one); returns its name."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        connection = psycopg2.connect(self.url("postgres"))
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return name


def _postgres_bin() -> Path | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    usable = [Path(p) for p in glob(POSTGRES_BIN_GLOB) if (Path(p) / "initdb").is_file()]
    return max(usable, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, default=None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = _postgres_bin()
    if bin_dir is None:
        message = f"no PostgreSQL server binaries under {POSTGRES_BIN_GLOB} (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run installs them, so CI must not skip these tests")
        pytest.skip(message)
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    # Outside pytest's tmp_path: that one is private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="audio-platform-pg-"))
    password = secrets.token_hex(16)
    (root / "pwfile").write_text(password)
    if as_postgres:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pwfile", "postgres")
    data, port = root / "data", _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_postgres, *args], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode:
            log = root / "server.log"
            raise RuntimeError(f"{args[0]} failed: {done.stderr}{log.read_text() if log.is_file() else ''}")

    try:
        run(
            str(bin_dir / "initdb"), "-D", str(data), "-U", "platform", "--pwfile", str(root / "pwfile"),
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        # Durability is not under test: fsync off keeps schema creation (Dagster, MLflow) fast.
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "start")
        try:
            yield PostgresServer("127.0.0.1", port, "platform", password)
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
