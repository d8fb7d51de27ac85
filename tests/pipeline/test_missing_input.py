"""Missing input is an error, through the launch-task command line.

A source that does not exist, or an interval without a single log file, fails the task with one
message naming the sources, the patterns and the widened interval, and leaves nothing that
looks complete; `[event-logs] allow_empty = true` accepts an empty interval. Entries that are
not regular files are skipped and counted, unless a pattern selects them.
"""

import os
import socket

import pytest

from tests.pipeline.conftest import GZ_PATTERN, Workspace

pytestmark = pytest.mark.usefixtures("engine")  # each test on both engines

EVENT = {"time": "2016-03-01T01:00:00+00:00", "event_type": "page_view"}


def count_task(workspace: Workspace, *extra: str, interval="2016-03-01"):
    return workspace.launch(
        "TotalEventsDailyTask", "--local-scheduler", "--interval", interval,
        *workspace.source_args(), "--output-root", "out/", *extra,
    )  # fmt: skip


def assert_failed_and_nothing_complete(workspace: Workspace, result):
    assert result.returncode == 30, result.output  # [retcode] task_failed
    assert not (workspace.root / "out" / "part-00000").exists()
    assert not (workspace.root / "out" / "_SUCCESS").exists()
    assert "FileNotFoundError" not in result.stderr


def failure_line(result) -> str:
    """The one line launch-task ends with for the failed task."""
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("FAILED TotalEventsDailyTask")]
    return line


def test_a_source_that_does_not_exist_fails_naming_it(workspace: Workspace):
    result = count_task(workspace)  # logs/ was never created
    assert_failed_and_nothing_complete(workspace, result)
    line = failure_line(result)
    assert f"{workspace.logs}/ does not exist" in line
    assert GZ_PATTERN in line.replace("\\\\", "\\")
    assert "files dated 2016-02-28 through 2016-03-03" in line
    assert "widened by expand_interval 2 days" in line


def test_an_interval_without_files_fails_and_a_later_run_with_logs_counts(workspace: Workspace):
    workspace.write_log("tracking.log-20160301.gz", [EVENT])
    result = count_task(workspace, interval="2017-01-01")
    assert_failed_and_nothing_complete(workspace, result)
    line = failure_line(result)
    assert "no file selected" in line and "allow_empty" in line
    assert f"sources ['{workspace.logs}/']" in line
    assert "files dated 2016-12-30 through 2017-01-03" in line
    # the logs arrive: the same command now counts them (nothing was marked complete)
    workspace.write_log("tracking.log-20170101.gz", [{**EVENT, "time": "2017-01-01T10:00:00Z"}])
    again = count_task(workspace, interval="2017-01-01")
    assert again.returncode == 0, again.output
    assert (workspace.root / "out" / "part-00000").read_text() == "2017-01-01\t1\n"


def test_allow_empty_in_the_config_accepts_an_empty_interval(workspace: Workspace):
    workspace.write_log("tracking.log-20160301.gz", [EVENT])
    (workspace.root / "override.cfg").write_text("[event-logs]\nallow_empty = true\n")
    result = count_task(workspace, interval="2017-01-01")
    assert result.returncode == 0, result.output
    assert (workspace.root / "out" / "part-00000").read_text() == ""
    assert (workspace.root / "out" / "_SUCCESS").exists()
    # a missing source stays an error: allow_empty is about intervals, not about typos
    (workspace.root / "override.cfg").write_text(
        '[event-logs]\nallow_empty = true\nsource = ["nowhere/"]\n'
    )
    missing = workspace.launch("TotalEventsDailyTask", "--local-scheduler", "--interval",
                               "2016-03-01", "--output-root", "out2/")  # fmt: skip
    assert missing.returncode == 30, missing.output
    assert "nowhere/ does not exist" in failure_line(missing)


def make_special_entries(directory, name_prefix: str):
    """A broken symbolic link, a FIFO and a socket under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    os.symlink(directory / "gone.gz", directory / f"{name_prefix}link")
    os.mkfifo(directory / f"{name_prefix}fifo")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(directory / f"{name_prefix}sock"))
    return server


def test_entries_that_are_not_files_are_skipped_and_counted(workspace: Workspace):
    workspace.write_log("lms-1/tracking.log-20160301.gz", [EVENT, EVENT])
    # names no pattern selects (and a link to a real log, which is read like the log)
    server = make_special_entries(workspace.logs / "lms-2", "tracking.log-20160301.")
    os.symlink(workspace.logs / "lms-1" / "tracking.log-20160301.gz",
               workspace.logs / "lms-3-tracking.log-20160302.gz")  # fmt: skip
    try:
        result = count_task(workspace)
    finally:
        server.close()
    assert result.returncode == 0, result.output
    assert (workspace.root / "out" / "part-00000").read_text() == "2016-03-01\t4\n"
    for kind in ("broken symbolic link", "FIFO", "socket"):
        assert f"skipped 1 entries under the sources: {kind}" in result.stderr, result.stderr


@pytest.mark.parametrize("kind", ["link", "fifo", "sock"])
def test_a_selected_entry_that_is_not_a_file_is_an_error_naming_it(workspace: Workspace, kind):
    workspace.write_log("lms-1/tracking.log-20160301.gz", [EVENT])
    server = make_special_entries(workspace.logs / "lms-2", "x-")
    selected = workspace.logs / "lms-2" / "tracking.log-20160301.gz"
    os.rename(workspace.logs / "lms-2" / f"x-{kind}", selected)
    try:
        result = count_task(workspace)  # a FIFO would block forever if it were opened
    finally:
        server.close()
    assert_failed_and_nothing_complete(workspace, result)
    line = failure_line(result)
    assert f"{selected}: not a regular file" in line
    assert {"link": "broken symbolic link", "fifo": "FIFO", "sock": "socket"}[kind] in line
