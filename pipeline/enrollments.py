"""The enrollment chain: events per day, daily state per (course, user), and the summary.

- ``CourseEnrollmentEventsTask`` extracts activated/deactivated/mode_changed events into one TSV
  per day: ``{warehouse}/course_enrollment_events/dt=D/course_enrollment_events_D``.
- ``CourseEnrollmentTask`` re-extracts the last ``overwrite_n_days`` days, reads older days from
  the warehouse, and writes each (course, user)'s state for every day to
  ``{warehouse}/course_enrollment/dt={date_b}/part-00000``.
- ``CourseEnrollmentSummaryTask`` writes each user's first/last enrollment facts to
  ``{warehouse}/course_enrollment_summary/dt={date_b}/part-00000``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Iterable, Iterator

import luigi
from luigi.date_interval import Custom

from pipeline.common import (
    EngineMixin,
    EventLogSelectionMixin,
    ReportingMixin,
    WarehouseMixin,
    overwrite_n_days_parameter,
)
from pipeline.core import fs
from pipeline.core.extraction import ACTIVATED, DEACTIVATED, MODE_CHANGED, extract_file
from pipeline.core.sorting import sorted_rows
from pipeline.targets import PartFileOutput, UrlTarget

WAREHOUSE_EVENTS = "course_enrollment_events"
WAREHOUSE_STATE = "course_enrollment"
WAREHOUSE_SUMMARY = "course_enrollment_summary"
NULL = "\\N"


def day_file(warehouse: str, date: str) -> str:
    return fs.join(warehouse, WAREHOUSE_EVENTS, f"dt={date}", f"{WAREHOUSE_EVENTS}_{date}")


def interval_dates(interval) -> list[str]:
    return [d.isoformat() for d in interval.dates()]


class CourseEnrollmentEventsTask(
    EventLogSelectionMixin, EngineMixin, WarehouseMixin, ReportingMixin, luigi.Task
):
    """Extract enrollment events, one TSV per day of the interval (empty days included).

    Columns: course_id, user_id, timestamp, event_type, mode.
    """

    interval = luigi.DateIntervalParameter(description="Days to extract.")
    overwrite = luigi.BoolParameter(
        default=False, description="Extract again even when the day files exist."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ran = False

    def output(self):
        return [UrlTarget(day_file(self.warehouse_path, d)) for d in interval_dates(self.interval)]

    def complete(self):
        if self.overwrite and not self._ran:
            return False
        return super().complete()

    def run(self):
        started = time.monotonic()
        dates = interval_dates(self.interval)
        files = self.selected_files(self.interval)
        mapper = self.mapper(extract_file, files, dates=frozenset(dates))
        by_date: dict[str, list[tuple]] = {d: [] for d in dates}
        discards: dict[str, int] = {}
        lines = nfiles = 0
        for result in self.map_files(mapper, files):
            nfiles += 1
            lines += result.lines
            for reason, count in result.discards.items():
                discards[reason] = discards.get(reason, 0) + count
            for date, rows in result.value.items():
                by_date[date].extend(rows)
        # Nothing is written until every file was read: a bad file leaves the old days intact.
        for date, target in zip(dates, self.output(), strict=True):
            with target.writing() as out:
                for row in sorted(by_date[date]):
                    out.write("\t".join(row) + "\n")
        self._ran = True
        self.record_run(
            started, nfiles, lines, discards, events=sum(len(rows) for rows in by_date.values())
        )


def read_day_files(urls: Iterable[str]) -> Iterator[tuple[str, ...]]:
    for url in urls:
        for number, line in enumerate(fs.read_text(url).splitlines(), 1):
            fields = tuple(line.split("\t"))
            if len(fields) != 5:
                raise ValueError(f"{url}, line {number}: expected 5 tab-separated fields")
            yield fields


class EnrollmentStateMixin(EventLogSelectionMixin, EngineMixin, WarehouseMixin, ReportingMixin):
    """Inputs shared by the daily-state and summary tasks: the interval's day files, with the
    last ``overwrite_n_days`` days extracted again from the raw logs."""

    interval = luigi.DateIntervalParameter(description="Days the state covers; state as of date_b.")
    overwrite_n_days = overwrite_n_days_parameter(
        "Days at the end of the interval to extract again from the raw logs."
    )

    def refresh_window(self):
        if self.overwrite_n_days < 0:
            raise ValueError(f"--overwrite-n-days {self.overwrite_n_days}: must be 0 or more")
        start = max(
            self.interval.date_a, self.interval.date_b - dt.timedelta(self.overwrite_n_days)
        )
        return Custom(start, self.interval.date_b)

    def requires(self):
        window = self.refresh_window()
        if window.date_a >= window.date_b:
            return []
        return self.clone(CourseEnrollmentEventsTask, interval=window, overwrite=True)

    def existing_day_files(self) -> list[str]:
        """Day files of the interval: the refreshed window's, and older ones where present."""
        urls = [day_file(self.warehouse_path, d) for d in interval_dates(self.interval)]
        return [url for url in urls if fs.exists(url)]

    def grouped_events(self) -> Iterator[tuple[tuple[str, str], list[tuple]]]:
        """Events grouped by (course_id, user_id), each group sorted by (timestamp, type, mode)."""
        rows = sorted_rows(read_day_files(self.existing_day_files()))
        for key, group in itertools.groupby(rows, key=lambda row: (row[0], row[1])):
            yield key, list(group)

    def table_output(self, table: str) -> PartFileOutput:
        """``{warehouse}/<table>/dt={date_b}/``: part-00000 and _SUCCESS."""
        date_b = self.interval.date_b.isoformat()
        return PartFileOutput(fs.join(self.warehouse_path, table, f"dt={date_b}"))


