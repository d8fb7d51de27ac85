"""Prefect tasks that run the Luigi analytics pipeline in this process."""

from __future__ import annotations

import luigi
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

import pipeline.tasks  # noqa: F401  (registers the pipeline's task classes with luigi)


class PipelineTaskFailed(RuntimeError):
    """A Luigi task of the pipeline failed; the message names the task and the cause."""


_failures: list[str] = []


@luigi.Task.event_handler(luigi.Event.FAILURE)
def _remember_failure(failed: luigi.Task, exception: BaseException) -> None:
    _failures.append(f"{failed.task_family}: {type(exception).__name__}: {exception}")


@task(retries=2, retry_delay_seconds=60, cache_policy=NO_CACHE, timeout_seconds=6 * 3600)
def run_pipeline_task(task: luigi.Task, workers: int = 1) -> str:
    """Run one pipeline task and everything it requires; already complete work is skipped.

    Returns Luigi's one-line summary; raises PipelineTaskFailed when anything failed.
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
        causes = "\n".join(_failures) or result.summary_text
        raise PipelineTaskFailed(f"{task.task_family} did not complete: {causes}")
    logger.info("%s complete (%s)", task.task_family, result.status.name)
    return result.status.name
