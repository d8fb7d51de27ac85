"""Parameters and targets shared by the pipeline's Luigi tasks.

Parameters are declared once here, with the config sections upstream reads them from, so a
value can come from the config-file chain or the command line (``--output-root``).
"""

from __future__ import annotations

import functools
import logging
import time
import warnings

import luigi

from pipeline import config, errors, report
from pipeline.core import engine, selection
from pipeline.core.reader import DEFAULT_MAX_LINE_BYTES
from pipeline.run import progress_listener

log = logging.getLogger(__name__)

# Luigi calls reading a parameter from another section (config_path) deprecated; upstream's
# config files do exactly that, and must keep working.
warnings.filterwarnings(
    "ignore", message="The use of the configuration", category=DeprecationWarning
)


@luigi.Task.event_handler(luigi.Event.FAILURE)
def _record_failure(task: luigi.Task, exception: BaseException) -> None:
    # Runs in the process that ran the task (a child with luigi --workers N): the report
    # directory carries the cause to launch-task's summary.
    report.record_failure(task.task_id, task.task_family, errors.describe(exception))


def configured(parameter_class, section: str, name: str, **options):
    """A Luigi parameter that falls back to ``[section] name`` of the config chain: upstream's
    place for it, which its sites' config files use."""
    return parameter_class(config_path={"section": section, "name": name}, **options)


def overwrite_n_days_parameter(description: str, significant: bool = True):
    """Upstream's ``[enrollments] overwrite_n_days`` (default 3): the last days of an interval
    read again from the raw logs, for events that arrive late."""
    return configured(luigi.IntParameter, "enrollments", "overwrite_n_days", default=3,
                      significant=significant, description=description)  # fmt: skip


class EventLogSelectionMixin:
    """Which tracking logs to read: upstream's ``[event-logs]`` section."""

    source = configured(
        luigi.ListParameter, "event-logs", "source",
        description='Where tracking logs are, searched recursively: a JSON list, e.g. ["s3://b/logs/"].',
    )  # fmt: skip
    pattern = configured(
        luigi.ListParameter, "event-logs", "pattern",
        description="Regular expressions matched against each file's full path (JSON list); "
        "a (?P<date>...) or (?P<timestamp>...) group selects by date.",
    )  # fmt: skip
    expand_interval = configured(
        luigi.Parameter, "event-logs", "expand_interval", default="2 days",
        description="How far outside the interval to look for files holding its events.",
    )  # fmt: skip
    date_pattern = luigi.Parameter(
        default="%Y%m%d", description="strptime format of the pattern's date group."
    )
    allow_empty = configured(
        luigi.BoolParameter, "event-logs", "allow_empty", default=False, significant=False,
        description="Accept an interval for which no log file is selected (else an error).",
    )  # fmt: skip

    #: the last selection made (its skipped entries go into the run's record)
    input_selection: selection.Selection | None = None

    def selected_files(self, interval) -> list[selection.SelectedFile]:
        """The files to read for ``interval``; a missing source, or no file at all (unless
        ``allow_empty``), raises :class:`selection.MissingInputError` before anything is
        written, so nothing is marked complete."""
        chosen = selection.select_files(
            self.source,
            self.pattern,
            interval.date_a,
            interval.date_b,
            self.expand_interval,
            self.date_pattern,
        ).check(self.allow_empty)
        self.input_selection = chosen
        skipped = ", ".join(f"{n} {kind}" for kind, n in sorted(chosen.skipped.items()))
        log.info("%s: %d input files for %s%s", self.task_family, len(chosen.files), interval,
                 f" (skipped, not regular files: {skipped})" if skipped else "")  # fmt: skip
        return chosen.files


