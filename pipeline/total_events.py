"""Events per day: TotalEventsDailyTask, TotalEventsReport, TotalEventsReportWorkflow.

``TotalEventsDailyTask`` counts every event whose date (its ``time`` up to the first ``T``) lies
in the interval, whatever its type. It writes ``YYYY-MM-DD<TAB>count`` lines, sorted by date, to
``<output_root>/part-00000`` and marks the directory complete with ``_SUCCESS`` (upstream's
Hadoop layout, so ``TotalEventsReport --counts <output_root>/`` reads it unchanged). The marker
holds the interval it was written for: another interval into the same directory runs again.

``TotalEventsReportWorkflow`` is incremental, for a nightly job whose interval grows: the count
of each day is kept in the warehouse (``{warehouse}/total_events_daily/dt=D/part-00000``, empty
for a day without events). A run extracts from raw logs only the last ``overwrite_n_days`` days
of its interval, plus any day that has no partition yet (a missed night, a new site), then
rebuilds ``<counts>/part-00000`` and the CSV report from the partitions of the whole interval.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor

import luigi
from luigi.date_interval import Custom

from pipeline.common import (
    EngineMixin,
    EventLogSelectionMixin,
    ReportingMixin,
    WarehouseMixin,
    overwrite_n_days_parameter,
)
from pipeline.core import events, fs
from pipeline.core.extraction import count_file
from pipeline.targets import PART_FILE, PartFileOutput, UrlTarget

WAREHOUSE_COUNTS = "total_events_daily"
# Partition files are tiny: on S3 reading and writing them is all round trips, so several at
# a time (a first run from a distant interval_start writes thousands).
PARTITION_THREADS = 16


def merge_counts(results, interval) -> tuple[dict[str, int], dict[str, int], int, int]:
    """Sum per-file counts; dates outside [date_a, date_b) become discards."""
    low, high = interval.date_a.isoformat(), interval.date_b.isoformat()
    totals: dict[str, int] = {}
    discards: dict[str, int] = {}
    lines = files = 0
    for result in results:
        files += 1
        lines += result.lines
        for reason, count in result.discards.items():
            discards[reason] = discards.get(reason, 0) + count
        for date, count in result.value.items():
            if low <= date < high:
                totals[date] = totals.get(date, 0) + count
            else:
                discards[events.OUTSIDE_INTERVAL] = discards.get(events.OUTSIDE_INTERVAL, 0) + count
    return totals, discards, lines, files


def interval_text(interval) -> str:
    """``date_a-date_b``: one spelling per set of days (``2016-03`` and its custom range agree)."""
    return f"{interval.date_a.isoformat()}-{interval.date_b.isoformat()}"


class EventCountingMixin(EventLogSelectionMixin, EngineMixin, ReportingMixin):
    """Counting the events of an interval's days from the raw logs, on every core."""

    def count_events(self, interval) -> tuple[dict[str, int], dict[str, int], int, int]:
        """``(events per date, discards per reason, lines read, files read)``; raises before
        returning anything if a file cannot be read."""
        files = self.selected_files(interval)
        mapper = self.mapper(count_file, files)
        return merge_counts(self.map_files(mapper, files), interval)

    def record_counts(self, started: float, files: int, lines: int, discards, per_day, **extra):
        """The run's record, with the events it counted per day."""
        self.record_run(started, files, lines, discards, **extra, events=sum(per_day.values()),
                        events_per_day=dict(sorted(per_day.items())))  # fmt: skip


def write_counts(out, totals: dict[str, int]) -> None:
    """``date<TAB>count`` lines, by date (the format of ``part-00000``)."""
    for date in sorted(totals):
        out.write(f"{date}\t{totals[date]}\n")


class TotalEventsDailyTask(EventCountingMixin, luigi.Task):
    """Count all events per day of the interval.

    Example:
        launch-task TotalEventsDailyTask --local-scheduler --interval 2016 \\
            --source '["logs/"]' --output-root out/total-events/
    """

    interval = luigi.DateIntervalParameter(
        description="Dates to count: 2016, 2016-03, 2016-W09, 2016-03-01 or 2016-03-01-2016-03-08."
    )
    output_root = luigi.Parameter(
        description="Directory (local or s3://) that receives part-00000 and _SUCCESS."
    )

    def output(self):
        return PartFileOutput(self.output_root, interval_text(self.interval))

    def run(self):
        started = time.monotonic()
        totals, discards, lines, nfiles = self.count_events(self.interval)
        with self.output().writing() as out:
            write_counts(out, totals)
        self.record_counts(started, nfiles, lines, discards, totals)


def read_counts(counts: str) -> dict[str, int]:
    """Read ``date<TAB>count`` lines from a file, or from every non-underscore file of a
    directory when ``counts`` ends with '/' (or is a local directory)."""
    if counts.endswith("/") or _is_local_dir(counts):
        urls = [
            url
            for url, _ in fs.list_files(counts)
            if not url.rstrip("/").rsplit("/", 1)[-1].startswith(("_", "."))
        ]
    else:
        urls = [counts]
    if not urls:
        raise FileNotFoundError(f"--counts {counts}: no count files there")
    totals: dict[str, int] = {}
    for url in urls:
        if not fs.exists(url):
            raise FileNotFoundError(f"--counts {url}: no such file")
        for date, count in parse_counts(url, fs.read_text(url)).items():
            totals[date] = totals.get(date, 0) + count
    return totals


def parse_counts(url: str, text: str) -> dict[str, int]:
    """``date<TAB>count`` lines of one file (named in errors), summed per date."""
    totals: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        date, sep, count = line.partition("\t")
        if not sep or not count.strip().isdigit():
            raise ValueError(f"{url}, line {number}: expected 'date<TAB>count', got {line!r}")
        totals[date] = totals.get(date, 0) + int(count)
    return totals