class EnrollmentStateTable(EnrollmentStateMixin, luigi.Task):
    """A table computed from each (course, user)'s sorted events, into the warehouse."""

    table: str  # the warehouse table written

    def group_rows(self, group: list[tuple], date_b: dt.date) -> Iterable[tuple]:
        """The table's rows for one (course, user)'s events."""
        raise NotImplementedError

    def output(self):
        return self.table_output(self.table)

    def run(self):
        started = time.monotonic()
        count = 0
        with self.output().writing() as out:
            for _key, group in self.grouped_events():
                for row in self.group_rows(group, self.interval.date_b):
                    out.write("\t".join(map(str, row)) + "\n")
                    count += 1
        self.record_run(started, len(self.existing_day_files()), 0, {}, rows=count)


def daily_states(group: list[tuple], date_b: dt.date) -> Iterator[tuple]:
    """One (course, user)'s rows ``(date, course_id, user_id, at_end, change, mode)``.

    Walks the sorted events from UNENROLLED with mode 'unknown': activation while unenrolled
    enrolls, deactivation while enrolled unenrolls, mode_changed changes only the mode; every
    event sets the mode. Each date from the first event up to ``date_b`` gets a row; ``change``
    is the state change since the previous row's date, on the first date of a run only.
    """
    end = date_b.isoformat()
    state = previous = 0
    for index, (course_id, user_id, stamp, event_type, mode) in enumerate(group):
        if event_type == ACTIVATED and state == 0:
            state = 1
        elif event_type == DEACTIVATED and state == 1:
            state = 0
        day = stamp.partition("T")[0]
        following = group[index + 1][2].partition("T")[0] if index + 1 < len(group) else end
        if following <= day:
            continue
        current, stop = dt.date.fromisoformat(day), dt.date.fromisoformat(following)
        change = state - previous
        while current < stop:
            yield current.isoformat(), course_id, user_id, state, change, mode
            change = 0
            current += dt.timedelta(days=1)
        previous = state


def summary_row(group: list[tuple], date_b: dt.date) -> tuple | None:
    """A (course, user)'s enrollment summary, or None if it was never validly activated."""
    state = 0
    first_time = first_mode = last_unenroll = current_mode = None
    first_verified = first_credit = None
    course_id, user_id = group[0][:2]
    for _course, _user, stamp, event_type, mode in group:
        mode_set = False
        if event_type == ACTIVATED and state == 0:
            state = 1
            if first_time is None:
                first_time, first_mode = stamp, mode
            current_mode, mode_set = mode, True
        elif event_type == DEACTIVATED and state == 1:
            state = 0
            last_unenroll = stamp
        elif event_type == MODE_CHANGED and state == 1:
            current_mode, mode_set = mode, True
        if mode_set and mode == "verified" and first_verified is None:
            first_verified = stamp
        if mode_set and mode == "credit" and first_credit is None:
            first_credit = stamp
    if first_time is None:
        return None
    return (
        course_id,
        user_id,
        current_mode,
        state,
        first_mode,
        _datetime(first_time),
        _datetime(last_unenroll),
        _datetime(first_verified),
        _datetime(first_credit),
        f"{date_b.isoformat()} 00:00:00.000000",
    )


def _datetime(stamp: str | None) -> str:
    return NULL if stamp is None else stamp.replace("T", " ", 1)


class CourseEnrollmentTask(EnrollmentStateTable):
    """Daily enrollment state per course and user.

    Columns: date, course_id, user_id, at_end (0/1), change (-1/0/1), mode.
    """

    table = WAREHOUSE_STATE

    def group_rows(self, group, date_b):
        return daily_states(group, date_b)


class CourseEnrollmentSummaryTask(EnrollmentStateTable):
    """Per course and user: first enrollment, last unenrollment, current mode and activity.

    Columns: course_id, user_id, current_enrollment_mode, current_enrollment_is_active,
    first_enrollment_mode, first_enrollment_time, last_unenrollment_time,
    first_verified_enrollment_time, first_credit_enrollment_time, end_time (NULL = \\N).
    """

    table = WAREHOUSE_SUMMARY

    def group_rows(self, group, date_b):
        row = summary_row(group, date_b)
        return () if row is None else (row,)