class EngineMixin:
    """How the work runs: upstream's ``[map-reduce]`` settings: the local multi-core engine, or
    Spark (``engine = spark``, with the ``[spark]`` section)."""

    mapreduce_engine = configured(
        luigi.Parameter, "map-reduce", "engine", default="local", significant=False,
        description="local (also accepted: hadoop, emu; all run on this machine's cores), "
        "or spark (the [spark] section: master, driver-memory, executor-memory, ...).",
    )  # fmt: skip
    n_reduce_tasks = luigi.IntParameter(
        default=25, significant=False, description="Accepted for upstream compatibility; unused."
    )
    processes = configured(
        luigi.IntParameter, "local-engine", "processes", default=0, significant=False,
        description="Worker processes for reading logs; 0 = every available core.",
    )  # fmt: skip
    max_line_bytes = configured(
        luigi.IntParameter, "local-engine", "max_line_bytes", default=DEFAULT_MAX_LINE_BYTES,
        significant=False, description="Longer lines are discarded and counted.",
    )  # fmt: skip

    def mapper(self, function, files, **arguments):
        """``function`` bound to this task's reader settings, for :meth:`map_files`.

        With fewer files than cores, each file gets a decompression thread: the idle cores
        then inflate gzip while the workers parse.
        """
        cores = self.processes or engine.available_cores()
        # A Spark task has one core: a decompression thread would compete with the others.
        spread = len(files) < cores and self.mapreduce_engine != SPARK
        return functools.partial(
            function, max_line_bytes=self.max_line_bytes, decompress_thread=spread, **arguments,
        )  # fmt: skip

    def map_files(self, mapper, files):
        if self.mapreduce_engine not in engine.ENGINES:
            raise errors.InvalidInput(
                f"[map-reduce] engine {self.mapreduce_engine!r}: expected one of {engine.ENGINES}"
            )

        run_listener = progress_listener()  # the flow's, when a PipelineRun is active

        def progress(state: engine.Progress) -> None:
            self.set_progress_percentage(round(100 * state.fraction))
            self.set_status_message(state.describe())
            if run_listener is not None:
                run_listener(state)

        if self.mapreduce_engine == SPARK:
            from pipeline.core import spark_engine

            settings = spark_engine.SparkSettings.parse(
                {key: config.get("spark", key) for key in spark_engine.SETTING_KEYS}
            )
            return spark_engine.map_files(mapper, files, settings, progress, self.engine_warning)
        return engine.map_files(mapper, files, self.processes or None, progress)

    def engine_warning(self, message: str) -> None:
        """Something the engine wants the run's summary to say (see ReportingMixin)."""
        self.__dict__.setdefault("engine_warnings", []).append(message)


SPARK = "spark"


class WarehouseMixin:
    warehouse_path = configured(
        luigi.Parameter, "hive", "warehouse_path",
        description="Root of the intermediate tables (local path or s3://).",
    )  # fmt: skip


class ReportingMixin:
    """Records what a task read and discarded, for the end-of-run summary."""

    def _skipped_entries(self) -> dict:
        chosen = getattr(self, "input_selection", None)
        return {"skipped_entries": dict(sorted(chosen.skipped.items()))} if chosen else {}

    def _engine_warnings(self) -> dict:
        said = getattr(self, "engine_warnings", None)
        return {"warnings": list(said)} if said else {}

    def record_run(self, started: float, files: int, lines: int, discards: dict[str, int], **extra):
        seconds = time.monotonic() - started
        kept = {k: v for k, v in sorted(discards.items()) if v}
        log.info(
            "%s: %d files, %d lines in %.1fs (%.0f lines/s); discarded: %s",
            self.task_family,
            files,
            lines,
            seconds,
            lines / seconds if seconds else 0,
            ", ".join(f"{k}={v}" for k, v in kept.items()) or "none",
        )
        report.record(
            self.task_id,
            {
                "task": self.task_family,
                "files": files,
                "lines": lines,
                "seconds": round(seconds, 3),
                "discards": kept,
                **self._skipped_entries(),
                **self._engine_warnings(),
                **extra,
            },
        )
