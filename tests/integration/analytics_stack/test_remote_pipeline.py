"""run-remote-pipeline end to end: this project installed into a venv on a test host over SSH,
`launch-task` run there on generated logs, the output streamed, the exit status obeyed."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from prefect.artifacts import Artifact

from blocks.ssh import SshIdentity
from flows.host_setup import PipelineSetup
from flows.remote_pipeline import (
    RemoteRun,
    parse_task_line,
    run_remote_pipeline,
    task_command,
)
from pipeline.samples import SampleSpec, generate_logs
from pipeline_config.render import render_override_cfg
from remote.ssh import ConnectionLost, RemoteCommandFailed, execute

pytestmark = pytest.mark.slow

SPEC = SampleSpec(start=dt.date(2016, 3, 1), days=2, servers=1, lines_per_file=400, users=50)
INTERVAL = "2016-03-01-2016-03-03"
NO_SUDO = RemoteRun(sudo_user=None, task_timeout_seconds=300)


@pytest.fixture
def node(ssh_host, tmp_path, locked_uv_install):
    """The SSH block for the test host (its key verified), logs, and the node's directories."""
    name = f"ssh-{uuid.uuid4().hex[:8]}"
    SshIdentity(
        username=ssh_host.user, private_key=ssh_host.client_key.read_text(),
        known_hosts=ssh_host.known_hosts_line, port=ssh_host.port,
    ).save(name)  # fmt: skip
    logs = tmp_path / "logs"
    generate_logs(logs, SPEC)
    setup = PipelineSetup(base_dir=str(tmp_path / "tasks"), **locked_uv_install)
    override = {
        "elasticsearch_host": "http://192.168.122.111:9201/",
        "event_logs": {"source": [f"{logs}/"]},
        "warehouse_path": f"{tmp_path / 'warehouse'}/",
    }
    return {"block": name, "host": ssh_host, "tmp": tmp_path, "setup": setup, "override": override}


def local_counts(node) -> str:
    """What this checkout's launch-task prints for the same logs, run here."""
    out = node["tmp"] / "local-counts"
    config = node["tmp"] / "local.cfg"
    config.write_text(f'[event-logs]\nsource = ["{node["tmp"] / "logs"}/"]\n')
    launch = Path(sys.executable).with_name("launch-task")
    subprocess.run(
        [str(launch), "TotalEventsDailyTask", "--local-scheduler", "--interval", INTERVAL,
         "--output-root", str(out), "--additional-config", str(config)],
        check=True, capture_output=True, cwd=node["tmp"], timeout=120,
    )  # fmt: skip
    return (out / "part-00000").read_text()


def test_the_seeds_two_runs_as_one_flow_run(node, caplog):
    counts = node["tmp"] / "counts"
    rows = run_remote_pipeline(
        host=node["host"].address,
        tasks=[
            f"TotalEventsDailyTask --interval {INTERVAL} --output-root {counts} --local-scheduler",
            f"CourseEnrollmentEventsTask --interval {INTERVAL} --local-scheduler",
        ],
        ssh_block=node["block"], setup=node["setup"], override_config=node["override"],
        run=NO_SUDO,
    )  # fmt: skip
    assert [(r["task"], r["exit_status"]) for r in rows] == [
        ("TotalEventsDailyTask", 0),
        ("CourseEnrollmentEventsTask", 0),
    ]
    text = (counts / "part-00000").read_text()
    assert [line.split("\t")[0] for line in text.splitlines()] == ["2016-03-01", "2016-03-02"]
    assert text == local_counts(node)
    events = node["tmp"] / "warehouse" / "course_enrollment_events"
    assert sorted(p.name for p in events.iterdir()) == ["dt=2016-03-01", "dt=2016-03-02"]
    # the remote output reached the Prefect log line by line
    streamed = [r.getMessage() for r in caplog.records if " | " in r.getMessage()]
    assert any("TotalEventsDailyTask" in m for m in streamed), streamed[-5:]
    assert len(streamed) > 3
    home = Path(node["setup"].home)
    assert (home / "override.cfg").exists() and (home / "venv" / "bin" / "launch-task").exists()

    # skip_setup: nothing is checked or installed, the venv is used as it is
    again = run_remote_pipeline(
        host=node["host"].address,
        tasks=[f"TotalEventsDailyTask --interval {INTERVAL} --output-root {counts}2 "
               "--local-scheduler"],
        ssh_block=node["block"], setup=node["setup"], skip_setup=True, run=NO_SUDO,
    )  # fmt: skip
    assert again[0]["exit_status"] == 0
    assert (Path(f"{counts}2") / "part-00000").read_text() == text


