"""Parsing one tracking-log line: the rescue, leniency and discard rules of the reference."""

import json

import pytest

from pipeline.core import events


def count(lines):
    counts, discards = {}, {}
    assert events.count_event_dates(b"\n".join(lines), counts, discards) == len(lines)
    return counts, discards


def test_plain_event_counts_under_its_date():
    counts, discards = count([b'{"time": "2014-08-01T17:09:59.941616+00:00", "event_type": "x"}'])
    assert counts == {"2014-08-01": 1}
    assert discards == {}


def test_date_is_the_time_text_before_T_without_timezone_conversion():
    counts, _ = count(
        [b'{"time": "2014-01-03T01:00:00-05:00"}', b'{"time": "2014-01-03T23:59:59+09:00"}']
    )
    assert counts == {"2014-01-03": 2}


def test_syslog_prefixed_line_is_rescued_from_first_brace_to_last():
    line = b'Aug  1 17:09:59 host lms: {"time": "2014-08-01T17:09:59+00:00", "event": {"a": 1}}  '
    counts, discards = count([line])
    assert counts == {"2014-08-01": 1}
    assert discards == {}


def test_rescue_only_when_line_ends_with_a_brace():
    line = b'prefix {"time": "2014-08-01T17:09:59+00:00"} trailing'
    counts, discards = count([line])
    assert counts == {}
    assert discards == {events.UNPARSEABLE: 1}


@pytest.mark.parametrize(
    "line",
    [
        b'{"time": "2014-08-01T00:00:00", "agent": "tab\there"}',  # raw control character
        b'{"time": "2014-08-01T00:00:00", "username": "caf\xe9"}',  # latin-1, invalid UTF-8
        b'{"time": "2014-08-01T00:00:00", "path": "C:\\q\\x"}',  # unknown escapes
        b'{"time": "2014-08-01T00:00:00", "name": "\\ud83d"}',  # lone surrogate escape
    ],
)
def test_lenient_decoding_accepts_what_upstream_accepted(line):
    counts, discards = count([line])
    assert counts == {"2014-08-01": 1}, discards


def test_invalid_utf8_in_time_is_read_as_latin1():
    event, reason = events.parse_event(b'{"time": "2014-08-01T00:00:00\xff"}')
    assert reason is None
    assert event["time"] == "2014-08-01T00:00:00\xff"


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"[1, 2, 3]", events.NOT_AN_OBJECT),
        (b'"just a string"', events.NOT_AN_OBJECT),
        (b"42", events.NOT_AN_OBJECT),
        (b"null", events.NOT_AN_OBJECT),
        (b'{"event_type": "x"}', events.MISSING_TIME),
        (b'{"time": ""}', events.MISSING_TIME),
        (b'{"time": null}', events.MISSING_TIME),
        (b'{"time": false}', events.MISSING_TIME),
        (b'{"time": 1406913000}', events.TIME_NOT_A_STRING),
        (b'{"time": ["2014-08-01"]}', events.TIME_NOT_A_STRING),
        (b'{"time": {"t": 1}}', events.TIME_NOT_A_STRING),
        (b"", events.UNPARSEABLE),
        (b"\x00\x01\x02\xff\xfe binary junk", events.UNPARSEABLE),
        (b'{"time": "2014-08-01T00:00:00"', events.UNPARSEABLE),
        (b"[" * 100_000, events.UNPARSEABLE),
        # nesting beyond the decoders' depth limits is unparseable, not a crash
        (b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, events.UNPARSEABLE),
    ],
)
def test_unusable_lines_are_counted_by_reason_never_raised(line, reason):
    counts, discards = count([line])
    assert counts == {}
    assert discards == {reason: 1}


def test_fast_and_lenient_paths_agree_on_duplicate_keys():
    counts, _ = count([b'{"time": "2014-01-01T00:00:00", "time": "2014-01-02T00:00:00"}'])
    assert counts == {"2014-01-02": 1}
    counts, _ = count(
        [b'{"time": "2014-01-01T00:00:00", "x": "\x01", "time": "2014-01-02T00:00:00"}']
    )
    assert counts == {"2014-01-02": 1}


@pytest.mark.parametrize(
    "value, expected",
    [
        ({"course_id": "a/b/c"}, {"course_id": "a/b/c"}),
        (json.dumps({"course_id": "a/b/c"}), {"course_id": "a/b/c"}),
        ("", {}),
        ([1, 2], None),
        ("input_abc=1&POST=" + "x" * 495, None),  # key=value strings hold no event data
        ('{"POST": {"input": ["trunc' + "x" * 480, None),  # truncated at 512 characters
        (None, None),
        (42, None),
    ],
)
def test_event_data_forms(value, expected):
    event = {"event": value} if value is not None else {}
    assert events.event_data(event) == expected
