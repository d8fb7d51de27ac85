"""TotalEventsDailyTask, TotalEventsReport and the workflow through the launch-task CLI."""

import csv

import pytest

from tests.pipeline.conftest import Workspace

pytestmark = pytest.mark.usefixtures("engine")  # each test on both engines


def event(time, **extra):
    return {"time": time, "event_type": "page_view", **extra}


def read_counts(path):
    return [tuple(line.split("\t")) for line in path.read_text().splitlines()]


def test_counts_every_event_per_day_within_the_interval(workspace: Workspace):
    workspace.write_log(
        "g1/tracking.log-20160301.gz",
        [
            event("2016-03-01T00:00:00.000000+00:00"),
            event(
                "2016-03-01T23:59:59.999999+00:00",
                event_source="browser",
                event_type="problem_check",
            ),
            event("2016-02-29T23:59:59+00:00"),  # before the interval: not counted
        ],
    )
    workspace.write_log(
        "g2/tracking.log-20160302.gz",
        [
            event("2016-03-02T10:00:00-05:00"),
            event("2016-03-03T00:00:00+00:00"),  # date_b itself is outside [date_a, date_b)
            'Mar  2 10:00:00 lms1 {"time": "2016-03-02T10:00:01+00:00"}',
        ],
    )
    result = workspace.launch(
        "TotalEventsDailyTask",
        "--local-scheduler",
        "--interval",
        "2016-03-01-2016-03-03",
        *workspace.source_args(),
        "--output-root",
        "out/",
    )
    assert result.returncode == 0, result.output
    assert read_counts(workspace.root / "out" / "part-00000") == [
        ("2016-03-01", "2"),
        ("2016-03-02", "2"),
    ]
    assert (workspace.root / "out" / "_SUCCESS").exists()
    assert "discarded 2 (outside interval)" in result.stderr


def test_bad_lines_are_counted_per_reason_and_reported(workspace: Workspace):
    workspace.write_log(
        "tracking.log-20160301.gz",
        [
            event("2016-03-01T01:00:00+00:00"),
            b"[1, 2]",
            b'{"time": 12}',
            b'{"event_type": "no time"}',
            b"\x00\xff\xfe garbage",
            b"x" * (17 << 20),  # longer than the default max_line_bytes
            event("2016-03-01T02:00:00+00:00"),
        ],
    )
    result = workspace.launch(
        "TotalEventsDailyTask",
        "--local-scheduler",
        "--interval",
        "2016-03-01",
        *workspace.source_args(),
        "--output-root",
        "out/",
    )
    assert result.returncode == 0, result.output
    assert read_counts(workspace.root / "out" / "part-00000") == [("2016-03-01", "2")]
    for reason in (
        "not a JSON object",
        "time not a string",
        "missing time",
        "unparseable",
        "line too long",
    ):
        assert f"discarded 1 ({reason})" in result.stderr, result.stderr


def test_plain_logs_are_read_with_a_matching_pattern(workspace: Workspace):
    workspace.write_log(
        "tracking.log-20160301", [event("2016-03-01T01:00:00+00:00")], compress=False
    )
    result = workspace.launch(
        "TotalEventsDailyTask",
        "--local-scheduler",
        "--interval",
        "2016-03-01",
        *workspace.source_args(r".*tracking.log-(?P<date>\d{8})$"),
        "--output-root",
        "out/",
    )
    assert result.returncode == 0, result.output
    assert read_counts(workspace.root / "out" / "part-00000") == [("2016-03-01", "1")]


def test_rerun_of_a_completed_task_does_nothing(workspace: Workspace):
    log = workspace.write_log("tracking.log-20160301.gz", [event("2016-03-01T01:00:00+00:00")])
    args = [
        "TotalEventsDailyTask",
        "--local-scheduler",
        "--interval",
        "2016-03-01",
        *workspace.source_args(),
        "--output-root",
        "out/",
    ]
    assert workspace.launch(*args).returncode == 0
    part = workspace.root / "out" / "part-00000"
    before = part.stat().st_mtime_ns
    log.write_bytes(b"not even gzip")  # would fail if it were read again
    again = workspace.launch(*args)
    assert again.returncode == 0, again.output
    assert part.stat().st_mtime_ns == before
    assert "No pipeline task finished" in again.stderr


