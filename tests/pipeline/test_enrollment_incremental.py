"""Incremental runs: only the last overwrite_n_days days are extracted again from raw logs."""

import pytest

from tests.pipeline.conftest import Workspace

pytestmark = pytest.mark.usefixtures("engine")  # each test on both engines

A = "edx.course.enrollment.activated"


def activation(day: int, user: int, course="edX/DemoX/Demo_Course"):
    return {
        "event_type": A,
        "time": f"2014-08-{day:02d}T12:00:00.000000+00:00",
        "event": {"course_id": course, "user_id": user, "mode": "honor"},
    }


def state(workspace: Workspace, date_b: str):
    part = workspace.root / "warehouse" / "course_enrollment" / f"dt={date_b}" / "part-00000"
    return sorted(tuple(line.split("\t")) for line in part.read_text().splitlines())


def users_on(rows, date):
    return sorted(row[2] for row in rows if row[0] == date)


def test_only_the_refresh_window_is_read_from_raw_logs(workspace: Workspace):
    workspace.write_log("tracking.log-20140801.gz", [activation(1, 1)])
    workspace.write_log("tracking.log-20140803.gz", [activation(3, 2)])
    args = ["--local-scheduler", *workspace.source_args(), "--expand-interval", "0 days"]
    # Fill the warehouse for every day first.
    first = workspace.launch(
        "CourseEnrollmentEventsTask", "--interval", "2014-08-01-2014-08-05", *args
    )
    assert first.returncode == 0, first.output
    # Raw logs change afterwards: a late event for an old day and one inside the window.
    workspace.write_log("tracking.log-20140801.gz", [activation(1, 1), activation(1, 9)])
    workspace.write_log("tracking.log-20140804.gz", [activation(4, 3)])
    result = workspace.launch(
        "CourseEnrollmentTask",
        "--interval",
        "2014-08-01-2014-08-05",
        "--overwrite-n-days",
        "2",
        *args,
    )
    assert result.returncode == 0, result.output
    rows = state(workspace, "2014-08-05")
    # 08-01 comes from the warehouse day file (user 9 unseen); 08-04 was re-extracted (user 3)
    assert users_on(rows, "2014-08-01") == ["1"]
    assert users_on(rows, "2014-08-04") == ["1", "2", "3"]
    events_0801 = (
        workspace.root
        / "warehouse/course_enrollment_events/dt=2014-08-01/course_enrollment_events_2014-08-01"
    )
    assert "\t9\t" not in events_0801.read_text()


def test_empty_warehouse_starts_at_the_window(workspace: Workspace):
    workspace.write_log("tracking.log-20140801.gz", [activation(1, 1)])
    workspace.write_log("tracking.log-20140804.gz", [activation(4, 2)])
    result = workspace.launch(
        "CourseEnrollmentTask",
        "--local-scheduler",
        "--interval",
        "2014-08-01-2014-08-05",
        "--overwrite-n-days",
        "2",
        *workspace.source_args(),
    )
    assert result.returncode == 0, result.output
    rows = state(workspace, "2014-08-05")
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [("2014-08-04", "2", "1", "1")]


def test_every_day_of_the_interval_gets_an_events_file(workspace: Workspace):
    workspace.write_log("tracking.log-20140802.gz", [activation(2, 1)])
    result = workspace.launch(
        "CourseEnrollmentEventsTask",
        "--local-scheduler",
        "--interval",
        "2014-08-01-2014-08-04",
        *workspace.source_args(),
    )
    assert result.returncode == 0, result.output
    base = workspace.root / "warehouse" / "course_enrollment_events"
    sizes = {
        d: (base / f"dt={d}" / f"course_enrollment_events_{d}").stat().st_size
        for d in ("2014-08-01", "2014-08-02", "2014-08-03")
    }
    assert sizes["2014-08-01"] == 0 and sizes["2014-08-03"] == 0 and sizes["2014-08-02"] > 0


def test_negative_overwrite_n_days_is_refused_by_name(workspace: Workspace):
    result = workspace.launch(
        "CourseEnrollmentTask",
        "--local-scheduler",
        "--interval",
        "2014-08",
        "--overwrite-n-days",
        "-1",
        *workspace.source_args(),
    )
    assert result.returncode != 0
    assert "--overwrite-n-days -1" in result.stderr
