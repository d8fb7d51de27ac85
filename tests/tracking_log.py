"""Upstream's tracking log as a node's launch-task reads it in the EMR and wheel tests: the
arguments of a TotalEventsDailyTask over `logs/` and the per-day counts it must write."""

from __future__ import annotations

import collections
import json
from pathlib import Path

TRACKING_LOG = Path(__file__).parent / "data/upstream/input/enrollment_trends_tracking.log"
#: Where the tests put it, under a directory `logs/` of the task's working directory.
LOG_NAME = "tracking.log-20140730"
#: launch-task's arguments: TotalEventsDailyTask over `logs/`, output in `out/`.
TOTAL_EVENTS_ARGS = [
    "TotalEventsDailyTask", "--local-scheduler", "--interval", "2014-07-30-2014-08-07",
    "--output-root", "out/", "--source", '["logs/"]',
    "--pattern", json.dumps([r".*tracking.log-(?P<date>\d{8})$"]),
]  # fmt: skip


def expected_daily_counts() -> list[str]:
    """`out/part-00000`'s lines: `YYYY-MM-DD<TAB>events` per day of the log."""
    per_day = collections.Counter(
        json.loads(line)["time"][:10] for line in TRACKING_LOG.read_text().splitlines()
    )
    return [f"{day}\t{count}" for day, count in sorted(per_day.items())]