def test_a_failing_task_fails_the_flow_and_stops_the_rest(node):
    later = node["tmp"] / "never"
    state = run_remote_pipeline(
        host=node["host"].address,
        tasks=[
            "TotalEventsDailyTask --interval not-an-interval --output-root x --local-scheduler",
            f"TotalEventsDailyTask --interval {INTERVAL} --output-root {later} --local-scheduler",
        ],
        ssh_block=node["block"], setup=node["setup"], override_config=node["override"],
        run=NO_SUDO, return_state=True,
    )  # fmt: skip
    assert state.is_failed()
    with pytest.raises(RemoteCommandFailed, match="exit status [1-9]") as info:
        state.result()
    assert "not-an-interval" in str(info.value)
    assert not later.exists()
    table = Artifact.get("remote-pipeline-analyticstack")
    assert "not run" in table.data and "RemoteCommandFailed" in table.data


def test_detached_runs_log_under_the_log_dir(node):
    """Also: --override-config, a file on the node copied into place (as remote-task does)."""
    counts = node["tmp"] / "detached-counts"
    log_dir = node["tmp"] / "log"
    given = node["tmp"] / "etc" / "override.cfg"
    given.parent.mkdir()
    given.write_text(render_override_cfg(node["override"]))
    rows = run_remote_pipeline(
        host=node["host"].address,
        tasks=[f"TotalEventsDailyTask --interval {INTERVAL} --output-root {counts} "
               "--local-scheduler"],
        ssh_block=node["block"], setup=node["setup"], override_config_path=str(given),
        run=RemoteRun(wait=False, sudo_user=None, log_dir=str(log_dir)),
    )  # fmt: skip
    (row,) = rows
    assert row["log"].startswith(f"{log_dir}/analyticstack/TotalEventsDailyTask-")
    deadline = time.monotonic() + 60
    while not (counts / "_SUCCESS").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (counts / "part-00000").read_text().startswith("2016-03-01\t")
    assert Path(row["log"]).exists()
    assert (Path(node["setup"].home) / "override.cfg").read_text() == given.read_text()


def test_output_streams_as_it_arrives(ssh_host):
    identity = SshIdentity(
        username=ssh_host.user, private_key=ssh_host.client_key.read_text(),
        known_hosts=ssh_host.known_hosts_line, port=ssh_host.port,
    )  # fmt: skip
    seen: list[tuple[float, str]] = []
    client = identity.connect(ssh_host.address)
    try:
        started = time.monotonic()
        result = execute(
            client, "echo one; echo err >&2; sleep 1.5; echo two; exit 3", host="h", timeout=30,
            on_line=lambda line: seen.append((time.monotonic() - started, line)),
        )  # fmt: skip
    finally:
        client.close()
    assert [line for _, line in seen] == ["one", "err", "two"]
    assert seen[0][0] < 1.0 < seen[2][0]  # "one" came before the sleep ended
    assert result.exit_status == 3


def test_task_lines_are_checked_and_quoted():
    assert parse_task_line("TotalEventsDailyTask --source '[\"s3://b/l/\"]'") == [
        "TotalEventsDailyTask", "--source", '["s3://b/l/"]',
    ]  # fmt: skip
    for bad in ("", "--interval 2016", "Task 'unbalanced", "/bin/rm -rf /"):
        with pytest.raises(ValueError, match="task line"):
            parse_task_line(bad)
    command = task_command(["T", "--x", "a b; rm -rf /"], "/var/lib/analytics-tasks/s", "hadoop")
    assert command.startswith("sudo -n -Hu hadoop bash -c ")
    assert "'\"'\"'a b; rm -rf /'\"'\"'" in command


def test_a_cut_connection_is_not_taken_for_an_exit_status(ssh_host):
    identity = SshIdentity(
        username=ssh_host.user, private_key=ssh_host.client_key.read_text(),
        known_hosts=ssh_host.known_hosts_line, port=ssh_host.port,
    )  # fmt: skip
    seen: list[str] = []
    client = identity.connect(ssh_host.address)
    cutter = threading.Timer(0.7, ssh_host.cut_connections)
    try:
        cutter.start()
        with pytest.raises(ConnectionLost, match="lost while running"):
            execute(client, "echo started; sleep 20", host="h", timeout=30,
                           on_line=seen.append)  # fmt: skip
    finally:
        cutter.cancel()
        client.close()
    assert seen == ["started"]
