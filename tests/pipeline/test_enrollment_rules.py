"""The enrollment rules: event extraction, the daily state machine and the summary."""

import datetime as dt

import pytest

from pipeline import enrollments
from pipeline.core import extraction as e

DATES = frozenset(["2014-08-01", "2014-08-02"])


def enrollment(
    event_type="edx.course.enrollment.activated", time="2014-08-01T10:00:00.123456+00:00", **data
):
    payload = {"course_id": "edX/DemoX/Demo_Course", "user_id": 7, "mode": "honor"} | data
    return {"event_type": event_type, "time": time, "event": payload, "event_source": "server"}


def test_extracted_row_has_upstream_columns():
    date, row = e.enrollment_row(enrollment(), DATES)
    assert date == "2014-08-01"
    assert row == (
        "edX/DemoX/Demo_Course",
        "7",
        "2014-08-01T10:00:00.123456",
        "edx.course.enrollment.activated",
        "honor",
    )


@pytest.mark.parametrize(
    "time, stamp",
    [
        ("2014-08-01T10:00:00+00:00", "2014-08-01T10:00:00.000000"),
        ("2014-08-01T10:00:00Z", "2014-08-01T10:00:00Z.000000"),  # upstream quirk kept
        ("2014-08-01T10:00:00-05:00", "2014-08-01T10:00:00-05:00.000000"),  # offset kept
        ("2014-08-01T10:00:00.5+02:00", "2014-08-01T10:00:00.5"),
    ],
)
def test_timestamp_quirks(time, stamp):
    assert e.enrollment_row(enrollment(time=time), DATES)[1][2] == stamp


def test_user_id_and_mode_are_kept_as_given():
    assert e.enrollment_row(enrollment(user_id="8"), DATES)[1][1] == "8"
    assert e.enrollment_row(enrollment(user_id=44.0), DATES)[1][1] == "44.0"
    assert e.enrollment_row(enrollment(mode=""), DATES)[1][4] == ""


def test_course_id_comes_from_event_data_stripped_never_from_context():
    event = enrollment(course_id="  course-v1:edX+DemoX+2014  ")
    event["context"] = {"course_id": "other/course/run"}
    assert e.enrollment_row(event, DATES)[1][0] == "course-v1:edX+DemoX+2014"
    event = enrollment()
    del event["event"]["course_id"]
    event["context"] = {"course_id": "edX/DemoX/Demo_Course"}
    assert e.enrollment_row(event, DATES) == (None, e.INVALID_COURSE_ID)


def test_event_data_as_json_string_is_used():
    event = enrollment()
    event["event"] = '{"course_id": "a/b/c", "user_id": 3, "mode": "audit"}'
    assert e.enrollment_row(event, DATES)[1][:2] == ("a/b/c", "3")


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"event_type": None}, e.MISSING_EVENT_TYPE),
        ({"event_type": "edx.course.enrollment.upgrade.succeeded"}, e.NOT_ENROLLMENT),
        ({"time": "2014-08-03T00:00:00+00:00"}, "outside interval"),
        ({"time": "2014-07-31T23:59:59+00:00"}, "outside interval"),
        ({"time": None}, "missing time"),
        ({"event": ["a"]}, e.NO_EVENT_DATA),
        ({"event": "course_id=a/b/c&user_id=1"}, e.NO_EVENT_DATA),
        ({"event": ""}, e.INVALID_COURSE_ID),
        ({"data": {"course_id": "not a course"}}, e.INVALID_COURSE_ID),
        ({"data": {"course_id": "a/b"}}, e.INVALID_COURSE_ID),
        ({"data": {"course_id": 12}}, e.INVALID_COURSE_ID),
        ({"data": {"user_id": None}}, e.MISSING_USER_ID),
        ({"data": {"mode": None}}, e.MISSING_MODE),
        ({"data": {"mode": "ho\tnor"}}, e.UNSAFE_FIELD),
    ],
)
def test_unusable_enrollment_events_are_discarded_with_a_reason(change, reason):
    event = enrollment(**change.pop("data", {}))
    for key, value in change.items():
        if value is None:
            event.pop(key)
        else:
            event[key] = value
    assert e.enrollment_row(event, DATES) == (None, reason)


@pytest.mark.parametrize(
    "course_id, valid",
    [
        ("edX/DemoX/Demo_Course", True),
        ("course-v1:edX+DemoX+Demo_Course", True),
        ("course-v1:edX+DemoX", False),
        ("edX/DemoX", False),
        ("edX/Demo X/run", False),
        ("", False),
        ("course-v1:Org.1+Course-2~x+2T2017:a", True),
    ],
)
def test_course_id_forms(course_id, valid):
    assert e.is_valid_course_id(course_id) is valid


A, D, M = e.ACTIVATED, e.DEACTIVATED, e.MODE_CHANGED


def group(*events):
    """Rows as the warehouse holds them, sorted the way CourseEnrollmentTask sorts them."""
    return sorted(("c/o/r", "1", stamp, kind, mode) for stamp, kind, mode in events)


