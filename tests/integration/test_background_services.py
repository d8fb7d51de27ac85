"""`--background` of the bed's and the fake's command lines (tests/bed/background.py).

The README's "Try it without a cloud" relies on it: the command returns once the service
serves, `DIR/pid` names the running service, and `kill $(cat DIR/pid)` stops it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.bed.sshd import process_alive

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=180
    )


def ssh_banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return conn.recv(64)


def stop(pid_file: Path) -> psutil.Process:
    """`kill $(cat pid_file)`; returns the process once it is gone."""
    process = psutil.Process(int(pid_file.read_text()))
    os.kill(process.pid, signal.SIGTERM)
    process.wait(60)
    return process


def test_returns_once_serving_and_kill_stops_the_service(tmp_path):
    directory = tmp_path / "sshd"
    started = run_cli("tests.bed", "sshd", "--dir", str(directory), "--background")
    assert started.returncode == 0, started.stderr
    assert "running in the background as pid" in started.stdout
    (host,) = json.loads((directory / "sshd.json").read_text())["hosts"]
    assert ssh_banner(host["port"]).startswith(b"SSH-")  # serving already
    sshd_pid = int((directory / "host1" / "sshd.pid").read_text())

    process = stop(directory / "pid")
    assert not process_alive(process)
    assert not (directory / "pid").exists()
    assert not psutil.pid_exists(sshd_pid)  # stopped and reaped before the bed exited


def test_a_service_failing_to_start_is_reported_with_its_output(tmp_path):
    directory = tmp_path / "openstack"
    not_a_key = tmp_path / "notes.txt"
    not_a_key.write_text("not a public key\n")
    failed = run_cli(
        "tests.fakes.openstack", "--seed", "bed", "--host-key", str(not_a_key),
        "--dir", str(directory), "--background",
    )  # fmt: skip
    assert failed.returncode == 1
    assert "tests.fakes.openstack did not start" in failed.stderr
    # ssh-keygen's complaint, from the service's own output
    assert f"{not_a_key} is not a public key file" in failed.stderr
    assert not (directory / "pid").exists()


def test_a_missing_host_key_file_is_named():
    refused = run_cli("tests.fakes.openstack", "--seed", "bed", "--host-key", "/no/such.pub")
    assert refused.returncode == 2
    assert "--host-key /no/such.pub: no such file" in refused.stderr


def test_a_directory_in_use_is_refused(tmp_path):
    directory = tmp_path / "sshd"
    assert run_cli("tests.bed", "sshd", "--dir", str(directory), "--background").returncode == 0
    try:
        again = run_cli("tests.bed", "sshd", "--dir", str(directory), "--background")
        assert again.returncode == 1
        assert f"{directory} is in use" in again.stderr
    finally:
        stop(directory / "pid")


def test_background_needs_a_directory():
    refused = run_cli("tests.bed", "mariadb", "--background")
    assert refused.returncode == 2
    assert "--background needs --dir" in refused.stderr
