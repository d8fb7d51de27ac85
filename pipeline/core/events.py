"""Reading one tracking-log line the way the upstream pipeline does, without ever crashing.

Rules (see docs/pipeline.md):
- a line is JSON; if it is not, and it ends with ``}``, the text from its first ``{`` to its last
  ``}`` is tried once more (this rescues syslog-prefixed lines);
- decoding is lenient like upstream's: raw control characters inside strings, invalid UTF-8
  (read as latin-1) and unknown backslash escapes are accepted;
- whatever cannot be used is discarded under a named reason and counted, never raised.

The fast path decodes only the fields a task needs with msgspec; any line it rejects takes the
lenient path, so both give the same answers.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import msgspec
import orjson

# Discard reasons, shared by every task that reads tracking logs.
UNPARSEABLE = "unparseable"
NOT_AN_OBJECT = "not a JSON object"
MISSING_TIME = "missing time"
TIME_NOT_A_STRING = "time not a string"
OUTSIDE_INTERVAL = "outside interval"

_VALID_ESCAPES = frozenset('"\\/bfnrtu')
_BACKSLASH_ESCAPE = re.compile(r"\\(.?)", re.DOTALL)
_UNICODE_ESCAPE_OK = re.compile(r"[0-9a-fA-F]{4}")


class _Fail:
    """Sentinel: the line is not usable JSON."""


FAIL = _Fail()


def _repair_escapes(text: str) -> str:
    """Turn unknown escapes (``\\q``, ``\\u12``) into literal backslashes, as upstream accepted."""

    def fix(match: re.Match) -> str:
        char = match.group(1)
        if char in _VALID_ESCAPES and char != "u":
            return match.group(0)
        if char == "u":
            rest = text[match.end() : match.end() + 4]
            if _UNICODE_ESCAPE_OK.fullmatch(rest):
                return match.group(0)
        return "\\\\" + char

    return _BACKSLASH_ESCAPE.sub(fix, text)


def _loads_lenient(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    try:
        return json.loads(text, strict=False)
    except ValueError:
        pass
    if "\\" in text:
        return json.loads(_repair_escapes(text), strict=False)
    raise ValueError("not JSON")


def decode_line(line: bytes) -> Any:
    """Decode one log line to a Python value, or return :data:`FAIL`.

    Never raises: deep nesting, huge numbers and binary junk all end as ``FAIL``.
    """
    try:
        return _loads_lenient(line)
    except Exception:
        pass
    stripped = line.rstrip()
    if stripped.endswith(b"}"):
        start = line.find(b"{")
        if start > 0:  # start == 0 would retry the same text
            try:
                return _loads_lenient(stripped[start:])
            except Exception:
                pass
    return FAIL


def parse_event(line: bytes) -> tuple[dict | None, str | None]:
    """Return ``(event, None)`` for a usable JSON object, else ``(None, reason)``."""
    value = decode_line(line)
    if value is FAIL:
        return None, UNPARSEABLE
    if not isinstance(value, dict):
        return None, NOT_AN_OBJECT
    return value, None


def event_time(event: dict) -> tuple[str | None, str | None]:
    """The event's ``time`` string, or ``(None, reason)``.

    Falsy values (missing, ``""``, null, false, 0) are "missing"; other non-strings are counted
    apart (upstream crashed on them).
    """
    value = event.get("time")
    if not value:
        return None, MISSING_TIME
    if not isinstance(value, str):
        return None, TIME_NOT_A_STRING
    return value, None


def event_date(time: str) -> str:
    """The event's date: its ``time`` up to the first ``T``, as written (no timezone change)."""
    return time.partition("T")[0]


def event_data(event: dict) -> dict | None:
    """The event's data as a dict, or None when it holds no usable data.

    ``event`` may be an object, a JSON string holding an object, or ``""`` (no data, an empty
    object). Lists, truncated strings and ``key=value`` strings are not event data.
    """
    data = event.get("event")
    if isinstance(data, dict):
        return data
    if isinstance(data, str):
        if data == "":
            return {}
        if "{" not in data:
            return None
        decoded = decode_line(data.encode("utf-8", "surrogatepass"))
        return decoded if isinstance(decoded, dict) else None
    return None


class _TimeOnly(msgspec.Struct, gc=False):
    # Typed str: msgspec refuses null/non-string times, which then take the lenient path.
    time: str = ""


_decode_time_only = msgspec.json.Decoder(_TimeOnly).decode

try:
    from pipeline._fastscan import count_dates as _count_dates_c
except ImportError:  # not built (no compiler where the pipeline was installed)
    _count_dates_c = None
if os.environ.get("PIPELINE_PURE_PYTHON"):
    _count_dates_c = None


def _time_the_lenient_way(line: bytes, discards: dict[str, int]) -> str | None:
    """``time`` of a line the fast decoder refused, or None once the discard is counted."""
    event, reason = parse_event(line)
    if event is None:
        discards[reason] = discards.get(reason, 0) + 1
        return None
    value = event.get("time")
    if value and value.__class__ is str:
        return value
    reason = MISSING_TIME if not value else TIME_NOT_A_STRING
    discards[reason] = discards.get(reason, 0) + 1
    return None


def count_event_dates(block: bytes, counts: dict[str, int], discards: dict[str, int]) -> int:
    """Count the events of ``block`` (whole lines joined by newlines) per date; return its lines.

    This is the hot loop of TotalEventsDailyTask. The C scanner (``pipeline._fastscan``) takes
    the plain lines; every line it cannot decide alone goes through the Python reference below,
    which is also used entirely when the extension is not built or ``PIPELINE_PURE_PYTHON`` is set.
    """
    if _count_dates_c is None:
        return count_event_dates_python(block, counts, discards)
    deferred: list[tuple[int, int]] = []
    lines = _count_dates_c(block, counts, discards, deferred)
    for start, end in deferred:
        count_event_dates_python(block[start:end], counts, discards)
    return lines


def count_event_dates_python(block: bytes, counts: dict[str, int], discards: dict[str, int]) -> int:
    """The reference implementation of :func:`count_event_dates`.

    msgspec decodes only ``time`` from a
    zero-copy view of each line (still checking the whole line is JSON); lines it refuses take
    the lenient path. Logs are written in time order, so consecutive events mostly share a date:
    they are counted as a run and added to ``counts`` once.
    """
    decode = _decode_time_only
    view = memoryview(block)
    find = block.find
    end = len(block)
    start = lines = run = 0
    prefix = "T"  # "<date>T" of the current run; a time starting with "T" has the date ""
    while True:
        newline = find(b"\n", start)
        if newline < 0:
            newline = end
        lines += 1
        try:
            value = decode(view[start:newline]).time
        except Exception:
            value = _time_the_lenient_way(block[start:newline], discards)
        if value:
            if value.startswith(prefix):
                run += 1
            else:
                if run:
                    counts[prefix[:-1]] = counts.get(prefix[:-1], 0) + run
                date, separator, _ = value.partition("T")
                if separator:
                    prefix, run = date + "T", 1
                else:
                    counts[date] = counts.get(date, 0) + 1
                    run = 0
        elif value is not None:
            discards[MISSING_TIME] = discards.get(MISSING_TIME, 0) + 1
        if newline == end:
            break
        start = newline + 1
    if run:
        counts[prefix[:-1]] = counts.get(prefix[:-1], 0) + run
    return lines