def write_report(out, totals: dict[str, int]) -> None:
    """The CSV report ``date,event_count``, newest date first."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["date", "event_count"])
    for date in sorted(totals, reverse=True):
        writer.writerow([date, totals[date]])


def read_report(url: str) -> dict[str, int]:
    """Events per date from a CSV report written by :func:`write_report`."""
    rows = list(csv.reader(io.StringIO(fs.read_text(url))))
    if not rows or rows[0] != ["date", "event_count"]:
        raise ValueError(f"{url}: not a total events report (header 'date,event_count')")
    return {date: int(count) for date, count in rows[1:]}


def _is_local_dir(url: str) -> bool:
    return not fs.is_s3(url) and os.path.isdir(url)


class TotalEventsReport(luigi.Task):
    """Turn daily counts into the CSV report ``date,event_count``, newest date first."""

    counts = luigi.Parameter(description="Counts file, or directory ending in '/'.")
    report = luigi.Parameter(description="CSV file to write (local or s3://).")

    def output(self):
        return UrlTarget(self.report)

    def counts_location(self) -> str:
        return self.counts

    def run(self):
        totals = read_counts(self.counts_location())
        with self.output().writing() as out:
            write_report(out, totals)


def day_partition(warehouse: str, date: str) -> str:
    return fs.join(warehouse, WAREHOUSE_COUNTS, f"dt={date}", PART_FILE)


def list_day_partitions(warehouse: str) -> dict[str, tuple[str, int]]:
    """``{date: (url, size)}`` of the day partitions in the warehouse, in one listing."""
    found = {}
    # Empty partitions (days without events) are zero-byte keys on S3: listed too.
    for url, size in fs.list_files(fs.join(warehouse, WAREHOUSE_COUNTS) + "/", True):
        directory, _, name = url.rpartition("/")
        day = directory.rpartition("/")[2]
        if name == PART_FILE and day.startswith("dt="):
            found[day[3:]] = (url, size)
    return found


class TotalEventsReportWorkflow(EventCountingMixin, WarehouseMixin, TotalEventsReport):
    """Events per day of the interval into ``counts`` and the CSV ``report``, incrementally.

    Days are kept as partitions in the warehouse; only the last ``overwrite_n_days`` days and
    days without a partition are read from the raw logs. The result equals one run from
    scratch over the same interval as long as the logs of older days no longer change.

    Example:
        launch-task TotalEventsReportWorkflow --local-scheduler --interval 2016-03-01-2016-03-04 \\
            --source '["logs/"]' --counts counts/ --report total_events.csv
    """

    interval = luigi.DateIntervalParameter(description="Dates to count.")
    overwrite_n_days = overwrite_n_days_parameter(
        "Days at the end of the interval read again from the raw logs, for events that arrive "
        "late.",
        significant=False,
    )

    def output(self):
        return [
            UrlTarget(self.report),
            PartFileOutput(self.counts_location(), interval_text(self.interval)),
        ]

    def counts_location(self) -> str:
        # Written as a directory: read it as one even without the trailing '/'.
        return self.counts if self.counts.endswith("/") else self.counts + "/"

    def refresh_window(self, partitions: dict[str, tuple[str, int]]):
        """The days to read from the raw logs: the last ``overwrite_n_days``, extended back to
        the first day without a partition. None when every day is there and n is 0."""
        if self.overwrite_n_days < 0:
            raise ValueError(f"--overwrite-n-days {self.overwrite_n_days}: must be 0 or more")
        date_a, date_b = self.interval.date_a, self.interval.date_b
        start = max(date_a, date_b - dt.timedelta(days=self.overwrite_n_days))
        for day in self.interval.dates():
            if day >= start:
                break
            if day.isoformat() not in partitions:
                start = day
                break
        return Custom(start, date_b) if start < date_b else None

    def run(self):
        started = time.monotonic()
        window = self.refresh_window(list_day_partitions(self.warehouse_path))
        totals = discards = {}
        lines = nfiles = 0
        if window is not None:
            totals, discards, lines, nfiles = self.count_events(window)
            # Only after every file was read: a failure leaves the old partitions intact.
            write_partitions(self.warehouse_path, window, totals)
        per_day = read_partitions(list_day_partitions(self.warehouse_path), self.interval)
        report, counts = self.output()
        # The counts' marker vouches for the report too: both are rewritten before it.
        with counts.writing() as out:
            write_counts(out, per_day)
            with report.writing() as csv_out:
                write_report(csv_out, per_day)
        extracted = interval_text(window) if window else None
        self.record_counts(started, nfiles, lines, discards, per_day, extracted=extracted)


def write_partitions(warehouse: str, interval, totals: dict[str, int]) -> None:
    """One partition per day of ``interval`` (empty without events), each written atomically."""

    def write(day: str) -> None:
        with UrlTarget(day_partition(warehouse, day)).writing() as out:
            if totals.get(day):
                out.write(f"{day}\t{totals[day]}\n")

    with ThreadPoolExecutor(PARTITION_THREADS) as pool:
        list(pool.map(write, [day.isoformat() for day in interval.dates()]))


def read_partitions(partitions: dict[str, tuple[str, int]], interval) -> dict[str, int]:
    """Events per day of ``interval`` from its day partitions (empty ones are not read)."""
    wanted = [partitions[d.isoformat()][0] for d in interval.dates()
              if partitions.get(d.isoformat(), ("", 0))[1]]  # fmt: skip
    totals: dict[str, int] = {}
    with ThreadPoolExecutor(PARTITION_THREADS) as pool:
        for url, text in zip(wanted, pool.map(fs.read_text, wanted), strict=True):
            totals.update(parse_counts(url, text))
    return totals
