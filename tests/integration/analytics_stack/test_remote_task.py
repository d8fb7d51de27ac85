"""`remote-task` end to end: `scripts/remote-task` of this checkout, run as a subprocess
against the bed's sshd the way Jenkins jobs and the seed run it.

The node, its logs and the install options come from test_remote_pipeline's `node` fixture, so
both ways of running remote tasks install the same way."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline_config.render import render_override_cfg
from tests.integration.analytics_stack.test_remote_pipeline import (
    INTERVAL,
    local_counts,
    node,  # noqa: F401 - the fixture
)

pytestmark = pytest.mark.slow

REMOTE_TASK = Path(__file__).resolve().parents[3] / "scripts" / "remote-task"  # from the checkout
LAUNCH_TASK = Path(sys.executable).with_name("launch-task")


def remote_task(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REMOTE_TASK), *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def login_args(node, known_hosts: Path) -> list[str]:  # noqa: F811
    """--host, --user, --private-key, --known-hosts, and the node's layout and installer (the
    fixture's PipelineSetup); the sudo user is the login, so no sudo is needed."""
    host, setup = node["host"], node["setup"]
    args = [
        "--host", f"{host.address}:{host.port}", "--user", host.user,
        "--private-key", str(host.client_key), "--known-hosts", str(known_hosts),
        "--sudo-user", host.user, "--remote-name", setup.remote_name,
        "--base-dir", setup.base_dir, "--installer", setup.installer, "--python", setup.python,
    ]  # fmt: skip
    return args + [f"--install-option={option}" for option in setup.install_options]


def counts_task(output_root: Path) -> list[str]:
    return ["TotalEventsDailyTask", "--interval", INTERVAL, "--output-root", str(output_root),
            "--local-scheduler"]  # fmt: skip


def fingerprint(host) -> str:
    """The host key's SHA256 fingerprint, as OpenSSH's ssh-keygen prints it."""
    pub = host.host_key.with_name(host.host_key.name + ".pub")
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return out.split()[1]


def logins(host) -> int:
    return host.log_file.read_text(errors="replace").count("Accepted publickey")


def test_an_unknown_or_changed_host_key_is_refused_before_anything_runs(node):  # noqa: F811
    host, tmp = node["host"], node["tmp"]
    override = tmp / "override.cfg"
    override.write_text(render_override_cfg(node["override"]))
    known_hosts = tmp / "known_hosts"
    other = f"[{host.address}]:{host.port + 1} {host.known_hosts_line.split(' ', 1)[1]}\n"
    known_hosts.write_text(other)  # a key for another port only: this host is unknown
    run = [*login_args(node, known_hosts), "--override-config", str(override), "--wait",
           *counts_task(tmp / "counts")]  # fmt: skip

    unknown = remote_task(*run, cwd=tmp)

    assert unknown.returncode == 255, unknown.stderr
    assert f"[{host.address}]:{host.port} is not in known_hosts ({known_hosts})" in unknown.stderr
    assert fingerprint(host) in unknown.stderr
    assert f"ssh-keyscan -p {host.port} {host.address} | ssh-keygen -lf -" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert not Path(node["setup"].base_dir).exists()  # nothing was created on the node
    assert logins(host) == 0  # not even a login was attempted

    old_line = host.known_hosts_line
    host.replace_host_key()
    known_hosts.write_text(old_line + "\n")

    changed = remote_task(*run, cwd=tmp)

    assert changed.returncode == 255, changed.stderr
    assert "does not match known_hosts" in changed.stderr
    assert fingerprint(host) in changed.stderr
    assert not Path(node["setup"].base_dir).exists()
    assert logins(host) == 0


