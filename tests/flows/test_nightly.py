"""analytics-import night after night into the same outputs, as the `daily` deployment runs it.

Each night the logs of one more day arrive and the interval grows by a day (interval_start to
today); every night's CSV, events-per-day artifact and returned summary must equal those of one
run from scratch over the same interval, and a re-run of a night must read no log at all.
"""

import asyncio
import json
import shutil

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)

from flows.analytics import LogSelection, analytics_import
from pipeline.samples import SampleSpec, generate_lms_database, generate_logs

SPEC = SampleSpec(days=3, servers=2, lines_per_file=1500, users=200)
LINES_PER_DAY = SPEC.servers * SPEC.lines_per_file
START = "2016-03-01"
NIGHTS = ["2016-03-02", "2016-03-03", "2016-03-04"]  # each night's today: the interval's end
# Read again only the newest day, and only its own files: the cheapest reruns there are.
LOGS = LogSelection(expand_interval="0 days")


@pytest.fixture(scope="module")
def all_logs(tmp_path_factory):
    staging = tmp_path_factory.mktemp("staging")
    generate_logs(staging / "tracking-logs", SPEC)
    generate_lms_database(staging / "edxapp.sqlite", SPEC)
    return staging


def site_with_days(root, all_logs, days):
    """A site directory holding the LMS database and the logs of ``days`` (YYYYMMDD)."""
    root.mkdir(exist_ok=True)
    if not (root / "edxapp.sqlite").exists():
        shutil.copy(all_logs / "edxapp.sqlite", root / "edxapp.sqlite")
    for log in sorted((all_logs / "tracking-logs").rglob("*.gz")):
        if any(day in log.name for day in days):
            target = root / "tracking-logs" / log.relative_to(all_logs / "tracking-logs")
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shutil.copy(log, target)
    return root


async def events_artifact(flow_run_id):
    async with get_client() as client:
        (artifact,) = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                key=ArtifactFilterKey(any_=["events-per-day"]),
            )
        )
        return artifact


def night(site, monkeypatch, today, overwrite_n_days=1):
    """One run as the deployment makes it; returns (summary, CSV text, artifact)."""
    monkeypatch.chdir(site)
    state = analytics_import(
        interval=f"{START}-{today}",
        logs=LOGS,
        overwrite_n_days=overwrite_n_days,
        return_state=True,
    )
    assert state.is_completed(), state.message
    artifact = asyncio.run(events_artifact(state.state_details.flow_run_id))
    return state.result(), (site / "reports" / "total_events.csv").read_text(), artifact


def test_three_nights_into_the_same_outputs_equal_runs_from_scratch(
    tmp_path, monkeypatch, all_logs
):
    nightly = tmp_path / "nightly"
    days_so_far = []
    for number, today in enumerate(NIGHTS):
        days_so_far.append(f"201603{number + 1:02d}")  # the logs of yesterday arrived
        site_with_days(nightly, all_logs, days_so_far)
        summary, csv_text, artifact = night(nightly, monkeypatch, today)

        scratch = site_with_days(tmp_path / f"scratch-{today}", all_logs, days_so_far)
        # from scratch: every day read from the raw logs (the enrollment chain too)
        expected, expected_csv, expected_artifact = night(scratch, monkeypatch, today, 10)

        assert csv_text == expected_csv
        assert len(csv_text.splitlines()) == 1 + len(days_so_far)  # header + one row a day
        assert summary["events_per_day"] == expected["events_per_day"]
        assert summary["events"] == expected["events"] > 0
        assert summary["enrollments"] == expected["enrollments"]
        rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        assert rows == expected["events_per_day"]
        assert artifact.description == expected_artifact.description
        assert f"{START}-{today}" in artifact.description
        # the CSV says what the summary says
        assert csv_text.splitlines()[1:] == [
            f"{row['date']},{row['events']}" for row in reversed(summary["events_per_day"])
        ]
        # Cheap nights: the night reads the new day's files (once for the counts, once for
        # the enrollment events); the run from scratch reads every day's.
        assert summary["lines_read"] == 2 * LINES_PER_DAY
        assert expected["lines_read"] == 2 * LINES_PER_DAY * len(days_so_far)

    # Re-running the last night changes nothing and reads no log.
    csv_file = nightly / "reports" / "total_events.csv"
    stamp = csv_file.stat().st_mtime_ns
    again, again_csv, again_artifact = night(nightly, monkeypatch, NIGHTS[-1])
    assert again["lines_read"] == 0
    assert again_csv == csv_text and csv_file.stat().st_mtime_ns == stamp
    assert again["events_per_day"] == summary["events_per_day"]
    assert json.loads(again_artifact.data) == summary["events_per_day"]


def test_a_missed_night_run_later_fills_its_days_in(tmp_path, monkeypatch, all_logs):
    site = site_with_days(tmp_path / "site", all_logs, ["20160301"])
    first, _, _ = night(site, monkeypatch, NIGHTS[0])
    assert [row["date"] for row in first["events_per_day"]] == ["2016-03-01"]
    # the second night's run never happened; the third finds two new days of logs
    site_with_days(site, all_logs, ["20160301", "20160302", "20160303"])
    third, csv_text, _ = night(site, monkeypatch, NIGHTS[2])
    scratch = site_with_days(tmp_path / "scratch", all_logs, ["20160301", "20160302", "20160303"])
    expected, expected_csv, _ = night(scratch, monkeypatch, NIGHTS[2], 10)
    assert csv_text == expected_csv
    assert third["events_per_day"] == expected["events_per_day"]
    assert [row["date"] for row in third["events_per_day"]] == [
        "2016-03-01",
        "2016-03-02",
        "2016-03-03",
    ]
    # 2016-03-02 had no partition: its logs are read with the last day's for the counts
    # (the enrollment chain re-reads its own overwrite_n_days window only, as upstream's)
    assert third["lines_read"] == (2 + 1) * LINES_PER_DAY
