"""Events per day: TotalEventsDailyTask, TotalEventsReport, TotalEventsReportWorkflow.

``TotalEventsDailyTask`` counts every event whose date (its ``time`` up to the first ``T``) lies
in the interval, whatever its type. It writes ``YYYY-MM-DD<TAB>count`` lines, sorted by date, to
``<output_root>/part-00000`` and marks the directory complete with ``_SUCCESS`` (upstream's
Hadoop layout, so ``TotalEventsReport --counts <output_root>/`` reads it unchanged).
"""

from __future__ import annotations

import csv
import io
import os
import time

import luigi

from pipeline import events, fs
from pipeline.common import EngineMixin, EventLogSelectionMixin, ReportingMixin, UrlTarget
from pipeline.extraction import count_file

PART_FILE = "part-00000"
SUCCESS_MARKER = "_SUCCESS"


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


class TotalEventsDailyTask(EventLogSelectionMixin, EngineMixin, ReportingMixin, luigi.Task):
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
        return UrlTarget(fs.join(self.output_root, SUCCESS_MARKER))

    def run(self):
        started = time.monotonic()
        files = self.selected_files(self.interval)
        mapper = self.mapper(count_file, files)
        totals, discards, lines, nfiles = merge_counts(self.map_files(mapper, files), self.interval)
        self._clear_previous_attempt()
        with fs.atomic_write(fs.join(self.output_root, PART_FILE)) as out:
            for date in sorted(totals):
                out.write(f"{date}\t{totals[date]}\n")
        with fs.atomic_write(self.output().url) as marker:
            marker.write("")
        self.record_run(
            started,
            nfiles,
            lines,
            discards,
            events=sum(totals.values()),
            events_per_day=dict(sorted(totals.items())),
        )

    def _clear_previous_attempt(self) -> None:
        # Leftover part files (ours, or an upstream Hadoop run's) would be summed twice by the
        # report; only files of this task's layout are removed.
        for url, _ in fs.list_files(self.output_root):
            name = url.rsplit("/", 1)[-1]
            if name.startswith("part-") or name == SUCCESS_MARKER:
                fs.remove(url)


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
        for number, line in enumerate(fs.read_text(url).splitlines(), 1):
            if not line.strip():
                continue
            date, sep, count = line.partition("\t")
            if not sep or not count.strip().isdigit():
                raise ValueError(f"{url}, line {number}: expected 'date<TAB>count', got {line!r}")
            totals[date] = totals.get(date, 0) + int(count)
    return totals


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
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["date", "event_count"])
        for date in sorted(totals, reverse=True):
            writer.writerow([date, totals[date]])
        with fs.atomic_write(self.report) as out:
            out.write(buffer.getvalue())


class TotalEventsReportWorkflow(EventLogSelectionMixin, EngineMixin, TotalEventsReport):
    """Count events per day into ``counts``, then write the CSV ``report``."""

    interval = luigi.DateIntervalParameter(description="Dates to count.")

    def requires(self):
        return self.clone(TotalEventsDailyTask, output_root=self.counts)

    def counts_location(self) -> str:
        # The daily task writes a directory: read it as one even without the trailing '/'.
        return self.counts if self.counts.endswith("/") else self.counts + "/"
