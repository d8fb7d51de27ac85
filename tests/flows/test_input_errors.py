"""analytics-import on missing or unusable input: a clear failure, at once, never retried.

Only outages are retried; every test here gives the flow two retries with no delay, so a
wrong retry shows up as a second attempt of the pipeline step (read from the Prefect server).
"""

import asyncio
import os
import socket

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.analytics import LogSelection, Outputs, analytics_import
from pipeline.samples import SampleSpec, generate_lms_database, generate_logs

SPEC = SampleSpec(days=2, servers=1, lines_per_file=1000, users=100)
INTERVAL = "2016-03-01-2016-03-03"


@pytest.fixture
def site(tmp_path, monkeypatch):
    generate_logs(tmp_path / "tracking-logs", SPEC)
    generate_lms_database(tmp_path / "edxapp.sqlite", SPEC)
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def _attempts(flow_run_id) -> list[tuple[str, int]]:
    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return sorted((run.state.type.value, run.run_count) for run in runs)


def run_failing(**parameters):
    """Run the flow, expect it to fail; returns (error message, [(state, attempts)])."""
    state = analytics_import(retries=2, retry_delay_seconds=0, return_state=True, **parameters)
    assert state.is_failed(), state.message
    with pytest.raises(Exception) as info:
        state.result()
    return str(info.value), asyncio.run(_attempts(state.state_details.flow_run_id))


def assert_nothing_reported(site):
    assert not (site / "reports" / "total_events.csv").exists()
    assert not (site / "reports" / "total_events_counts" / "_SUCCESS").exists()


def test_missing_source_fails_at_once_naming_it(site):
    message, attempts = run_failing(
        interval=INTERVAL, logs=LogSelection(sources=["tracking-logs/", "lms-2-logs/"])
    )
    assert "lms-2-logs/ does not exist" in message
    assert "sources ['tracking-logs/', 'lms-2-logs/']" in message
    assert "files dated 2016-02-28 through 2016-03-04" in message
    assert attempts == [("FAILED", 1)]
    assert_nothing_reported(site)


def test_interval_without_logs_fails_at_once_unless_allowed(site):
    message, attempts = run_failing(interval="2017-01-01-2017-01-03")
    assert "no file selected" in message and "patterns [" in message
    assert "files dated 2016-12-30 through 2017-01-04" in message
    assert attempts == [("FAILED", 1)]
    assert_nothing_reported(site)

    state = analytics_import(
        interval="2017-01-01-2017-01-03", logs=LogSelection(allow_empty=True), return_state=True
    )
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["events"] == 0 and summary["events_per_day"] == []
    assert (site / "reports" / "total_events.csv").read_text() == "date,event_count\n"


def test_entries_that_are_not_files_are_skipped_and_counted_in_the_summary(site):
    odd = site / "tracking-logs" / "odd"
    odd.mkdir()
    os.symlink(odd / "gone", odd / "tracking.log-20160301.link")
    os.mkfifo(odd / "tracking.log-20160301.pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(odd / "tracking.sock"))
    try:
        state = analytics_import(interval=INTERVAL, return_state=True)
    finally:
        server.close()
    assert state.is_completed(), state.message
    skipped = {"FIFO": 1, "broken symbolic link": 1, "socket": 1}
    assert state.result()["skipped_entries"] == {
        "TotalEventsReportWorkflow": skipped,
        "CourseEnrollmentEventsTask": skipped,
    }


def test_fifo_selected_as_a_log_fails_at_once_naming_it(site):
    fifo = site / "tracking-logs" / "lms-9" / "tracking.log-20160302.gz"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    message, attempts = run_failing(interval=INTERVAL)
    assert f"{fifo.relative_to(site)}: not a regular file (FIFO)" in message
    assert attempts == [("FAILED", 1)]
    assert_nothing_reported(site)


def test_bad_pattern_fails_at_once(site):
    message, attempts = run_failing(interval=INTERVAL, logs=LogSelection(patterns=["(unclosed"]))
    assert "pattern '(unclosed'" in message
    assert attempts == [("FAILED", 1)]


def test_missing_lms_database_file_fails_at_once(site):
    message, attempts = run_failing(
        interval=INTERVAL, outputs=Outputs(lms_sqlite_database="no-such-edxapp.sqlite")
    )
    assert "no-such-edxapp.sqlite does not exist" in message
    # the event counts were done; the enrollment step failed once
    assert attempts == [("COMPLETED", 1), ("FAILED", 1)]


def test_an_unreachable_result_database_is_retried(site):
    from blocks.database import MySqlDatabase

    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    MySqlDatabase(host="127.0.0.1", port=port, username="pipeline", password="not-used",
                  database="reports").save("unreachable-db", overwrite=True)  # fmt: skip
    state = analytics_import(
        interval=INTERVAL,
        outputs=Outputs(result_database_block="unreachable-db"),
        retries=1,
        retry_delay_seconds=0,
        return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(Exception, match=f"127.0.0.1:{port}"):
        state.result()
    attempts = asyncio.run(_attempts(state.state_details.flow_run_id))
    assert attempts == [("COMPLETED", 1), ("FAILED", 2)]