def states(*events, end="2014-08-05"):
    return [
        row[:1] + row[3:]
        for row in enrollments.daily_states(group(*events), dt.date.fromisoformat(end))
    ]


def test_one_row_per_day_from_first_event_to_the_day_before_date_b():
    assert states(("2014-08-02T10:00:00.000000", A, "honor")) == [
        ("2014-08-02", 1, 1, "honor"),
        ("2014-08-03", 1, 0, "honor"),
        ("2014-08-04", 1, 0, "honor"),
    ]


def test_same_day_enroll_and_unenroll_nets_to_no_change():
    assert states(
        ("2014-08-02T10:00:00.000000", A, "honor"),
        ("2014-08-02T11:00:00.000000", D, "honor"),
        end="2014-08-04",
    ) == [
        ("2014-08-02", 0, 0, "honor"),
        ("2014-08-03", 0, 0, "honor"),
    ]


def test_change_is_relative_to_the_previous_emitted_day():
    assert states(
        ("2014-08-01T10:00:00.000000", A, "audit"),
        ("2014-08-03T10:00:00.000000", D, "audit"),
        end="2014-08-05",
    ) == [
        ("2014-08-01", 1, 1, "audit"),
        ("2014-08-02", 1, 0, "audit"),
        ("2014-08-03", 0, -1, "audit"),
        ("2014-08-04", 0, 0, "audit"),
    ]


def test_duplicate_activations_and_stray_deactivations_change_nothing_but_the_mode():
    assert states(
        ("2014-08-01T10:00:00.000000", D, "verified"),
        ("2014-08-02T10:00:00.000000", A, "honor"),
        ("2014-08-03T10:00:00.000000", A, "audit"),
        end="2014-08-04",
    ) == [
        ("2014-08-01", 0, 0, "verified"),
        ("2014-08-02", 1, 1, "honor"),
        ("2014-08-03", 1, 0, "audit"),
    ]


def test_mode_changed_sets_only_the_mode():
    assert states(("2014-08-01T10:00:00.000000", M, "verified"), end="2014-08-02") == [
        ("2014-08-01", 0, 0, "verified")
    ]


def test_same_instant_ties_order_activated_before_deactivated():
    same = "2014-08-01T10:00:00.000000"
    # sorted by (timestamp, event_type, mode): activated < deactivated < mode_changed
    assert states((same, D, "honor"), (same, A, "honor"), end="2014-08-02") == [
        ("2014-08-01", 0, 0, "honor")
    ]
    assert states((same, M, "verified"), (same, A, "honor"), end="2014-08-02") == [
        ("2014-08-01", 1, 1, "verified")
    ]


def summary(*events, end="2014-08-05"):
    return enrollments.summary_row(group(*events), dt.date.fromisoformat(end))


def test_summary_tracks_first_enrollment_last_unenrollment_and_current_mode():
    row = summary(
        ("2014-08-01T10:00:00.000000", A, "audit"),
        ("2014-08-02T10:00:00.000000", M, "verified"),
        ("2014-08-03T10:00:00.000000", D, "honor"),
        ("2014-08-04T10:00:00.000000", M, "credit"),
    )
    assert row == (
        "c/o/r",
        "1",
        "verified",
        0,
        "audit",
        "2014-08-01 10:00:00.000000",
        "2014-08-03 10:00:00.000000",
        "2014-08-02 10:00:00.000000",
        "\\N",
        "2014-08-05 00:00:00.000000",
    )


def test_summary_has_no_row_without_a_valid_activation():
    assert (
        summary(
            ("2014-08-01T10:00:00.000000", D, "honor"),
            ("2014-08-02T10:00:00.000000", M, "verified"),
        )
        is None
    )


def test_candidate_lines_are_the_lines_spelling_out_an_enrollment_type():
    lines = [
        b'{"event_type": "play_video"}',
        b'{"event_type": "edx.course.enrollment.activated"}',
        b"",
        b'{"a": "edx.course.enrollment.x", "b": "edx.course.enrollment.y"}',
        b'{"x": 1}',
    ]
    assert e.candidate_lines(b"\n".join(lines)) == [lines[1], lines[3]]
    assert e.candidate_lines(lines[1]) == [lines[1]]


def test_extract_file_counts_every_line_once(tmp_path):
    line = (
        b'{"event_type": "edx.course.enrollment.activated", "time": '
        b'"2014-08-01T10:00:00+00:00", "event": {"course_id": "a/b/c", "user_id": 1, "mode": "x"}}'
    )
    junk = b'["edx.course.enrollment.activated"]'
    (tmp_path / "log").write_bytes(b'{"event_type": "other"}\n' + line + b"\n" + junk + b"\n")
    result = e.extract_file(str(tmp_path / "log"), dates=DATES, max_line_bytes=1 << 20)
    assert result.value == {
        "2014-08-01": [
            ("a/b/c", "1", "2014-08-01T10:00:00.000000", "edx.course.enrollment.activated", "x")
        ]
    }
    assert result.discards == {e.NOT_ENROLLMENT: 1, "not a JSON object": 1}
    assert result.lines == 3