def test_corrupt_gzip_fails_naming_the_file_and_marks_nothing_complete(workspace: Workspace):
    workspace.write_log("a/tracking.log-20160301.gz", [event("2016-03-01T01:00:00+00:00")] * 1000)
    bad = workspace.write_log(
        "b/tracking.log-20160302.gz", [event("2016-03-02T01:00:00+00:00")] * 50000
    )
    bad.write_bytes(bad.read_bytes()[:-1000])  # truncated
    result = workspace.launch(
        "TotalEventsDailyTask",
        "--local-scheduler",
        "--interval",
        "2016-03",
        *workspace.source_args(),
        "--output-root",
        "out/",
    )
    assert result.returncode != 0
    assert str(bad) in result.stderr
    assert not (workspace.root / "out" / "_SUCCESS").exists()
    assert not (workspace.root / "out" / "part-00000").exists()


def test_many_files_on_every_core_give_the_same_counts(workspace: Workspace):
    for day in range(1, 9):
        workspace.write_log(
            f"g{day % 3}/tracking.log-201603{day:02d}.gz",
            [event(f"2016-03-{day:02d}T{h:02d}:00:00+00:00") for h in range(day * 3)],
        )
    result = workspace.launch(
        "TotalEventsDailyTask",
        "--local-scheduler",
        "--interval",
        "2016-03",
        *workspace.source_args(),
        "--output-root",
        "out/",
    )
    assert result.returncode == 0, result.output
    expected = [(f"2016-03-{day:02d}", str(day * 3)) for day in range(1, 9)]
    assert read_counts(workspace.root / "out" / "part-00000") == expected
    assert "progress: 8/8 files" in result.stderr


