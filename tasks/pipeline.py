"""Prefect tasks that run the Luigi analytics pipeline in this process, inside a
:class:`pipeline.run.PipelineRun` (which keeps concurrent runs apart)."""

from __future__ import annotations

import luigi
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

import pipeline.tasks  # noqa: F401  (registers the pipeline's task classes with luigi)
from pipeline.errors import OperationFailed
from pipeline.run import PipelineRun
from tasks.retries import retry_when


class PipelineTaskFailed(OperationFailed):
    """A Luigi task of the pipeline failed; the message names the task and the cause.

    ``transient`` says whether every cause was an outage (see :mod:`pipeline.errors`), the only
    failures a retry may cure.
    """

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def _every_cause_an_outage(error: BaseException) -> bool:
    return isinstance(error, PipelineTaskFailed) and error.transient


#: Prefect retry condition: retry outages, never errors that fail the same way again (missing
#: input, a missing database file, bad configuration, corrupt logs).
retry_only_transient = retry_when(_every_cause_an_outage)


@task(
    retries=2,
    retry_delay_seconds=60,
    retry_condition_fn=retry_only_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=6 * 3600,
)
def run_pipeline_task(run: PipelineRun, task: luigi.Task, workers: int = 1) -> str:
    """Run one pipeline task of ``run`` and everything it requires; already complete work is
    skipped.

    Returns Luigi's status name; raises PipelineTaskFailed when anything failed.
    """
    logger = get_run_logger()
    logger.info("running %s", task)
    outcome = run.build(task, workers)
    if not outcome.succeeded:
        raise PipelineTaskFailed(outcome.describe_failure(), outcome.transient)
    logger.info("%s complete (%s)", outcome.task_family, outcome.status)
    return outcome.status
