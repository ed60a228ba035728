"""The `audio-platform` command: process a drop, query the warehouse."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import polars as pl

if TYPE_CHECKING:
    from dagster import Definitions

    from audio_platform.runs import ShardJobReport

# Addresses that only this machine can reach: anything else exposes an unauthenticated server.
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _cmd_process(args: argparse.Namespace) -> int:
    from audio_platform.definitions import build_definitions
    from audio_platform.observability.progress import ProgressDisplay, listen_to_stages
    from audio_platform.runs import prepare_instance, process_drop
    from audio_platform.settings import load_settings

    settings = load_settings()
    if args.demo:
        from audio_platform.demo import build_demo_drop

        folder = settings.home / "demo_drop"
        build_demo_drop(folder)
        print(f"demo drop written to {folder}")
    elif args.folder is None:
        print("error: give a folder to process, or --demo", file=sys.stderr)
        return 2
    else:
        folder = Path(args.folder)
        # Checked before Dagster and the models load (seconds): a typo gets its answer at once.
        if not folder.exists():
            print(f"error: {folder} does not exist; give a folder of audio files", file=sys.stderr)
            return 2
        if not folder.is_dir():
            print(
                f"error: {folder} is a file; give the folder that holds it (every file in it is processed)",
                file=sys.stderr,
            )
            return 2
    if args.shard_size:
        from dataclasses import replace

        settings = replace(settings, shard_size=args.shard_size)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    instance = prepare_instance(settings)
    display = ProgressDisplay(sys.stderr, tty=sys.stderr.isatty())
    try:
        with listen_to_stages(display.stage):
            report = process_drop(
                settings,
                build_definitions(settings),
                folder,
                instance,
                on_progress=display.drop,
                on_log=lambda message: _print_progress(message, display.note),
                console_log_level=args.log_level.upper(),
            )
    finally:
        display.close()
    s = report.summary
    if not report.plan.file_count:
        print(f"no audio found in {folder}: it holds no files (hidden folders and ready markers are not inputs)")
        return 1
    counts = report.plan.counts
    changes = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n and kind != "unchanged") or "no change"
    print(
        f"drop {report.plan.drop_id}: {len(report.plan.shards)} shard(s) under {settings.home}; "
        f"files since the last run: {changes}; {len(report.processed_shards)} shard(s) processed"
    )
    removed = f", removed {int(s['removed'])}" if s["removed"] else ""
    print(
        f"files {int(s['files'])}: ok {int(s['ok'])}, quarantined {int(s['quarantined'])}, "
        f"duplicate {int(s['duplicate'])}{removed}"
    )
    print(
        f"audio {s['audio_seconds'] / 3600:.3f} h, speech {s['speech_seconds'] / 3600:.3f} h in "
        f"{int(s['segments'])} segments; curated {int(s['curated'])} segments "
        f"({s['curated_seconds'] / 3600:.3f} h)"
    )
    print(f"wall {report.wall_s:.1f} s, real-time factor {report.real_time_factor:.1f}x")
    print(f'query: audio-platform sql "SELECT * FROM curated_segments LIMIT 5"  (warehouse {settings.warehouse_path})')
    _print_checks(report)
    if report.failed_shards:
        print(f"FAILED shards: {', '.join(report.failed_shards)} (see the Dagster UI run logs)", file=sys.stderr)
        return 1
    return 0


def _print_checks(report: ShardJobReport) -> None:
    for warned in report.check_warnings:
        print(f"check warning: {warned}", file=sys.stderr)
    for failed in report.failed_checks:
        print(f"check failed: {failed}", file=sys.stderr)


def _cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from audio_platform.settings import load_settings
    from audio_platform.storage.warehouse import query

    try:
        frame = query(load_settings().warehouse_path, args.query)
    except (duckdb.Error, ValueError, FileNotFoundError) as err:
        # One line a person can act on (the read-only refusal, DuckDB's own message), no traceback.
        print(f"error: {str(err).strip()}", file=sys.stderr)
        return 1
    if args.format == "csv":
        sys.stdout.write(frame.write_csv())
    elif args.format == "json":
        sys.stdout.write(frame.write_json() + "\n")
    else:
        with pl.Config(
            tbl_rows=args.max_rows, tbl_cols=-1, fmt_str_lengths=80, tbl_width_chars=200, tbl_hide_dataframe_shape=True
        ):
            print(frame)
    return 0


def _cmd_drops(args: argparse.Namespace) -> int:
    from audio_platform.settings import load_settings
    from audio_platform.storage.warehouse import drop_status

    frame = drop_status(load_settings().warehouse_path)
    if frame.is_empty():
        print("no drop seen yet: `audio-platform process <folder>`, or a folder in the inbox with `serve` running")
        return 0
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(frame)
    return 0


EVALUATION_SQL = "SELECT * FROM asr_evaluation WHERE $1::VARCHAR IS NULL OR drop_id = $1"


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import duckdb

    from audio_platform.evaluation.asr_accuracy import NORMALIZATION, pooled, source_group
    from audio_platform.settings import load_settings
    from audio_platform.storage.drops import drop_id_for
    from audio_platform.storage.warehouse import query

    if args.depth is not None and args.depth < 1:
        raise ValueError(f"--depth must be at least 1 folder, got {args.depth}")
    drop = args.drop
    if drop is not None and Path(drop).is_dir():  # a folder names its drop; anything else is a drop id
        drop = drop_id_for(Path(drop))
    warehouse = load_settings().warehouse_path
    try:
        if (
            drop is not None
            and query(warehouse, "SELECT count(*) AS n FROM drops WHERE drop_id = $1", [drop])["n"][0] == 0
        ):
            raise LookupError(f"no processed drop {drop!r}: give its folder or an id from `audio-platform drops`")
        frame = query(warehouse, EVALUATION_SQL, [drop])
    except duckdb.Error as err:  # e.g. a warehouse built before asr_evaluation existed
        raise RuntimeError(f"{str(err).splitlines()[0]}: refresh the warehouse (`audio-platform process`)") from err
    if frame.is_empty():
        which = f"drop {drop}" if drop else "any processed drop"
        print(
            f"no reference transcripts for {which}: put a metadata.csv (file_name, transcription) beside the "
            "audio; drop metadata is read when a shard runs, so re-run processed shards with "
            "`audio-platform reprocess --all` (or their shard keys; see README, Accuracy)"
        )
        return 0
    if args.depth is not None:
        frame = frame.with_columns(
            source_group=pl.col("rel_path").map_elements(lambda p: source_group(p, args.depth), return_dtype=pl.String)
        )
    # A file is named by its drop and path: one path may exist in several drops.
    frame = frame.with_columns(file=pl.col("drop_id") + "/" + pl.col("rel_path"))
    by = {"source": "source_group", "shard": "shard", "drop": "drop_id", "file": "file"}[args.by]
    table = pl.concat([pooled(frame, by), pooled(frame, None).with_columns(pl.lit("all").alias(by))], how="diagonal")
    table = table.select(
        pl.col(by),
        "files",
        "reference_words",
        "substitutions",
        "deletions",
        "insertions",
        (100 * pl.col("wer")).round(2).alias("wer_percent"),
        (100 * pl.col("cer")).round(2).alias("cer_percent"),
    )
    models = ", ".join(sorted(frame["asr_model"].unique().to_list()))
    print(f"ASR accuracy by {args.by} ({models}); texts compared after {NORMALIZATION}")
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        fmt_str_lengths=60,
        tbl_width_chars=200,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
    ):
        print(table)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from audio_platform.settings import load_settings
    from audio_platform.storage.drops import drop_id_for
    from audio_platform.storage.export import (
        ALIGNED_FORMATS,
        check_output_dir,
        drop_roots,
        load_curated,
        load_words,
        write_export,
    )
    from audio_platform.storage.warehouse import query

    settings = load_settings()
    warehouse = settings.warehouse_path
    drop = args.drop
    if drop is not None and Path(drop).is_dir():  # a folder names its drop; anything else is a drop id
        drop = drop_id_for(Path(drop))
    if drop is not None and query(warehouse, "SELECT count(*) AS n FROM drops WHERE drop_id = $1", [drop])["n"][0] == 0:
        raise LookupError(f"no processed drop {drop!r}: give its folder or an id from `audio-platform drops`")
    # Checked before anything is read: the export never writes into the platform's state or a drop.
    lake = [settings.lake_root] if isinstance(settings.lake_root, Path) else []
    out_dir = check_output_dir(
        Path(args.out_dir), home=settings.home, protected=[*drop_roots(warehouse), *lake], overwrite=args.overwrite
    )
    curated = load_curated(warehouse, drop)
    if curated.is_empty():
        which = f"drop {drop}" if drop else "any processed drop"
        print(
            f"nothing to export: no curated segments in {which} (curation_decisions says why segments were "
            f"left out); nothing written to {out_dir}"
        )
        return 0
    words = load_words(warehouse, drop) if args.format in ALIGNED_FORMATS else None
    summary = write_export(
        curated,
        out_dir,
        args.format,
        words=words,
        split_by_drop=args.split_by_drop,
        segments_per_tar=args.segments_per_tar,
    )
    print(
        f"exported {summary.segments} segments ({summary.seconds / 3600:.3f} h, {summary.audio_files} audio files, "
        f"{summary.drops} drop(s)) as {args.format}: {len(summary.written)} file(s) written to {out_dir} "
        f"({', '.join(path.name for path in summary.written)})"
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from audio_platform.definitions import build_definitions
    from audio_platform.defs.failure_reasons import record_failure_reason
    from audio_platform.runs import (
        prepare_instance,
        release_runs_of_dead_processes,
        run_job,
    )
    from audio_platform.settings import load_settings

    settings = load_settings()
    keywords = args.keyword or list(settings.keyword_list)
    unknown = sorted(set(keywords) - set(settings.keyword_list))
    if unknown:
        print(
            f"error: {unknown} not configured; set AUDIO_PLATFORM_KEYWORDS (now {settings.keywords!r})", file=sys.stderr
        )
        return 2
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    instance = prepare_instance(settings)
    # Training holds the `audio_models` pool too: a killed earlier run must not block it forever.
    release_runs_of_dead_processes(instance)
    defs = build_definitions(settings)
    job = defs.resolve_job_def("train_keyword")
    run_config = load_run_config(defs, args.config)
    status = 0
    for keyword in keywords:
        result = run_job(
            job,
            instance,
            partition_key=keyword,
            run_config=run_config,
            on_log=_print_progress,
            code_location=settings.code_location,
        )
        # The decision: keyword_champion's, or the floors check's when it blocked the promotion.
        champion = result.materializations.get("keyword_champion", ())
        floors = [e for e in result.check_evaluations if e.check_name == "candidate_meets_floors"]
        dataset = result.materializations.get("keyword_dataset", ())
        if champion:
            meta = {k: v.value for k, v in champion[0].metadata.items()}
            outcome = "promoted to @champion" if meta["promoted"] else "challenger"
        elif floors:
            meta = {k: v.value for k, v in floors[0].metadata.items()}
            outcome = "challenger, below the promotion floors"
        elif dataset and dataset[0].metadata["trainable"].value is False:
            print(f"{keyword}: no model trained: {dataset[0].metadata['shortfall'].value}", file=sys.stderr)
            status = 1
            continue
        else:
            reason = record_failure_reason(instance, result.run_id) or "see the run logs"
            print(f"{keyword}: training failed: {reason} (run {result.run_id} in the Dagster UI)", file=sys.stderr)
            status = 1
            continue
        print(
            f"kws-{keyword} v{meta['version']}: F1 {meta['candidate_f1']:.3f}, "
            f"false accepts/h {meta['candidate_false_accepts_per_hour']:.1f}; {outcome} ({meta['reason']})"
        )
    refresh = defs.resolve_job_def("refresh_warehouse")
    run_job(refresh, instance, run_config=load_run_config(defs, None), code_location=settings.code_location)
    uri = redact_credentials(settings.mlflow_tracking_uri)
    print(f"MLflow: {uri}  (mlflow ui --backend-store-uri {uri})")
    return status


def read_run_config(path: str | None) -> dict[str, Any] | None:
    """The run config in a YAML file (what the launchpad's editor holds), or None without a path."""
    if path is None:
        return None
    import yaml

    config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise SystemExit(f"error: {path} must hold a YAML mapping (e.g. resources: ...)")
    return config


def load_run_config(defs: Definitions, path: str | None) -> dict[str, Any]:
    """:func:`read_run_config` with the values the definitions bound from this process's settings
    for every field the file does not name (:func:`audio_platform.runs.launch_run_config`)."""
    from audio_platform.runs import launch_run_config

    return launch_run_config(defs, read_run_config(path))


def _print_progress(message: str, show: Callable[[str], None] | None = None) -> None:
    """A progress line of a run a daemon executes (the runs of this process feed the bar instead),
    through ``show`` (the drop's progress display) or on stderr; other log lines are left to the UI."""
    from audio_platform.observability.progress import PROGRESS_MESSAGE
    from audio_platform.runs import RUN_NOTE

    if not (PROGRESS_MESSAGE.match(message) or message.startswith(RUN_NOTE)):
        return
    if show is not None:
        show(message)
    else:
        print(f"progress: {message}", file=sys.stderr, flush=True)


def _run_shards(args: argparse.Namespace, job_name: str) -> int:
    """``job_name`` for the given shards (or all with --all), then the warehouse refresh."""
    from audio_platform.definitions import build_definitions
    from audio_platform.defs.partitions import SHARDS
    from audio_platform.runs import prepare_instance, run_shard_job
    from audio_platform.settings import load_settings

    settings = load_settings()
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    instance = prepare_instance(settings)
    shards = list(instance.get_dynamic_partitions(SHARDS)) if args.all else args.shard
    if not shards:
        print('error: name shards (sql "SELECT DISTINCT shard FROM audio_files") or give --all', file=sys.stderr)
        return 2
    try:
        defs = build_definitions(settings)
        report = run_shard_job(
            defs, instance, job_name, shards, read_run_config(args.config), code_location=settings.code_location
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _print_checks(report)
    succeeded = len(shards) - len(report.failed_shards)
    print(f"{job_name}: {succeeded} of {len(shards)} shard(s) succeeded; warehouse refreshed")
    if report.failed_shards:
        print(f"FAILED shards: {', '.join(report.failed_shards)} (see the Dagster UI run logs)", file=sys.stderr)
        return 1
    return 0


def _cmd_reprocess(args: argparse.Namespace) -> int:
    return _run_shards(args, "process_shard")


def _cmd_rescore(args: argparse.Namespace) -> int:
    return _run_shards(args, "rescore_shard")


def _print_models(frame: pl.DataFrame) -> None:
    columns = ["name", "version", "aliases", "promotion_decision", "f1", "false_accepts_per_hour", "created_at"]
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=40, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(frame.select(columns))


def _cmd_models_list(args: argparse.Namespace) -> int:
    from audio_platform.settings import load_settings
    from audio_platform.training.registry import registry_table

    _print_models(registry_table(load_settings().mlflow_tracking_uri, args.name))
    return 0


def _cmd_models_set_alias(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from audio_platform.settings import load_settings
    from audio_platform.storage.lake import Lake
    from audio_platform.training.registry import mirror_to_lake, registry_table, set_alias

    settings = load_settings()
    uri = settings.mlflow_tracking_uri
    try:
        move = set_alias(uri, args.name, args.alias, args.version)
    except (MlflowException, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # The warehouse's models view reads the lake, so the move shows in SQL at once.
    mirror_to_lake(Lake(settings.lake_root), uri, move.model_name, move.keyword)
    print(f"{move.model_name}@{move.alias}: version {move.previous or '(unset)'} -> {move.version}")
    _print_models(registry_table(uri, move.model_name))
    return 0


def redact_credentials(uri: str) -> str:
    """``uri`` with any password in it replaced by ``***``: a tracking-server or database URI may
    carry credentials, and what the CLI prints tends to end up in CI logs."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _cmd_detect(args: argparse.Namespace) -> int:
    from audio_platform.audio.decode import decode_mono_16k
    from audio_platform.audio.inventory import quarantine_category
    from audio_platform.audio.probe import UnsupportedAudioError
    from audio_platform.settings import load_settings
    from audio_platform.storage.drops import iter_drop_files, storable_path
    from audio_platform.training.detect import detect_stream
    from audio_platform.training.registry import load_model_bundle

    settings = load_settings()
    bundle = load_model_bundle(args.model, settings.mlflow_tracking_uri)
    # Each file to scan, and whether the user named it (a folder's files that are not audio are
    # skipped; a named file that cannot be decoded is an error).
    files: list[tuple[Path, bool]] = []
    status, folders = 0, 0
    for given in map(Path, args.audio):
        if not given.is_dir():
            files.append((given, True))
            continue
        folders += 1
        try:
            listed = sorted(rel for rel in iter_drop_files(given) if not Path(rel).name.startswith("."))
        except OSError as err:
            print(f"{storable_path(str(given))}: cannot list the folder: {err}", file=sys.stderr)
            status = 1
            continue
        files.extend((given / rel, False) for rel in listed)
    scanned, seconds, events = 0, 0.0, 0
    for path, named in files:
        shown = storable_path(str(path))  # a name that is not UTF-8 printed as \xNN, as ls -b does
        try:
            audio = decode_mono_16k(path, max_duration_s=settings.max_file_duration_s)
        except UnsupportedAudioError as err:
            # A folder's notes, manifests and files that vanish are skipped; a file that is audio
            # but cannot be read (permissions, truncated, too long) would silently leave its hours
            # out of the total, so it is an error, as for a named file.
            vanished = isinstance(err.__cause__, FileNotFoundError)
            skipped = not named and (vanished or quarantine_category(err.reason) in ("not_audio", "empty"))
            print(f"{shown}: {'skipped: ' if skipped else ''}{err.reason}", file=sys.stderr)
            status = status if skipped else 1
            continue
        detections = detect_stream(bundle, audio, threshold=args.threshold)
        print(f"{shown}: {len(detections)} detection(s) of '{bundle.keyword}' in {audio.size / 16000:.1f} s")
        for detection in detections:
            print(f"  {detection.start_s:8.2f} – {detection.end_s:8.2f} s  score {detection.score:.3f}")
        scanned, seconds, events = scanned + 1, seconds + audio.size / 16000, events + len(detections)
    if folders and not scanned:
        print("no audio file to scan", file=sys.stderr)
        return 1
    if folders or scanned > 1:
        # On audio without the keyword this is the model's false accepts per hour.
        rate = f"{events / (seconds / 3600):.2f} per hour" if seconds > 0 else "no audio"
        print(
            f"total: {events} detection(s) of '{bundle.keyword}' in {scanned} file(s), {seconds / 3600:.3f} h: {rate}"
        )
    return status


def _platform_env() -> dict[str, str]:
    """Environment for Dagster processes: the instance under AUDIO_PLATFORM_HOME/dagster."""
    from audio_platform.runs import prepare_instance
    from audio_platform.settings import load_settings

    settings = load_settings()
    prepare_instance(settings)
    env = {**os.environ, "DAGSTER_HOME": str(settings.dagster_home), "AUDIO_PLATFORM_HOME": str(settings.home)}
    # The servers run in the project folder (`dg dev`): they get the folders load_settings made
    # absolute where the user typed the command, so served runs use the same ones as the CLI's.
    folders = {
        "AUDIO_PLATFORM_LAKE_URI": settings.lake_uri,
        "AUDIO_PLATFORM_MLFLOW_ARTIFACT_URI": settings.mlflow_artifact_uri,
        "AUDIO_PLATFORM_ASR_MODEL": settings.resource_config.get("asr", {}).get("model"),
    }
    return env | {variable: folder for variable, folder in folders.items() if folder}


def _cmd_serve(args: argparse.Namespace) -> int:
    """Webserver + daemon (sensors, run queue, automation) in one process tree: `dg dev` on the
    project, so the code location is the project's (`audio_platform`), as in workspace.yaml."""
    import subprocess

    from audio_platform.runs import PROJECT_ROOT

    # The `dg` script of this installation (beside the interpreter in a venv; else on PATH).
    beside = Path(sys.executable).with_name("dg")
    command = [
        str(beside) if beside.is_file() else (shutil.which("dg") or "dg"),
        "dev",
        *("--target-path", str(PROJECT_ROOT)),
        # The code server runs on this interpreter (dg would otherwise look for <project>/.venv).
        "--use-active-venv",
        *("--host", args.host, "--port", str(args.port)),
    ]
    if args.host not in LOOPBACK:
        print(f"warning: serving on {args.host}: the Dagster UI has no authentication", file=sys.stderr)
    return subprocess.call(command, env={**_platform_env(), "VIRTUAL_ENV": sys.prefix})


def _cmd_metrics(args: argparse.Namespace) -> int:
    """A long-lived Prometheus exporter; every scrape reads the warehouse and the Dagster instance."""
    from audio_platform.observability.metrics import PlatformCollector, serve_metrics
    from audio_platform.runs import prepare_instance, run_status_counts
    from audio_platform.settings import load_settings

    settings = load_settings()
    if args.dagster_home:
        from dagster import DagsterInstance

        instance = DagsterInstance.from_config(args.dagster_home)
    else:
        instance = prepare_instance(settings)
    server, thread = serve_metrics(
        PlatformCollector(settings.warehouse_path, lambda: run_status_counts(instance)), args.host, args.port
    )
    if args.host not in LOOPBACK:
        print(f"warning: metrics on {args.host}: anyone who can reach it can read them", file=sys.stderr)
    print(f"Prometheus metrics on http://{args.host}:{server.server_port}/metrics", flush=True)
    stop = threading.Event()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: stop.set())
    # Kubernetes stops the pod with SIGTERM; a parent process may have left it blocked for us.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    while thread.is_alive() and not stop.wait(timeout=1.0):
        continue
    server.shutdown()
    server.server_close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's default must not reset a --debug given before it.
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error"
    )
    parser = argparse.ArgumentParser(prog="audio-platform", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    process = sub.add_parser(
        "process", parents=[common], help="register a folder as a drop and materialize the whole graph for it"
    )
    process.add_argument("folder", nargs="?", help="folder of audio files (searched recursively)")
    process.add_argument("--demo", action="store_true", help="build and process the built-in synthetic demo drop")
    process.add_argument("--shard-size", type=int, default=0, help="files per shard (default: settings)")
    process.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="warning",
        help="Dagster run events printed on stderr besides the progress (default warning; the UI keeps all)",
    )
    process.set_defaults(func=_cmd_process)
    sql = sub.add_parser(
        "sql", parents=[common], help="query the DuckDB warehouse (read-only: one SELECT, EXPLAIN, DESCRIBE or SHOW)"
    )
    sql.add_argument("query", help='one SQL statement over the tables in docs/tables.md, e.g. "SELECT * FROM drops"')
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output (default table)")
    sql.add_argument("--max-rows", type=int, default=50, help="rows shown in table format (default 50)")
    sql.set_defaults(func=_cmd_sql)
    drops = sub.add_parser(
        "drops", parents=[common], help="every drop seen (CLI or inbox): waiting and why, processing, done"
    )
    drops.set_defaults(func=_cmd_drops)
    evaluate = sub.add_parser(
        "evaluate",
        parents=[common],
        help="word and character error rates against the drops' reference transcripts (metadata.csv)",
    )
    evaluate.add_argument("drop", nargs="?", help="a processed drop: its folder or drop id (default: every drop)")
    evaluate.add_argument(
        "--by",
        choices=["source", "shard", "drop", "file"],
        default="source",
        help="rows of the table (default source: the source group of each file)",
    )
    evaluate.add_argument(
        "--depth", type=int, help="regroup sources by this many folders under the drop (default: as evaluated, 1)"
    )
    evaluate.set_defaults(func=_cmd_evaluate)
    export = sub.add_parser(
        "export",
        parents=[common],
        help="write the curated segments for training: NeMo (JSONL, tarred), Lhotse (manifests, Shar), "
        "Hugging Face audiofolder",
    )
    export.add_argument("out_dir", help="folder to write into: new or empty, outside the platform home and every drop")
    export.add_argument(
        "--format",
        # Literal (as export.FORMATS): importing the export module would slow every command's start.
        choices=["nemo", "nemo-tarred", "lhotse", "audiofolder", "lhotse-shar"],
        required=True,
        help="nemo: manifest.jsonl (audio_filepath, offset, duration, text); nemo-tarred: the segments cut as "
        "16 kHz WAV into audio_0.tar, audio_1.tar, ... with tarred_audio_manifest.json; "
        "lhotse: recordings.jsonl.gz and supervisions.jsonl.gz; audiofolder: the segments cut as 16 kHz FLAC "
        "into data/ with metadata.csv (Hugging Face datasets); lhotse-shar: cuts.000000.jsonl.gz with the "
        "segments cut as 16 kHz FLAC into recording.000000.tar, ... (Lhotse CutSet.from_shar)",
    )
    export.add_argument(
        "--segments-per-tar",
        type=int,
        default=1000,
        help="nemo-tarred and lhotse-shar: segments per tar (default: 1000)",
    )
    export.add_argument("--drop", help="one processed drop: its folder or drop id (default: every drop)")
    export.add_argument(
        "--split-by-drop",
        action="store_true",
        help="also one manifest per drop, named by its drop id (<drop_id>.jsonl, <drop_id>_recordings.jsonl.gz, ...)",
    )
    export.add_argument(
        "--overwrite", action="store_true", help="write into a non-empty folder, replacing the export's files there"
    )
    export.set_defaults(func=_cmd_export)
    train = sub.add_parser(
        "train", parents=[common], help="train, register and gate keyword-spotting models from all curated data"
    )
    train.add_argument("--keyword", action="append", help="keyword to train (default: all configured)")
    train.add_argument("--config", help="run config YAML, e.g. resources.training.config.epochs (as in the launchpad)")
    train.set_defaults(func=_cmd_train)
    for name, func, job_help in (
        ("reprocess", _cmd_reprocess, "run the whole graph again for registered shards (job process_shard)"),
        ("rescore", _cmd_rescore, "re-score and re-select shards without re-transcribing (job rescore_shard)"),
    ):
        shard_job = sub.add_parser(name, parents=[common], help=job_help)
        shard_job.add_argument("shard", nargs="*", help="shard partition keys, e.g. corpus-1a2b3c-0000")
        shard_job.add_argument("--all", action="store_true", help="every registered shard")
        shard_job.add_argument("--config", help="run config YAML (as in the launchpad), e.g. resources.curation.config")
        shard_job.set_defaults(func=func)
    models = sub.add_parser(
        "models", parents=[common], help="list registered keyword models; move an alias (e.g. roll back @champion)"
    )
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_list = models_sub.add_parser(
        "list", parents=[common], help="every registered version with aliases, decision and metrics"
    )
    models_list.add_argument("--name", help="one registered model, e.g. kws-six (default: all)")
    models_list.set_defaults(func=_cmd_models_list)
    set_alias = models_sub.add_parser(
        "set-alias", parents=[common], help="point an alias at a version; updates the models table"
    )
    set_alias.add_argument("--name", required=True, help="registered model, e.g. kws-six")
    set_alias.add_argument("--alias", required=True, help="e.g. champion")
    set_alias.add_argument("--version", required=True, help="registered version number")
    set_alias.set_defaults(func=_cmd_models_set_alias)
    detect = sub.add_parser(
        "detect", parents=[common], help="stream a keyword model over audio files and print detections"
    )
    detect.add_argument("--model", required=True, help="models:/kws-<keyword>@champion, models:/<name>/<version>")
    detect.add_argument("--threshold", type=float, default=None, help="default: the threshold chosen on validation")
    detect.add_argument(
        "audio", nargs="+", help="audio files or folders to scan (any supported format; folders recursively)"
    )
    detect.set_defaults(func=_cmd_detect)
    serve = sub.add_parser(
        "serve", parents=[common], help="start the Dagster UI and daemon (sensors pick up drops in the inbox)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    serve.add_argument("--port", type=int, default=3000, help="port (default 3000)")
    serve.set_defaults(func=_cmd_serve)
    metrics = sub.add_parser(
        "metrics", parents=[common], help="serve Prometheus metrics computed from the warehouse on each scrape"
    )
    metrics.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    metrics.add_argument("--port", type=int, default=9464)
    metrics.add_argument(
        "--dagster-home",
        help="folder of the Dagster instance's dagster.yaml for run counts (default AUDIO_PLATFORM_HOME/dagster)",
    )
    metrics.set_defaults(func=_cmd_metrics)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    if not debug:
        # Dagster's beta/preview notices concern the platform's own code, not the user's.
        import warnings

        warnings.filterwarnings("ignore", message=".*is currently in (beta|preview)")
    try:
        return int(args.func(args))
    except (OSError, ValueError, LookupError, RuntimeError) as err:
        if debug:
            raise
        # One line a person can act on; --debug shows where it came from.
        print(f"error: {str(err).strip() or type(err).__name__} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