def test_workflow_writes_the_csv_report_newest_first(workspace: Workspace):
    workspace.write_log("tracking.log-20160301.gz", [event("2016-03-01T01:00:00+00:00")] * 3)
    workspace.write_log("tracking.log-20160302.gz", [event("2016-03-02T01:00:00+00:00")] * 5)
    result = workspace.launch(
        "TotalEventsReportWorkflow",
        "--local-scheduler",
        "--workers",
        "2",
        "--interval",
        "2016-03",
        *workspace.source_args(),
        "--counts",
        "counts/",
        "--report",
        "report.csv",
    )
    assert result.returncode == 0, result.output
    with open(workspace.root / "report.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows == [["date", "event_count"], ["2016-03-02", "5"], ["2016-03-01", "3"]]


def test_report_sums_every_non_underscore_file_of_a_counts_directory(workspace: Workspace):
    counts = workspace.root / "counts"
    counts.mkdir()
    (counts / "part-00000").write_text("2016-03-01\t3\n2016-03-02\t1\n")
    (counts / "part-00001").write_text("2016-03-02\t4\n")
    (counts / "_SUCCESS").write_text("")
    (counts / "_logs").write_text("2016-03-02\t100\n")
    result = workspace.launch(
        "TotalEventsReport", "--local-scheduler", "--counts", "counts/", "--report", "report.csv"
    )
    assert result.returncode == 0, result.output
    assert (
        workspace.root / "report.csv"
    ).read_text() == "date,event_count\n2016-03-02,5\n2016-03-01,3\n"


def test_unknown_scheme_and_bad_config_are_named(workspace: Workspace):
    result = workspace.launch(
        "TotalEventsDailyTask",
        "--local-scheduler",
        "--interval",
        "2016",
        *workspace.source_args(),
        "--output-root",
        "hdfs://localhost:9000/output/",
    )
    assert result.returncode != 0
    assert "hdfs://localhost:9000/output/" in result.stderr
    missing = workspace.launch("TotalEventsDailyTask", "--additional-config", "nope.cfg")
    assert missing.returncode == 2
    assert "nope.cfg" in missing.stderr


def test_config_file_chain_supplies_parameters(workspace: Workspace):
    workspace.write_log("tracking.log-20160301.gz", [event("2016-03-01T01:00:00+00:00")])
    (workspace.root / "override.cfg").write_text(
        f'[event-logs]\nsource = ["{workspace.logs}/"]\nexpand_interval = 0 days\n'
    )
    extra = workspace.root / "extra.cfg"
    extra.write_text('[event-logs]\npattern = [".*tracking.log-(?P<date>\\\\d{8})\\\\.gz"]\n')
    result = workspace.launch(
        "TotalEventsDailyTask",
        "--local-scheduler",
        "--interval",
        "2016-03-01",
        "--output-root",
        "out/",
        "--additional-config",
        str(extra),
    )
    assert result.returncode == 0, result.output
    assert read_counts(workspace.root / "out" / "part-00000") == [("2016-03-01", "1")]


def test_week_and_month_intervals_cover_their_days(workspace: Workspace):
    days = ["2016-02-28", "2016-02-29", "2016-03-06", "2016-03-07"]
    workspace.write_log(
        "tracking.log-20160301.gz", [event(f"{day}T12:00:00+00:00") for day in days]
    )
    week = workspace.launch("TotalEventsDailyTask", "--local-scheduler", "--interval", "2016-W09",
                            *workspace.source_args(), "--output-root", "week/")  # fmt: skip
    assert week.returncode == 0, week.output
    # ISO week 9 of 2016 is Monday 2016-02-29 .. Sunday 2016-03-06
    assert read_counts(workspace.root / "week" / "part-00000") == [
        ("2016-02-29", "1"),
        ("2016-03-06", "1"),
    ]
    month = workspace.launch("TotalEventsDailyTask", "--local-scheduler", "--interval", "2016-02",
                             *workspace.source_args(), "--output-root", "month/")  # fmt: skip
    assert month.returncode == 0, month.output
    assert read_counts(workspace.root / "month" / "part-00000") == [
        ("2016-02-28", "1"),
        ("2016-02-29", "1"),
    ]


def test_another_interval_into_the_same_output_root_is_counted_again(workspace: Workspace):
    workspace.write_log("tracking.log-20160301.gz", [event("2016-03-01T01:00:00+00:00")])
    workspace.write_log("tracking.log-20160302.gz", [event("2016-03-02T01:00:00+00:00")] * 2)
    args = ["TotalEventsDailyTask", "--local-scheduler", *workspace.source_args(),
            "--output-root", "out/", "--interval"]  # fmt: skip
    assert workspace.launch(*args, "2016-03-01").returncode == 0
    assert (workspace.root / "out" / "_SUCCESS").read_text() == "2016-03-01-2016-03-02\n"
    wider = workspace.launch(*args, "2016-03-01-2016-03-03")
    assert wider.returncode == 0, wider.output
    assert read_counts(workspace.root / "out" / "part-00000") == [
        ("2016-03-01", "1"),
        ("2016-03-02", "2"),
    ]


def workflow(workspace: Workspace, interval: str, *extra: str):
    return workspace.launch(
        "TotalEventsReportWorkflow", "--local-scheduler", "--interval", interval,
        *workspace.source_args(), "--expand-interval", "0 days", "--overwrite-n-days", "1",
        "--counts", "counts/", "--report", "report.csv", *extra,
    )  # fmt: skip


def lines_read(result) -> int:
    (line,) = [x for x in result.stderr.splitlines() if "TotalEventsReportWorkflow:" in x
               and " lines, " in x]  # fmt: skip
    return int(line.split(" files, ")[1].split(" lines")[0].replace(",", ""))


def test_workflow_keeps_day_partitions_and_reads_only_what_is_new(workspace: Workspace):
    for day in (1, 2, 3):
        workspace.write_log(
            f"tracking.log-201603{day:02d}.gz", [event(f"2016-03-{day:02d}T01:00:00+00:00")] * day
        )
    first = workflow(workspace, "2016-03-01-2016-03-02")
    assert first.returncode == 0, first.output
    partitions = workspace.root / "warehouse" / "total_events_daily"
    assert (partitions / "dt=2016-03-01" / "part-00000").read_text() == "2016-03-01\t1\n"
    # the night of 03-02 is missed; the next run fills 03-02 in and reads 03-03, not 03-01
    third = workflow(workspace, "2016-03-01-2016-03-04")
    assert third.returncode == 0, third.output
    assert lines_read(third) == 2 + 3
    assert sorted(p.name for p in partitions.iterdir()) == [
        "dt=2016-03-01", "dt=2016-03-02", "dt=2016-03-03",
    ]  # fmt: skip
    csv_text = (workspace.root / "report.csv").read_text()
    assert csv_text == "date,event_count\n2016-03-03,3\n2016-03-02,2\n2016-03-01,1\n"
    # the counts directory holds what TotalEventsDailyTask would write for that interval
    assert (workspace.root / "counts" / "part-00000").read_text() == (
        "2016-03-01\t1\n2016-03-02\t2\n2016-03-03\t3\n"
    )
    assert (workspace.root / "counts" / "_SUCCESS").read_text() == "2016-03-01-2016-03-04\n"
    # re-running the night reads nothing (a log read again would fail: it is no gzip now)
    (workspace.logs / "tracking.log-20160303.gz").write_bytes(b"not even gzip")
    again = workflow(workspace, "2016-03-01-2016-03-04")
    assert again.returncode == 0, again.output
    assert "No pipeline task finished" in again.stderr
    assert (workspace.root / "report.csv").read_text() == csv_text
