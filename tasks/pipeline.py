"""Prefect tasks that run the Luigi analytics pipeline in this process."""

from __future__ import annotations

import luigi
from luigi import execution_summary
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

import pipeline.tasks  # noqa: F401  (registers the pipeline's task classes with luigi)
from pipeline import errors
from pipeline.errors import OperationFailed


class PipelineTaskFailed(OperationFailed):
    """A Luigi task of the pipeline failed; the message names the task and the cause.

    ``transient`` says whether every cause was an outage (see :mod:`pipeline.errors`), the only
    failures a retry may cure.
    """

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


_failures: list[tuple[str, BaseException]] = []


@luigi.Task.event_handler(luigi.Event.FAILURE)
def _remember_failure(failed: luigi.Task, exception: BaseException) -> None:
    _failures.append((f"{failed.task_family}: {errors.describe(exception)}", exception))


def retry_only_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry outages, never errors that fail the same way again
    (missing input, a missing database file, bad configuration, corrupt logs)."""
    try:
        state.result()
    except PipelineTaskFailed as failure:
        return failure.transient
    except Exception:
        return False
    return False


def _scheduling_failures(worker) -> list[tuple[str, BaseException]]:
    # Luigi logs an error raised while checking completeness (say, the result database is
    # unreachable) without handing the exception to any event: ask those tasks once more.
    found = []
    for failed in execution_summary._summary_dict(worker)["scheduling_error"]:
        try:
            failed.complete()
        except Exception as exc:
            found.append((f"{failed.task_family}: {errors.describe(exc)}", exc))
    return found


@task(
    retries=2,
    retry_delay_seconds=60,
    retry_condition_fn=retry_only_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=6 * 3600,
)
def run_pipeline_task(task: luigi.Task, workers: int = 1) -> str:
    """Run one pipeline task and everything it requires; already complete work is skipped.

    Returns Luigi's status name; raises PipelineTaskFailed when anything failed.
    """
    logger = get_run_logger()
    logger.info("running %s", task)
    _failures.clear()
    result = luigi.build(
        [task], local_scheduler=True, workers=workers, detailed_summary=True, log_level="WARNING"
    )
    if result.status not in (
        luigi.LuigiStatusCode.SUCCESS,
        luigi.LuigiStatusCode.SUCCESS_WITH_RETRY,
    ):
        failures = _failures + _scheduling_failures(result.worker)
        causes = "\n".join(message for message, _ in failures) or result.summary_text
        transient = bool(failures) and all(errors.is_transient(exc) for _, exc in failures)
        raise PipelineTaskFailed(f"{task.task_family} did not complete: {causes}", transient)
    logger.info("%s complete (%s)", task.task_family, result.status.name)
    return result.status.name
