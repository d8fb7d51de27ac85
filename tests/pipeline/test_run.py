"""PipelineRun: each run sees its own config, records and failures; the process sees none."""

import json
import os

from pipeline import config
from pipeline.core.selection import MissingInputError
from pipeline.run import PipelineRun
from pipeline.total_events import TotalEventsDailyTask, TotalEventsReportWorkflow

GZ_PATTERN = r".*tracking.log-(?P<date>\d{8}).*\.gz"
GZ_JSON = json.dumps(GZ_PATTERN)[1:-1]


def test_each_run_reads_its_own_overrides_and_the_process_none_of_them(tmp_path):
    with (
        PipelineRun({"hive": {"warehouse_path": "a/"}}) as a,
        PipelineRun({"hive": {"warehouse_path": "b/"}}) as b,
    ):
        assert (a.setting("hive", "warehouse_path"), b.setting("hive", "warehouse_path")) == (
            "a/",
            "b/",
        )
        outside = config.get("hive", "warehouse_path")
        assert outside not in ("a/", "b/")
        given = {"interval": _interval(), "counts": "c/", "report": "r.csv", "source": ["logs/"]}
        tasks = [run.task(TotalEventsReportWorkflow, **given) for run in (a, b)]
        assert [t.warehouse_path for t in tasks] == ["a/", "b/"]  # parameters from the run's config
        assert tasks[0].expand_interval == "2 days"  # the chain's embedded defaults beneath


def test_a_failed_build_returns_its_failures_with_their_exceptions(tmp_path):
    missing = str(tmp_path / "no-logs") + "/"
    overrides = {
        "event-logs": {"source": json.dumps([missing]), "pattern": json.dumps([GZ_PATTERN])}
    }
    with PipelineRun(overrides) as run:
        task = run.task(TotalEventsDailyTask, interval=_interval(), output_root=str(tmp_path / "o"))
        outcome = run.build(task)
        records = run.records()
        report_dir = run.report_dir
    assert not outcome.succeeded
    [(message, exc)] = outcome.failures
    assert isinstance(exc, MissingInputError) and message.startswith("TotalEventsDailyTask: ")
    assert not outcome.transient
    assert missing in outcome.describe_failure()
    assert [r["task"] for r in records if "failed" in r] == ["TotalEventsDailyTask"]
    assert not (tmp_path / "o" / "_SUCCESS").exists()
    assert not os.path.exists(report_dir)  # the run's own directory, removed


def test_a_run_that_succeeds_records_what_it_read(tmp_path):
    import gzip

    logs = tmp_path / "logs"
    logs.mkdir()
    line = json.dumps({"time": "2016-03-01T10:00:00+00:00", "event_type": "x"})
    (logs / "tracking.log-20160301.gz").write_bytes(gzip.compress(((line + "\n") * 3).encode()))
    overrides = {
        "event-logs": {"source": json.dumps([str(logs) + "/"]), "pattern": json.dumps([GZ_PATTERN])}
    }
    seen = []
    with PipelineRun(overrides, progress=seen.append) as run:
        task = run.task(TotalEventsDailyTask, interval=_interval(), output_root=str(tmp_path / "o"))
        outcome = run.build(task)
        [record] = run.records()
    assert outcome.succeeded and outcome.failures == []
    assert (record["task"], record["lines"], record["events"]) == ("TotalEventsDailyTask", 3, 3)
    assert seen and seen[-1].fraction == 1.0  # the run's progress listener was called
    assert (tmp_path / "o" / "part-00000").read_text() == "2016-03-01\t3\n"


def _interval():
    from luigi.date_interval import Custom

    return Custom.parse("2016-03-01-2016-03-02")
