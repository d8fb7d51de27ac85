"""remote-task --job-flow-name / --job-flow-id on the bed's moto server and sshd: the master of the
newest active cluster of that name is found through the EMR API, its host key verified (the
operator's known_hosts, or cloud-init's fingerprints in the master's console output), and
launch-task runs there for real; an unknown or contradicted key is refused before any login.

moto's masters have made-up DNS names and a console output without cloud-init's block: the tests
point the master's DNS name at the bed's sshd (127.0.0.1) and, where a test needs it, give the
console output the fingerprints cloud-init would print, both in moto's backend in this process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from remote.cli import main
from tests.bed.moto import emr_cluster
from tests.tracking_log import LOG_NAME, TOTAL_EVENTS_ARGS, TRACKING_LOG, expected_daily_counts

pytestmark = pytest.mark.slow

KERNEL_LOG = "[    0.000000] Linux version 6.1.0 (gcc) #1 SMP\n"


@pytest.fixture
def master_at(monkeypatch):
    """`master_at(address)`: every moto EMR master's public DNS name is `address`."""
    from moto.emr.models import Cluster

    def point(address: str) -> None:
        monkeypatch.setattr(Cluster, "master_public_dns_name", property(lambda self: address))

    return point


@pytest.fixture
def console(monkeypatch):
    """`console(text)`: what EC2's GetConsoleOutput answers for every instance."""
    import moto.ec2.responses.general as general

    def set_output(text: str) -> None:
        monkeypatch.setattr(general, "SAMPLE_CONSOLE_OUTPUT", text)

    set_output(KERNEL_LOG)
    return set_output


def cluster(aws, name: str) -> str:
    return emr_cluster(aws.client("emr"), name)


def cloud_init_block(fingerprint_line: str) -> str:
    return (
        f"{KERNEL_LOG}ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
        f"ec2: {fingerprint_line}\nec2: -----END SSH HOST KEY FINGERPRINTS-----\n"
    )


class Node:
    """The bed's sshd as an EMR master: `<base>/automation` with the checkout's virtualenv (so
    launch-task is the real one) and a tracking log in `logs/`."""

    def __init__(self, host, tmp_path: Path) -> None:
        self.host, self.base = host, tmp_path / "tasks"
        self.home = self.base / "automation"
        (self.home / "logs").mkdir(parents=True)
        (self.home / "venv").symlink_to(Path(sys.prefix))
        (self.home / "logs" / LOG_NAME).write_bytes(TRACKING_LOG.read_bytes())
        self.known_hosts = tmp_path / "known_hosts"
        self.known_hosts.write_text("")

    def remote_task(self, *target: str) -> int:
        return main(
            [
                *target,
                "--port",
                str(self.host.port),
                "--user",
                self.host.user,
                "--private-key",
                str(self.host.client_key),
                "--known-hosts",
                str(self.known_hosts),
                "--skip-setup",
                "--wait",
                "--base-dir",
                str(self.base),
                "--remote-name",
                "automation",
                "--sudo-user",
                self.host.user,
                "--task-timeout",
                "300",
                *TOTAL_EVENTS_ARGS,
            ]
        )

    @property
    def counted(self) -> list[str] | None:
        out = self.home / "out" / "part-00000"
        return out.read_text().splitlines() if out.exists() else None


@pytest.fixture
def node(ssh_host, tmp_path, aws, master_at, console):
    master_at(ssh_host.address)
    return Node(ssh_host, tmp_path)


def test_job_flow_name_runs_on_the_newest_active_master_in_known_hosts(node, aws, capsys):
    emr = aws.client("emr")
    gone = cluster(aws, "analytics")
    emr.terminate_job_flows(JobFlowIds=[gone])
    cluster(aws, "analytics")
    cluster(aws, "someone-else")
    newest = cluster(aws, "analytics")
    node.host.write_known_hosts(node.known_hosts)

    assert node.remote_task("--job-flow-name", "analytics") == 0
    err = capsys.readouterr().err
    assert f"EMR cluster {newest} (analytics, WAITING): master {node.host.address}" in err
    assert node.counted == expected_daily_counts()
    assert "exited 0" in err


def test_an_unknown_master_key_is_refused_before_anything_runs(node, aws, capsys):
    cluster(aws, "analytics")  # known_hosts empty, and the console has no fingerprints
    assert node.remote_task("--job-flow-name", "analytics") == 255
    err = capsys.readouterr().err
    assert f"cannot verify the host key of [{node.host.address}]:{node.host.port}" in err
    assert "has no SSH host key fingerprints" in err
    assert f"add the master's line to {node.known_hosts}" in err
    assert "trust_on_first_use" not in err  # a flow's parameter, not remote-task's
    assert node.counted is None
    assert node.known_hosts.read_text() == ""  # nothing recorded


def ssh_keygen_fingerprint(public_key: Path) -> str:
    """`256 SHA256:... comment (ED25519)`: the line cloud-init prints for a host key."""
    done = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(public_key)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_the_masters_console_fingerprints_vouch_for_its_key(node, aws, console, capsys):
    job_flow = cluster(aws, "analytics")
    console(cloud_init_block(ssh_keygen_fingerprint(node.host.public_host_key)))
    assert node.remote_task("--job-flow-id", job_flow) == 0
    err = capsys.readouterr().err
    assert "matches the master's console output (cloud-init)" in err
    assert node.counted == expected_daily_counts()


def test_a_key_the_console_contradicts_is_refused(node, aws, console, tmp_path, capsys):
    job_flow = cluster(aws, "analytics")
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    console(cloud_init_block(ssh_keygen_fingerprint(other.with_suffix(".pub"))))
    assert node.remote_task("--job-flow-id", job_flow) == 255
    assert "does NOT match the fingerprints" in capsys.readouterr().err
    assert node.counted is None


def test_clusters_that_are_gone_or_unknown_are_named(node, aws, capsys):
    gone = cluster(aws, "analytics")
    aws.client("emr").terminate_job_flows(JobFlowIds=[gone])
    assert node.remote_task("--job-flow-id", gone) == 255
    assert f"EMR cluster {gone} (analytics) is TERMINATED" in capsys.readouterr().err
    assert node.remote_task("--job-flow-name", "analytics") == 255
    assert "--job-flow-name 'analytics': no cluster of that name" in capsys.readouterr().err
    assert node.remote_task("--job-flow-id", "j-NOSUCHCLUSTER") == 255
    assert "EMR has no such cluster" in capsys.readouterr().err


def test_one_target_only(node, capsys):
    assert node.remote_task("--host", "127.0.0.1", "--job-flow-name", "analytics") == 2
    assert "give one of --host, --job-flow-id, --job-flow-name (not --host and " in (
        capsys.readouterr().err
    )
