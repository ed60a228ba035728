"""A failed run carries one line saying why: the failed step and its error's own message."""

from dagster import (
    DagsterEventType,
    DagsterInstance,
    Failure,
    asset,
    build_run_status_sensor_context,
    materialize,
)

from audio_platform.defs.failure_reasons import (
    FAILURE_REASON_TAG,
    failure_reason,
    failure_reason_sensor,
    record_failure_reason,
)


@asset
def reads_the_disk() -> None:
    raise OSError("[Errno 28] No space left on device: '/data/lake/segments'")


@asset
def explains_itself() -> None:
    raise Failure(description="no segments rows yet: process at least one drop first")


@asset
def works() -> None:
    return None


def test_the_reason_is_the_innermost_error_message_or_the_failure_description():
    with DagsterInstance.ephemeral() as instance:
        crashed = materialize([reads_the_disk], instance=instance, raise_on_error=False)
        assert record_failure_reason(instance, crashed.run_id) == (
            "reads_the_disk: OSError: [Errno 28] No space left on device: '/data/lake/segments'"
        )
        assert instance.get_run_by_id(crashed.run_id).tags[FAILURE_REASON_TAG].startswith("reads_the_disk: OSError")
        explained = materialize([explains_itself], instance=instance, raise_on_error=False)
        assert failure_reason(instance, explained.run_id) == (
            "explains_itself: no segments rows yet: process at least one drop first"
        )
        succeeded = materialize([works], instance=instance)
        assert record_failure_reason(instance, succeeded.run_id) is None
        assert FAILURE_REASON_TAG not in instance.get_run_by_id(succeeded.run_id).tags


def test_the_daemon_sensor_tags_failed_runs():
    with DagsterInstance.ephemeral() as instance:
        crashed = materialize([reads_the_disk], instance=instance, raise_on_error=False)
        run = instance.get_run_by_id(crashed.run_id)
        (failure_event,) = [
            record.event_log_entry.dagster_event
            for record in instance.get_records_for_run(crashed.run_id, of_type=DagsterEventType.RUN_FAILURE).records
        ]
        context = build_run_status_sensor_context(
            sensor_name=failure_reason_sensor.name,
            dagster_event=failure_event,
            dagster_instance=instance,
            dagster_run=run,
        ).for_run_failure()
        failure_reason_sensor(context)
        assert instance.get_run_by_id(crashed.run_id).tags[FAILURE_REASON_TAG].startswith("reads_the_disk: OSError")
