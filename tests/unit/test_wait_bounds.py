"""The longest wait a flow's parameters allow fits in the timeout of the task that waits.

A Prefect task's `timeout_seconds` is fixed when it is defined; a parameter that lets its wait
run longer would end in a bare "Task run exceeded timeout" instead of the wait's own message
(the console output that never showed the fingerprints, the step log that never came).
"""

from __future__ import annotations

import annotated_types

from flows.aws_analytics_host import InstanceAccess
from flows.pipeline_on_emr import EmrTimeouts
from tasks.aws import verify_instance_host_key
from tasks.emr import fetch_step_stderr


def most(model, field: str) -> float:
    """The field's upper bound (`le`); a field without one fails the test."""
    bounds = [m.le for m in model.model_fields[field].metadata if isinstance(m, annotated_types.Le)]
    assert bounds, f"{model.__name__}.{field} has no upper bound"
    return bounds[0]


def test_the_console_wait_fits_in_the_host_key_tasks_timeout():
    longest = sum(
        most(InstanceAccess, field)
        for field in ("console_wait_seconds", "host_key_timeout_seconds", "poll_interval_seconds")
    )
    assert longest + 60 <= verify_instance_host_key.timeout_seconds  # a minute for the API calls


def test_the_step_log_wait_fits_in_the_stderr_tasks_timeout():
    assert most(EmrTimeouts, "step_log_seconds") + 60 <= fetch_step_stderr.timeout_seconds