def test_a_run_with_setup_then_a_skip_setup_wait_run(node):  # noqa: F811
    """The seed's two remote-task calls, with an OpenSSH-hashed known_hosts file."""
    host, tmp, setup = node["host"], node["tmp"], node["setup"]
    known_hosts = host.write_known_hosts(tmp / "known_hosts")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known_hosts)], check=True,
                   capture_output=True)  # fmt: skip
    assert known_hosts.read_text().startswith("|1|")
    override = tmp / "override.cfg"
    override.write_text(render_override_cfg(node["override"]))
    counts, logs = tmp / "counts", tmp / "jenkins-logs"

    first = remote_task(
        *login_args(node, known_hosts), "--override-config", str(override), "--wait",
        "--log-path", str(logs), *counts_task(counts), cwd=tmp,
    )  # fmt: skip

    assert first.returncode == 0, first.stderr + first.stdout
    assert logins(host) > 0  # what the refusal test counts does show logins
    home = Path(setup.home)
    assert (home / "venv" / "bin" / "launch-task").exists()
    assert (home / "override.cfg").read_text() == override.read_text()
    assert "setup changed" in first.stderr
    assert f"{host.address}: bash -c " in first.stderr  # the login is the sudo user: no sudo
    text = (counts / "part-00000").read_text()
    assert text == local_counts(node)
    assert "TotalEventsDailyTask" in first.stdout  # launch-task's own output, streamed here
    (saved,) = logs.iterdir()
    assert saved.read_text().splitlines() == first.stdout.splitlines()

    second = remote_task(
        *login_args(node, known_hosts), "--override-config", str(override), "--skip-setup",
        "--wait", *counts_task(tmp / "counts2"), cwd=tmp,
    )  # fmt: skip

    assert second.returncode == 0, second.stderr + second.stdout
    assert "remote-task: setup " not in second.stderr
    assert "override.cfg ok" in second.stderr  # unchanged, so not rewritten
    assert (tmp / "counts2" / "part-00000").read_text() == text


def test_a_failing_tasks_exit_status_is_passed_through(node):  # noqa: F811
    tmp = node["tmp"]
    known_hosts = node["host"].write_known_hosts(tmp / "known_hosts")
    failing = ["TotalEventsDailyTask", "--interval", INTERVAL, "--source",
               f'["{tmp / "logs"}/"]', "--output-root", "hdfs://localhost:9000/output/",
               "--local-scheduler"]  # fmt: skip
    here = subprocess.run([str(LAUNCH_TASK), *failing], capture_output=True, text=True,
                          cwd=tmp, timeout=120)  # fmt: skip
    assert here.returncode not in (0, 1, 2, 255), here.stderr  # a status of launch-task's own

    there = remote_task(*login_args(node, known_hosts), "--wait", *failing, cwd=tmp)

    assert there.returncode == here.returncode, there.stderr + there.stdout
    assert "hdfs://localhost:9000/output/" in there.stdout
    assert f"exited {here.returncode}" in there.stderr


def test_without_wait_the_task_runs_detached_and_logs_on_the_node(node):  # noqa: F811
    tmp = node["tmp"]
    known_hosts = node["host"].write_known_hosts(tmp / "known_hosts")
    override = tmp / "override.cfg"
    override.write_text(render_override_cfg(node["override"]))
    counts, log_dir = tmp / "detached", tmp / "remote-logs"

    started = remote_task(
        *login_args(node, known_hosts), "--override-config", str(override),
        "--remote-log-dir", str(log_dir), *counts_task(counts), cwd=tmp,
    )  # fmt: skip

    assert started.returncode == 0, started.stderr
    assert "started TotalEventsDailyTask" in started.stderr
    (log,) = (log_dir / node["setup"].remote_name).iterdir()
    deadline = time.monotonic() + 120
    while not (counts / "_SUCCESS").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (counts / "part-00000").read_text() == local_counts(node)
    assert log.name.startswith("TotalEventsDailyTask-")


def test_command_line_errors_are_named_before_connecting(node, tmp_path):  # noqa: F811
    known_hosts = tmp_path / "known_hosts"
    base = login_args(node, known_hosts)
    for args, message in [
        ([], "no task given"),
        (["--wait", "--interval", "2016"], "expected a task name"),
        (["--override-config", str(tmp_path / "nope.cfg"), "T"], "nope.cfg: no such file"),
        (["--remote-name", "../x", "T"], "remote_name '../x'"),
        (
            ["--job-flow-name", "c", "T"],
            "give one of --host, --job-flow-id, --job-flow-name (not --host and --job-flow-name)",
        ),
        (["--port", "2222", "T"], "--port 2222 goes with --job-flow-*: give --host HOST:PORT"),
        (["--region", "eu-west-1", "T"], "--region eu-west-1 goes with --job-flow-* (EMR)"),
    ]:
        result = remote_task(*base, *args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
    bad_host = remote_task("--host", "h:port", "T", cwd=tmp_path)
    assert bad_host.returncode == 2 and "--host 'h:port'" in bad_host.stderr
    assert logins(node["host"]) == 0
