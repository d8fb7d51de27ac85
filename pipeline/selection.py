"""Which tracking-log files a task reads for an interval.

1. widen the interval by ``expand_interval`` on both sides;
2. list every file under each source, recursively;
3. keep a file when the first pattern that matches its full path (``re.match``: anchored at the
   start only) has a ``date`` group inside the widened interval, or a ``timestamp`` group (Unix
   seconds, UTC) inside it, or neither group. Files no pattern matches are left out.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline import fs


class SelectionError(ValueError):
    """A source or pattern that cannot be used, named in the message."""


@dataclass(frozen=True)
class SelectedFile:
    url: str
    size: int


_DURATION = re.compile(r"^\s*(\d+)\s*(day|days|week|weeks|hour|hours|d|w|h)?\s*$", re.IGNORECASE)


def parse_expand_interval(text: str | dt.timedelta) -> dt.timedelta:
    """Parse upstream's ``expand_interval`` ("2 days", "1 week", "0 days", "36 hours")."""
    if isinstance(text, dt.timedelta):
        return text
    match = _DURATION.match(str(text))
    if not match:
        raise SelectionError(
            f"expand_interval {text!r}: expected e.g. '2 days', '1 week', '12 hours'"
        )
    amount, unit = int(match.group(1)), (match.group(2) or "days").lower()
    if unit.startswith("w"):
        return dt.timedelta(weeks=amount)
    if unit.startswith("h"):
        return dt.timedelta(hours=amount)
    return dt.timedelta(days=amount)


def compile_patterns(patterns: Iterable[str]) -> list[re.Pattern]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise SelectionError(
                f"pattern {pattern!r} is not a valid regular expression: {exc}"
            ) from exc
    if not compiled:
        raise SelectionError("no pattern given: set [event-logs] pattern or --pattern")
    return compiled


def file_in_interval(
    path: str,
    patterns: list[re.Pattern],
    start: dt.date,
    end: dt.date,
    date_pattern: str = "%Y%m%d",
) -> bool:
    """Whether ``path`` belongs to the (already widened) half-open interval [start, end)."""
    for pattern in patterns:
        match = pattern.match(path)
        if not match:
            continue
        groups = match.groupdict()
        if groups.get("date") is not None:
            try:
                day = dt.datetime.strptime(groups["date"], date_pattern).date()
            except ValueError:
                return False
            return start <= day < end
        if groups.get("timestamp") is not None:
            try:
                seconds = int(groups["timestamp"])
                day = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).date()
            except (ValueError, OverflowError, OSError):
                return False
            return start <= day < end
        return True
    return False


def select_files(
    sources: Iterable[str],
    patterns: Iterable[str],
    date_a: dt.date,
    date_b: dt.date,
    expand_interval: str | dt.timedelta = "2 days",
    date_pattern: str = "%Y%m%d",
) -> list[SelectedFile]:
    """The files to read for [date_a, date_b), widened by ``expand_interval``, deduplicated."""
    widen = parse_expand_interval(expand_interval)
    # A widening of hours reaches into the neighbouring day, which then counts as inside.
    start = (dt.datetime.combine(date_a, dt.time()) - widen).date()
    end_dt = dt.datetime.combine(date_b, dt.time()) + widen
    end = end_dt.date() + (dt.timedelta(days=1) if end_dt.time() != dt.time() else dt.timedelta())
    compiled = compile_patterns(patterns)
    sources = list(sources)
    if not sources:
        raise SelectionError("no source given: set [event-logs] source or --source")
    selected: dict[str, SelectedFile] = {}
    for source in sources:
        try:
            listing = list(fs.list_files(source))
        except fs.StorageError as exc:
            raise SelectionError(f"source {source!r}: {exc}") from exc
        for url, size in listing:
            if url not in selected and file_in_interval(url, compiled, start, end, date_pattern):
                selected[url] = SelectedFile(url, size)
    return sorted(selected.values(), key=lambda f: f.url)
