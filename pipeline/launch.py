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

from pipeline import config, report

USAGE_EXTRA = """
launch-task options (besides luigi's):
  --additional-config FILE   read FILE after the standard chain (repeatable)
Config chain, later wins: the pipeline's defaults, /etc/luigi/client.cfg, /etc/luigi/luigi.cfg,
./client.cfg, ./luigi.cfg, $LUIGI_CONFIG_PATH, ./override.cfg, each --additional-config.
Tasks: TotalEventsDailyTask TotalEventsReport TotalEventsReportWorkflow CourseEnrollmentEventsTask
CourseEnrollmentTask CourseEnrollmentSummaryTask ImportEnrollmentsIntoMysql
"""


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
    from pipeline import engine

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
        print(USAGE_EXTRA)
        if not luigi_args:
            return 2

    _log_to_stderr()

    import pipeline.tasks  # noqa: F401  (registers the task classes with luigi)

    own_report_dir = report.ENV_VAR not in os.environ
    if own_report_dir:
        os.environ[report.ENV_VAR] = tempfile.mkdtemp(prefix="pipeline-report-")
    status = 0
    try:
        status = run_luigi(luigi_args)
    except SystemExit as exit_:  # luigi exits itself on --help and bad arguments
        status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        print(report.format_summary(report.collect(os.environ[report.ENV_VAR])), file=sys.stderr)
        if own_report_dir:
            shutil.rmtree(os.environ.pop(report.ENV_VAR), ignore_errors=True)
    return status


def run_luigi(argv: list[str]) -> int:
    """Run luigi's command line; return the ``[retcode]`` exit status of the outcome.

    Same rules as ``luigi.retcodes.run_with_retcodes``, with the command line parsed once
    instead of three times (each parse builds an argparse parser of every registered
    parameter: a tenth of a second apiece).
    """
    import logging

    from luigi import execution_summary, interface
    from luigi.cmdline_parser import CmdlineParser
    from luigi.retcodes import retcode

    with CmdlineParser.global_instance(argv) as parser:
        codes = retcode()
        try:
            worker = interface._schedule_and_run([parser.get_task_obj()]).worker
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
