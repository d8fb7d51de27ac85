"""Per-file extraction: the functions the engine runs in its worker processes.

Luigi-free on purpose, so workers start fast and a cluster engine can call the same functions.
"""

from __future__ import annotations

import re

from pipeline.core import events
from pipeline.core.engine import FileResult
from pipeline.core.reader import LINE_TOO_LONG, iter_blocks

ACTIVATED = "edx.course.enrollment.activated"
DEACTIVATED = "edx.course.enrollment.deactivated"
MODE_CHANGED = "edx.course.enrollment.mode_changed"
ENROLLMENT_EVENT_TYPES = frozenset((ACTIVATED, DEACTIVATED, MODE_CHANGED))

# Discard reasons of enrollment extraction (besides those of pipeline.core.events).
MISSING_EVENT_TYPE = "missing event type"
NOT_ENROLLMENT = "not an enrollment event"
NO_EVENT_DATA = "no event data"
INVALID_COURSE_ID = "invalid course id"
MISSING_USER_ID = "missing user_id"
MISSING_MODE = "missing mode"
UNSAFE_FIELD = "tab or newline in a field"

# Only lines spelling out this prefix are parsed. Real emitters never write ASCII as \u
# escapes; a type hidden that way (upstream would decode it) is counted as "not an enrollment".
_ENROLLMENT_MARK = b"edx.course.enrollment."

_KEY_PART = r"[\w\-~.:]+"
_COURSE_KEY = re.compile(
    rf"^(?:course-v1:{_KEY_PART}\+{_KEY_PART}\+{_KEY_PART}(?:\+[\w\-~.:@]+)*"
    rf"|{_KEY_PART}/{_KEY_PART}/{_KEY_PART})$"
)


def count_file(
    url: str, on_position=None, *, max_line_bytes: int, decompress_thread: bool = False
) -> FileResult:
    """Mapper: events per date in one file (all dates; the interval is applied afterwards)."""
    counts: dict[str, int] = {}
    discards: dict[str, int] = {}
    lines = 0
    blocks = iter_blocks(url, discards, max_line_bytes=max_line_bytes, on_position=on_position,
                         decompress_thread=decompress_thread)  # fmt: skip
    for block in blocks:
        lines += events.count_event_dates(block, counts, discards)
    return FileResult(url, lines + discards.get(LINE_TOO_LONG, 0), counts, discards)


def is_valid_course_id(course_id: str) -> bool:
    """``org/course/run`` or ``course-v1:org+course+run``."""
    return bool(_COURSE_KEY.match(course_id))


def enrollment_timestamp(time_value: str) -> str:
    """Upstream's timestamp: ``time`` up to the first '+', with '.000000' added if no '.'."""
    stamp = time_value.split("+", 1)[0]
    return stamp if "." in stamp else stamp + ".000000"


def enrollment_row(event: dict, dates: frozenset[str]) -> tuple[str | None, tuple | str]:
    """``(date, (course_id, user_id, timestamp, event_type, mode))``, or ``(None, reason)``."""
    event_type = event.get("event_type")
    if event_type is None:
        return None, MISSING_EVENT_TYPE
    if event_type not in ENROLLMENT_EVENT_TYPES:
        return None, NOT_ENROLLMENT
    time_value, reason = events.event_time(event)
    if time_value is None:
        return None, reason
    date = events.event_date(time_value)
    if date not in dates:
        return None, events.OUTSIDE_INTERVAL
    data = events.event_data(event)
    if data is None:
        return None, NO_EVENT_DATA
    course_id = data.get("course_id")
    if not isinstance(course_id, str) or not is_valid_course_id(course_id.strip()):
        return None, INVALID_COURSE_ID
    user_id = data.get("user_id")
    if user_id is None:
        return None, MISSING_USER_ID
    mode = data.get("mode")
    if mode is None:
        return None, MISSING_MODE
    row = (course_id.strip(), str(user_id), enrollment_timestamp(time_value), event_type, str(mode))
    if any("\t" in field or "\n" in field or "\r" in field for field in row):
        return None, UNSAFE_FIELD
    return date, row


def candidate_lines(block: bytes) -> list[bytes]:
    """The lines of ``block`` that spell out an enrollment event type, found without splitting."""
    lines = []
    position = block.find(_ENROLLMENT_MARK)
    while position >= 0:
        start = block.rfind(b"\n", 0, position) + 1
        end = block.find(b"\n", position)
        end = len(block) if end < 0 else end
        lines.append(block[start:end])
        position = block.find(_ENROLLMENT_MARK, end)
    return lines


def extract_file(
    url: str,
    on_position=None,
    *,
    dates: frozenset[str],
    max_line_bytes: int,
    decompress_thread: bool = False,
) -> FileResult:
    """Mapper: the enrollment events of one file, grouped by date."""
    by_date: dict[str, list[tuple]] = {}
    discards: dict[str, int] = {}
    lines = 0
    blocks = iter_blocks(url, discards, max_line_bytes=max_line_bytes, on_position=on_position,
                         decompress_thread=decompress_thread)  # fmt: skip
    for block in blocks:
        in_block = block.count(b"\n") + 1
        lines += in_block
        candidates = candidate_lines(block)
        others = in_block - len(candidates)
        if others:
            discards[NOT_ENROLLMENT] = discards.get(NOT_ENROLLMENT, 0) + others
        for line in candidates:
            event, reason = events.parse_event(line)
            if event is not None:
                date, row_or_reason = enrollment_row(event, dates)
                if date is not None:
                    by_date.setdefault(date, []).append(row_or_reason)
                    continue
                reason = row_or_reason
            discards[reason] = discards.get(reason, 0) + 1
    return FileResult(url, lines + discards.get(LINE_TOO_LONG, 0), by_date, discards)
