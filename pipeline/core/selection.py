"""Which tracking-log files a task reads for an interval.

1. widen the interval by ``expand_interval`` on both sides;
2. list every file under each source, recursively;
3. keep a file when the first pattern that matches its full path (``re.match``: anchored at the
   start only) has a ``date`` group inside the widened interval, or a ``timestamp`` group (Unix
   seconds, UTC) inside it, or neither group. Files no pattern matches are left out.

Entries that are not regular files (broken links, FIFOs, sockets) are never read: skipped and
counted, or an error naming them when a pattern selects them. :meth:`Selection.check` turns a
missing source, or an interval without any file, into :class:`MissingInputError`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.core import fs
from pipeline.errors import InvalidInput, NotFound

#: The pipeline's default patterns (``[event-logs] pattern`` of pipeline/defaults.cfg): daily
#: rotated tracking logs, compressed or not.
DEFAULT_PATTERNS = (r".*tracking.log-(?P<date>\d{8}).*\.gz", r".*tracking.log-(?P<date>\d{8})$")


class SelectionError(InvalidInput):
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


@dataclass
class Selection:
    """The files chosen for an interval, and what was seen but cannot be read."""

    files: list[SelectedFile]
    sources: list[str]
    patterns: list[str]
    interval: str
    expand_interval: str
    #: first and last day (inclusive) a file's date may have: the widened interval
    first_day: dt.date
    last_day: dt.date
    missing_sources: list[str] = field(default_factory=list)
    #: entries under the sources that are not regular files and no pattern selects, by kind
    skipped: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        return (
            f"sources {self.sources}, patterns {self.patterns}, files dated {self.first_day} "
            f"through {self.last_day} (interval {self.interval} widened by "
            f"expand_interval {self.expand_interval})"
        )

    def check(self, allow_empty: bool = False) -> Selection:
        """Raise :class:`MissingInputError` for a missing source, or for no file at all
        unless ``allow_empty``; return the selection otherwise."""
        if self.missing_sources:
            missing = ", ".join(self.missing_sources)
            raise MissingInputError(f"missing input: {missing} does not exist; {self.describe()}")
        if not self.files and not allow_empty:
            raise MissingInputError(
                f"missing input: no file selected; {self.describe()}. If this interval "
                "legitimately has no logs, set [event-logs] allow_empty = true"
            )
        return self


class MissingInputError(SelectionError, NotFound):
    """A source that does not exist, or an interval without any log file."""


# Not followed (as os.walk does not), never read, so never an error even when a pattern matches.
_DIRECTORY_LINK = "symbolic link to a directory"


def select_files(
    sources: Iterable[str],
    patterns: Iterable[str],
    date_a: dt.date,
    date_b: dt.date,
    expand_interval: str | dt.timedelta = "2 days",
    date_pattern: str = "%Y%m%d",
) -> Selection:
    """The files to read for [date_a, date_b), widened by ``expand_interval``, deduplicated.

    Entries that are not regular files are counted in ``skipped``, or raise
    :class:`SelectionError` naming them when a pattern selects them (they would be read).
    Sources that do not exist are listed in ``missing_sources``: see :meth:`Selection.check`.
    """
    widen = parse_expand_interval(expand_interval)
    # A widening of hours reaches into the neighbouring day, which then counts as inside.
    start = (dt.datetime.combine(date_a, dt.time()) - widen).date()
    end_dt = dt.datetime.combine(date_b, dt.time()) + widen
    end = end_dt.date() + (dt.timedelta(days=1) if end_dt.time() != dt.time() else dt.timedelta())
    patterns = list(patterns)
    compiled = compile_patterns(patterns)
    sources = list(sources)
    if not sources:
        raise SelectionError("no source given: set [event-logs] source or --source")
    result = Selection(
        files=[],
        sources=sources,
        patterns=patterns,
        interval=f"{date_a}-{date_b}",
        expand_interval=str(expand_interval),
        first_day=start,
        last_day=end - dt.timedelta(days=1),
    )
    selected: dict[str, SelectedFile] = {}
    for source in sources:
        try:
            listing = list(fs.list_entries(source))
            if not listing and not fs.location_exists(source):
                result.missing_sources.append(source)
        except fs.StorageError as exc:
            raise SelectionError(f"source {source!r}: {exc}") from exc
        for url, size, kind in listing:
            if url in selected:
                continue
            chosen = file_in_interval(url, compiled, start, end, date_pattern)
            if kind == fs.REGULAR:
                if chosen:
                    selected[url] = SelectedFile(url, size)
            elif chosen and kind != _DIRECTORY_LINK:
                raise SelectionError(
                    f"{url}: not a regular file ({kind}), yet a pattern selects it as a log "
                    f"to read; remove it or narrow the patterns {patterns}"
                )
            else:
                result.skipped[kind] = result.skipped.get(kind, 0) + 1
    result.files = sorted(selected.values(), key=lambda f: f.url)
    return result
