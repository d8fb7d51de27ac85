"""One run of pipeline tasks inside a process that may hold others: :class:`PipelineRun`.

A run owns what used to be process-wide: its configuration (the chain plus overrides), its
report directory (the records tasks write), its progress listener and the failures its builds
capture. Two runs in one process (threads of a Prefect ``serve()`` deployment, two flow runs at
once) each see only their own.

Example:
    ```python
    with PipelineRun({"hive": {"warehouse_path": "warehouse/"}}, progress=print) as run:
        outcome = run.build(run.task(TotalEventsReportWorkflow, interval=..., counts=..., ...))
        records = run.records()
    ```

How Luigi's process-global state is kept apart, and why this way:

- Configuration. Luigi reads it from one singleton, from parameter defaults, its scheduler and
  its worker, all through the current thread. :mod:`pipeline.config` routes that singleton
  through a context variable; a run binds its own parser while it builds (and while its tasks
  are instantiated, since parameters are resolved then). A build with one worker schedules and
  runs every task in the calling thread, and a child forked for ``workers > 1`` inherits the
  binding. The alternatives cost more for the same result: a subprocess per build would pay
  Luigi's and the pipeline's start-up (about half a second) and need IPC for progress and the
  failures' exception chains (``is_transient`` reads them); passing config to every task
  explicitly would change upstream's parameter lookup; a lock would serialise whole builds.
- Task instances. Luigi caches them per class and parameter values (config values included),
  so runs with different settings never share one.
- Failures. Luigi fires its FAILURE event through handlers registered on the Task class for
  the whole process. One handler here, registered once and holding no state, hands each
  failure to the run active in the context where the task ran.
- Signals. Luigi's worker installs a SIGUSR1 handler for the whole process (and can do so only
  from the main thread); a run's worker does not, so no run takes another's signal.
  ``launch-task`` owns its process and keeps Luigi's handler.

A run builds one task at a time; use one run per thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import luigi
from luigi import execution_summary, interface
from luigi import worker as luigi_worker

from pipeline import config, errors, report
from pipeline.core.engine import ProgressCallback

_active: contextvars.ContextVar[PipelineRun | None] = contextvars.ContextVar(
    "pipeline_run", default=None
)


@luigi.Task.event_handler(luigi.Event.FAILURE)
def _capture_failure(task: luigi.Task, exception: BaseException) -> None:
    run = _active.get()
    if run is not None:
        run._failures.append((f"{task.task_family}: {errors.describe(exception)}", exception))


def progress_listener() -> ProgressCallback | None:
    """The progress listener of the run active in this context, if any."""
    run = _active.get()
    return run.progress if run is not None else None


@dataclass
class BuildOutcome:
    """What one :meth:`PipelineRun.build` did."""

    task_family: str
    status: str  # Luigi's LuigiStatusCode name
    succeeded: bool
    failures: list[tuple[str, BaseException]] = field(default_factory=list)
    summary_text: str = ""

    @property
    def transient(self) -> bool:
        """Whether every failure was an outage (:func:`pipeline.errors.is_transient`): the
        only failures a retry may cure."""
        return bool(self.failures) and all(errors.is_transient(exc) for _, exc in self.failures)

    def describe_failure(self) -> str:
        causes = "\n".join(message for message, _ in self.failures) or self.summary_text
        return f"{self.task_family} did not complete: {causes}"


class _RunWorkerFactory(interface._WorkerSchedulerFactory):
    def create_worker(self, scheduler, worker_processes, assistant=False):
        return luigi_worker.Worker(
            scheduler=scheduler,
            worker_processes=worker_processes,
            assistant=assistant,
            no_install_shutdown_handler=True,
        )


class PipelineRun:
    """A pipeline run: its config, report directory, progress listener and failures.

    Args:
        overrides: Config values (``{section: {key: value}}``) that win over every file of the
            chain.
        additional_config: Config files read after the standard chain.
        progress: Called with :class:`pipeline.core.engine.Progress` while logs are read.
        report_dir: Where tasks write their records; default: a temporary directory of the
            run's own, removed when the run is closed.
    """

    def __init__(
        self,
        overrides: dict[str, dict[str, str]] | None = None,
        *,
        additional_config=(),
        progress: ProgressCallback | None = None,
        report_dir: str | None = None,
    ):
        self.config = config.load(additional_config, overrides)
        self.progress = progress
        self._owns_report_dir = report_dir is None
        self.report_dir = report_dir or tempfile.mkdtemp(prefix="pipeline-report-")
        self._failures: list[tuple[str, BaseException]] = []

    def __enter__(self) -> PipelineRun:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_report_dir:
            shutil.rmtree(self.report_dir, ignore_errors=True)

    @contextlib.contextmanager
    def active(self) -> Iterator[PipelineRun]:
        """Inside this block, in this context, Luigi and the tasks see this run's config,
        records go to its report directory and failures to it."""
        token = _active.set(self)
        try:
            with config.using(self.config), report.records_into(self.report_dir):
                yield self
        finally:
            _active.reset(token)

    def setting(self, section: str, key: str, default: str | None = None) -> str | None:
        """A value of this run's configuration (empty counts as unset)."""
        with config.using(self.config):
            return config.get(section, key, default)

    def task(self, task_cls: type[luigi.Task], **params) -> luigi.Task:
        """``task_cls(**params)`` with its other parameters read from this run's config."""
        with self.active():
            return task_cls(**params)

    def build(self, task: luigi.Task, workers: int = 1) -> BuildOutcome:
        """Run ``task`` and everything it requires (complete work is skipped), on a local
        scheduler, in this thread with ``workers=1``."""
        self._failures = []
        with self.active():
            result = luigi.build(
                [task],
                worker_scheduler_factory=_RunWorkerFactory(),
                local_scheduler=True,
                workers=workers,
                detailed_summary=True,
                log_level="WARNING",
            )
            succeeded = result.status in (
                luigi.LuigiStatusCode.SUCCESS,
                luigi.LuigiStatusCode.SUCCESS_WITH_RETRY,
            )
            failures = [] if succeeded else self._failures + _scheduling_failures(result.worker)
        return BuildOutcome(
            task.task_family, result.status.name, succeeded, failures, result.summary_text
        )

    def records(self) -> list[dict]:
        """What the tasks of this run's builds recorded (lines, discards, failures)."""
        return report.collect(self.report_dir)


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
