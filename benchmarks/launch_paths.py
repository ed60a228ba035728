"""Benchmark: the same shard through the three ways a run starts — the CLI, the UI, the inbox sensor.

    .venv/bin/python -m benchmarks.launch_paths [--files 15] [--out docs/launch_paths.md]

Each path gets a fresh platform home and the same drop (the first ``--files`` clips of the corpus
manifest that have a transcript, copied into one folder: one shard):

* **CLI**: ``audio-platform process <drop>``, wall time of the whole command (start-up included);
* **CLI with serve**: the same command while ``audio-platform serve`` runs on the home, so the
  CLI submits the run to the daemon's queue and follows it;
* **UI**: ``audio-platform serve`` running; the drop is registered, then ``process_shard`` is
  submitted for its shard through the webserver's GraphQL API (what the launchpad's button
  does); time from submission to the run's success;
* **sensor**: ``audio-platform serve`` running; the drop is moved into the inbox with ``_READY``;
  time from landing to the shard run's success (includes the sensor's 10-s ticks and the
  observation that the drop stopped changing).

The acceptance bound (issue 15) is UI and sensor within 1.5x the CLI time + 30 s.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from audio_platform.defs.registration import register_drop
from audio_platform.runs import prepare_instance, serving_daemon
from audio_platform.settings import Settings
from audio_platform.storage.lake import Lake

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
BIN = Path(sys.executable).parent
TIMEOUT_S = 900.0


def build_drop(folder: Path, files: int) -> None:
    with open(CORPUS / "manifest.csv", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["transcript"] and float(row["duration_s"] or 0) < 30]
    folder.mkdir(parents=True)
    for row in rows[:files]:
        shutil.copyfile(CORPUS / row["path"], folder / row["path"].replace("/", "__"))


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "AUDIO_PLATFORM_HOME": str(home), "AUDIO_PLATFORM_INBOX_QUIET_PERIOD_S": "60"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Serve:
    """``audio-platform serve`` on a free loopback port, in its own process group."""

    def __init__(self, home: Path, log: Path) -> None:
        self.port = _free_port()
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                [str(BIN / "audio-platform"), "serve", "--port", str(self.port)],
                env=_env(home),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/server_info", timeout=5):
                    return
            except OSError:
                time.sleep(1)
        raise RuntimeError(f"serve did not answer within 180 s: {log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM to the whole process group, until every member (webserver, daemon, code server,
        run workers) is gone; SIGKILL after 60 s."""
        os.killpg(self.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        try:
            self.process.wait(timeout=60)
            while time.monotonic() < deadline:
                os.killpg(self.process.pid, 0)  # ProcessLookupError once the group is empty
                time.sleep(0.5)
            os.killpg(self.process.pid, signal.SIGKILL)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_for_success(instance: DagsterInstance, started: float) -> float:
    while time.monotonic() - started < TIMEOUT_S:
        runs = instance.get_runs(RunsFilter(job_name="process_shard"))
        if runs and runs[0].status == DagsterRunStatus.SUCCESS:
            return time.monotonic() - started
        if runs and runs[0].status == DagsterRunStatus.FAILURE:
            raise RuntimeError(f"run {runs[0].run_id} failed")
        time.sleep(0.5)
    raise TimeoutError("no successful process_shard run")


def via_cli(root: Path, drop: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        [str(BIN / "audio-platform"), "process", str(drop)],
        env=_env(root / "cli"),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def via_cli_with_serve(root: Path, drop: Path) -> float:
    """``audio-platform process`` while ``serve`` runs on the home: the CLI submits the shard run to
    the daemon's queue and follows it (start-up and the warehouse refresh included)."""
    settings = Settings(home=root / "cli-serve")
    instance = prepare_instance(settings)
    serve = Serve(settings.home, root / "cli-serve.log")
    try:
        deadline = time.monotonic() + 120
        while not serving_daemon(instance):
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon never reported a heartbeat")
            time.sleep(1)
        started = time.monotonic()
        subprocess.run(
            [str(BIN / "audio-platform"), "process", str(drop)],
            env=_env(settings.home),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.monotonic() - started
    finally:
        serve.stop()


def via_ui(root: Path, drop: Path) -> float:
    from dagster_graphql import DagsterGraphQLClient

    settings = Settings(home=root / "ui")
    instance = prepare_instance(settings)
    (shard,) = register_drop(instance, Lake(settings.lake_root), drop, settings.shard_size).plan.shards
    serve = Serve(settings.home, root / "ui.log")
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=serve.port)
        started = time.monotonic()
        client.submit_job_execution("process_shard", tags={"dagster/partition": shard})
        return _wait_for_success(instance, started)
    finally:
        serve.stop()


def via_sensor(root: Path, drop: Path) -> float:
    settings = Settings(home=root / "sensor")
    instance = prepare_instance(settings)
    serve = Serve(settings.home, root / "sensor.log")
    try:
        staging = root / "staging"
        shutil.copytree(drop, staging)
        (staging / "_READY").write_bytes(b"")
        settings.inbox.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        staging.rename(settings.inbox / "drop")
        return _wait_for_success(instance, started)
    finally:
        serve.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="launch-paths-") as tmp:
        root = Path(tmp)
        drop = root / "drop"
        build_drop(drop, args.files)
        cli = via_cli(root, drop)
        cli_serve = via_cli_with_serve(root, drop)
        ui = via_ui(root, drop)
        sensor = via_sensor(root, drop)
    bound = 1.5 * cli + 30
    lines = [
        f"Same shard ({args.files} files), fresh home per path, {os.cpu_count()} cores:",
        "",
        "| path | wall s | within 1.5x CLI + 30 s |",
        "|---|---:|---|",
        f"| CLI (`audio-platform process`, start-up included) | {cli:.1f} | bound {bound:.1f} s |",
        f"| CLI with `serve` running (submitted to the daemon's queue) | {cli_serve:.1f} | "
        f"{'yes' if cli_serve <= bound else 'NO'} |",
        f"| UI (GraphQL submit -> run success) | {ui:.1f} | {'yes' if ui <= bound else 'NO'} |",
        f"| sensor (drop lands -> run success) | {sensor:.1f} | {'yes' if sensor <= bound else 'NO'} |",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(f"# Launch paths\n\n{__doc__.split(chr(10) + chr(10), 1)[1]}\n{text}\n", encoding="utf-8")


if __name__ == "__main__":
    main()
