"""``launch-task``: run a pipeline task with upstream's command line and config-file chain.

    launch-task TotalEventsDailyTask --local-scheduler --interval 2016 \\
        --source '["logs/"]' --pattern '[".*tracking.log-(?P<date>\\\\d{8}).*\\\\.gz"]' \\
        --output-root out/ [--workers N] [--additional-config FILE ...]

Everything but ``--additional-config`` is luigi's command line. The exit status is non-zero when
a task failed or could not run (see ``[retcode]``); a summary of lines read and discarded per
reason is printed at the end.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING

from pipeline import config, report
from pipeline.errors import InvalidInput

if TYPE_CHECKING:
    import luigi

USAGE_EXTRA = """
launch-task options (besides luigi's):
  --additional-config FILE   read FILE after the standard chain (repeatable)
Config chain, later wins: the pipeline's defaults, /etc/luigi/client.cfg, /etc/luigi/luigi.cfg,
./client.cfg, ./luigi.cfg, $LUIGI_CONFIG_PATH, ./override.cfg, each --additional-config.
Tasks: {tasks}
"""
TASKS = (
    "TotalEventsDailyTask", "TotalEventsReport", "TotalEventsReportWorkflow",
    "CourseEnrollmentEventsTask", "CourseEnrollmentTask", "CourseEnrollmentSummaryTask",
    "ImportEnrollmentsIntoMysql", "PullDiscoveryCourseRunsAPIData",
)  # fmt: skip


def split_additional_config(argv: list[str]) -> tuple[list[str], list[str]]:
    """Take every ``--additional-config FILE`` (or ``=FILE``) out of ``argv``."""
    files, rest = [], []
    items = iter(argv)
    for arg in items:
        if arg == "--additional-config":
            value = next(items, None)
            if value is None:
                raise SystemExit("launch-task: --additional-config needs a file name")
            files.append(value)
        elif arg.startswith("--additional-config="):
            files.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return files, rest


def main(argv: list[str] | None = None) -> int:
    from pipeline.core import engine

    engine.warm_up()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        additional, luigi_args = split_additional_config(argv)
        config.configure(additional)
    except config.ConfigError as exc:
        print(f"launch-task: {exc}", file=sys.stderr)
        return 2
    if not luigi_args or luigi_args[0] in ("-h", "--help"):
        print(__doc__.strip())
        print(USAGE_EXTRA.format(tasks=" ".join(TASKS)))
        if not luigi_args:
            return 2

    _log_to_stderr()

    from luigi.cmdline_parser import CmdlineParser
    from luigi.task_register import TaskClassNotFoundException

    import pipeline.tasks  # noqa: F401  (registers the task classes with luigi)

    # The command line is read and the root task built before anything runs, so that a bad
    # argument is one line naming it (exit 2), not a traceback after a "run" that never was.
    try:
        with CmdlineParser.global_instance(luigi_args) as parser:
            root = root_task(parser)
            return _run(root)
    except SystemExit as exit_:  # luigi exits itself on --help and argparse's usage errors
        if isinstance(exit_.code, str):  # e.g. "No task specified"
            print(f"launch-task: {exit_.code}", file=sys.stderr)
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    except TaskClassNotFoundException:  # raised while luigi reads the command line
        error = UsageError(_unknown_task(CmdlineParser._build_parser().parse_known_args(
            luigi_args)[0].root_task))  # fmt: skip
    except UsageError as exc:
        error = exc
    print(f"launch-task: {error}", file=sys.stderr)
    return 2


class UsageError(InvalidInput):
    """A command-line argument that cannot be used; the message names it and its value."""


#: The interval forms luigi's DateIntervalParameter reads, for error messages.
INTERVAL_FORMS = "2016, 2016-03, 2016-W09, 2016-03-01 or 2016-03-01-2016-03-08"


def root_task(parser) -> luigi.Task:
    """The task the command line names, its parameters parsed and checked.

    Raises:
        UsageError: an unknown task (with the nearest names), a value that does not parse
            (bad date interval, bad JSON list), a missing parameter, or an interval that ends
            before it starts or is empty.
    """
    from luigi import parameter as luigi_parameter
    from luigi.date_interval import DateInterval

    name = parser.known_args.root_task
    task_cls = parser._get_task_cls()  # known: CmdlineParser checked it
    kwargs = {}
    for param_name, param in task_cls.get_params():
        raw = getattr(parser.known_args, param_name, None)
        if raw:
            try:
                kwargs[param_name] = param.parse(raw)
            except Exception as error:  # luigi's parsers raise ValueError, JSONDecodeError...
                raise UsageError(f"{_flag(param_name)} {raw!r}: {_reason(param, error)}") from None
    try:
        task = task_cls(**kwargs)
    except luigi_parameter.MissingParameterException:
        missing = [n for n, p in task_cls.get_params()
                   if n not in kwargs and not p.has_task_value(name, n)]  # fmt: skip
        flags = ", ".join(_flag(n) for n in missing) or "a parameter"
        raise UsageError(f"{name} needs {flags} (on the command line or in its config "
                         "section)") from None  # fmt: skip
    except ValueError as error:  # a configured value that does not parse
        raise UsageError(_bad_configured_value(task_cls, error)) from None
    for param_name, value in task.param_kwargs.items():
        if isinstance(value, DateInterval) and value.date_a >= value.date_b:
            what = "is empty" if value.date_a == value.date_b else "ends before it starts"
            raise UsageError(
                f"{_flag(param_name)} {str(value)!r} {what} (from {value.date_a} to "
                f"{value.date_b}, the end excluded): the end must come after the start"
            )
    return task


def _bad_configured_value(task_cls, error: ValueError) -> str:
    """luigi's "Error when parsing the default value of 'x'" as the config option and why."""
    import re

    cause = error.__cause__ or error
    match = re.search(r"default value of '(\w+)'", str(error))
    param = dict(task_cls.get_params()).get(match.group(1)) if match else None
    if param is None:
        return f"{task_cls.get_task_family()}: {error}: {type(cause).__name__}: {cause}"
    where = getattr(param, "_config_path", None) or {}
    option = (
        f"[{where['section']}] {where['name']}"
        if where.get("section")
        else f"[{task_cls.get_task_family()}] {match.group(1)}"
    )
    return f"{option} (from the config files): {_reason(param, cause)}"


def _flag(param_name: str) -> str:
    return "--" + param_name.replace("_", "-")


def _reason(param, error: Exception) -> str:
    import luigi

    if isinstance(param, luigi.DateIntervalParameter):
        return f"not a date interval ({error}); expected {INTERVAL_FORMS}"
    if isinstance(param, luigi.ListParameter | luigi.DictParameter):
        return f'not valid JSON ({error}); expected e.g. \'["a", "b"]\''
    return f"{type(error).__name__}: {error}"


def _unknown_task(name: str) -> str:
    import difflib

    from luigi.task_register import Register

    close = difflib.get_close_matches(name, sorted(Register.task_names()), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"unknown task {name!r}{hint} (tasks: {' '.join(TASKS)})"


def _run(root: luigi.Task) -> int:
    """Schedule and run `root`; print the summary of lines read and discarded at the end."""
    own_report_dir = report.ENV_VAR not in os.environ
    if own_report_dir:
        os.environ[report.ENV_VAR] = tempfile.mkdtemp(prefix="pipeline-report-")
    try:
        return run_luigi(root)
    finally:
        print(report.format_summary(report.collect(os.environ[report.ENV_VAR])), file=sys.stderr)
        if own_report_dir:
            shutil.rmtree(os.environ.pop(report.ENV_VAR), ignore_errors=True)


def run_luigi(root: luigi.Task) -> int:
    """Run `root` as luigi's command line would; return the ``[retcode]`` exit status.

    Same rules as ``luigi.retcodes.run_with_retcodes``, with the command line parsed once
    instead of three times (each parse builds an argparse parser of every registered
    parameter: a tenth of a second apiece). Call it inside the command line's
    ``CmdlineParser.global_instance`` (the tasks read `--Task-param` flags from it).
    """
    from luigi import execution_summary, interface
    from luigi.retcodes import retcode

    codes = retcode()
    try:
        worker = interface._schedule_and_run([root]).worker
    except interface.PidLockAlreadyTakenExit:
        return codes.already_running
    except Exception:
        logging.getLogger("luigi-interface").exception("Uncaught exception in luigi")
        return codes.unhandled_exception
    sets = execution_summary._summary_dict(worker)
    root = execution_summary._root_task(worker)
    outcome = max(
        code
        for code, happened in (
            (codes.missing_data, sets["still_pending_ext"]),
            (codes.task_failed, sets["failed"]),
            (codes.already_running, sets["run_by_other_worker"]),
            (codes.scheduling_error, sets["scheduling_error"]),
            (codes.not_run, sets["not_run"]),
            (0, True),
        )
        if happened
    )
    if outcome == 0 and root not in sets["completed"] and root not in sets["already_done"]:
        return codes.not_run
    return outcome


def _log_to_stderr() -> None:
    """Show the pipeline's own progress and discard lines next to luigi's log."""
    logger = logging.getLogger("pipeline")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


if __name__ == "__main__":
    sys.exit(main())
