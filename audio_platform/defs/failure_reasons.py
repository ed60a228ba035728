"""A failed run names its reason: the first failed step's error message, as a run tag.

Dagster's run page says "Execution failed" and keeps the reason inside a step's stack trace. The
``failure_reason`` tag puts one line (the ``Failure`` description an asset raised, else the
innermost exception's message) on the Runs list and the run page. The daemon's
``failure_reason_sensor`` tags every failed run of the code location (launched, sensor and CLI
runs alike); the CLI tags its runs itself, so it needs no daemon.
"""

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DefaultSensorStatus,
    RunFailureSensorContext,
    run_failure_sensor,
)
from dagster._utils.error import SerializableErrorInfo

FAILURE_REASON_TAG = "audio_platform/failure_reason"
# Run tags are meant to be short; the full error stays in the step's event.
_MAX_REASON_CHARS = 300


def _innermost(error: SerializableErrorInfo) -> SerializableErrorInfo:
    # Dagster wraps user code errors (DagsterExecutionStepExecutionError); the cause is the user's.
    while error.cause is not None:
        error = error.cause
    return error


def failure_reason(instance: DagsterInstance, run_id: str) -> str | None:
    """One line: why the run's first failed step failed, or None when no step failed."""
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_FAILURE).records:
        event = record.event_log_entry.dagster_event
        if event is None or event.step_failure_data is None:
            continue
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            text = data.user_failure_data.description
        elif data.error is not None:
            inner = _innermost(data.error)
            text = f"{inner.cls_name}: {inner.message.strip().removeprefix(f'{inner.cls_name}: ')}"
        else:
            continue
        line = " ".join(text.split())
        return f"{event.step_key}: {line}"[:_MAX_REASON_CHARS]
    return None


def record_failure_reason(instance: DagsterInstance, run_id: str) -> str | None:
    """Tag the run with its failure reason (see :func:`failure_reason`); returns it."""
    reason = failure_reason(instance, run_id)
    if reason is not None:
        instance.add_run_tags(run_id, {FAILURE_REASON_TAG: reason})
    return reason


@run_failure_sensor(default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=10)
def failure_reason_sensor(context: RunFailureSensorContext) -> None:
    """Tags each failed run of this code location with the reason its first failed step gave."""
    record_failure_reason(context.instance, context.dagster_run.run_id)
