"""The exact steps run-pipeline-on-emr sends to EMR, run for real on this machine's Spark.

The flow's own functions build the steps (`domain.emr.step_definitions` over the task lines as
the flow parses them) and the override.cfg (`emr_override_cfg` over the site's rendered
settings); only the master differs: `local[2]` instead of YARN. Each step's `command-runner.jar`
arguments run as a subprocess, in order, from the directory standing in for the node's
`/home/hadoop/edx-ops-flows` (its `venv/bin/launch-task` is this checkout's). Upstream's
acceptance log and LMS rows go in; upstream's expected tables and summary must come out, and
the daily counts must be the log's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from domain.emr import SparkSettings, emr_override_cfg, step_definitions
from pipeline_config.render import OverrideSettings, render_override_cfg
from remote.run import parse_task_line
from tests.lms import load_lms_sqlite
from tests.pipeline.conftest import Workspace
from tests.pipeline.test_acceptance import INTERVAL, check_sqlite, check_summary, prepare
from tests.tracking_log import expected_daily_counts

pytestmark = pytest.mark.slow

TASK_LINES = [
    f"TotalEventsDailyTask --local-scheduler --interval {INTERVAL} --output-root counts/",
    f"ImportEnrollmentsIntoMysql --local-scheduler --interval {INTERVAL} --overwrite-n-days 7",
]


def node_home(tmp_path: Path) -> Path:
    """A node's home as the bootstrap leaves it: the logs, the LMS rows, override.cfg, venv."""
    home = tmp_path / "edx-ops-flows"
    workspace = Workspace(home)
    prepare(workspace)  # upstream's log as logs/FakeServerGroup/tracking.log-20140730.gz
    load_lms_sqlite(home / "edxapp.sqlite")
    site = OverrideSettings(
        elasticsearch_host="http://127.0.0.1:9201/",
        event_logs={"source": [f"{workspace.logs}/"]},
        warehouse_path=f"{home}/warehouse/",
    )
    spark = SparkSettings(conf=["spark.ui.enabled=false"])
    (home / "override.cfg").write_text(
        emr_override_cfg(
            render_override_cfg(site), spark, spark_master="local[2]", pyspark_python=None
        )  # fmt: skip
    )
    venv_bin = home / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "launch-task").symlink_to(Path(sys.executable).with_name("launch-task"))
    return home


def test_the_flows_steps_run_on_spark_local_and_write_upstreams_results(tmp_path):
    home = node_home(tmp_path)
    steps = step_definitions([parse_task_line(line) for line in TASK_LINES], home=str(home),
                             spark_home=None)  # fmt: skip
    assert [step["HadoopJarStep"]["Jar"] for step in steps] == ["command-runner.jar"] * 2
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("LUIGI_", "SPARK_"))}
    for step in steps:
        done = subprocess.run(step["HadoopJarStep"]["Args"], cwd=tmp_path, env=environment,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, (step["Name"], done.stderr[-4000:])
        # the override.cfg's engine and master were the ones used
        assert "Spark session started in" in done.stderr, done.stderr[-4000:]
        assert "(master local[2], Spark " in done.stderr, done.stderr[-4000:]
    counts = (home / "counts" / "part-00000").read_text().splitlines()
    assert counts == expected_daily_counts()
    assert (home / "counts" / "_SUCCESS").exists()
    check_sqlite(Workspace(home))
    check_summary(Workspace(home))
