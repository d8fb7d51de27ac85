"""The backup's pure logic, without services or a Prefect server: parameters, host keys and
addresses, the deployment entry (names and rotation: tests/domain/test_snapshots.py; retries:
tests/tasks/test_openstack.py)."""

from __future__ import annotations

import io
from pathlib import Path

import paramiko
import pytest
import yaml
from pydantic import ValidationError

from blocks.ssh import SshIdentity
from flows.backup import BackupReport, Safety, VolumeSelection, backup_backend_node
from tasks.mariadb import DatabaseStatus
from tasks.ssh import HostFacts, parse_ip_addresses

# -- host facts and SSH identity ---------------------------------------------------------------

IP_OUTPUT = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host noprefixroute \\       valid_lft forever preferred_lft forever
2: ens3    inet 192.168.122.112/24 brd 192.168.122.255 scope global ens3\\       valid_lft forever
2: ens3    inet 192.168.122.110/32 scope global ens3\\       valid_lft forever preferred_lft forever
2: ens3    inet6 fe80::f816:3eff:fe12:3456/64 scope link \\       valid_lft forever
"""


def test_addresses_are_read_from_ip_output():
    addresses = parse_ip_addresses(IP_OUTPUT)

    assert addresses == ("127.0.0.1", "::1", "192.168.122.112", "192.168.122.110",
                         "fe80::f816:3eff:fe12:3456")  # fmt: skip
    facts = HostFacts("192.168.122.112", "backend1", addresses)
    assert facts.has_address("192.168.122.110")  # the VIP keepalived added: primary
    assert facts.has_address("fe80:0:0:0:f816:3eff:fe12:3456")  # compared as addresses
    assert not facts.has_address("192.168.122.11")  # not a substring match


def identity(**fields) -> SshIdentity:
    key = io.StringIO()
    paramiko.RSAKey.generate(1024).write_private_key(key)
    defaults = {"username": "ubuntu", "private_key": key.getvalue(), "known_hosts": ""}
    return SshIdentity(**{**defaults, **fields})


HOST_KEY = paramiko.RSAKey.generate(1024)


def test_known_hosts_lines_comments_and_hashed_names_are_trusted():
    hashed = paramiko.HostKeys.hash_host("[10.0.0.7]:2222")
    text = (
        "# verified 2026-11-02 against the console log\n\n"
        f"10.0.0.5,backend1 ssh-rsa {HOST_KEY.get_base64()}\n"
        f"{hashed} ssh-rsa {HOST_KEY.get_base64()}\n"
    )

    keys = identity(known_hosts=text).host_keys()

    for name in ("10.0.0.5", "backend1", "[10.0.0.7]:2222"):
        assert keys.lookup(name)["ssh-rsa"] == HOST_KEY
    assert keys.lookup("10.0.0.6") is None


def test_known_hosts_markers_are_refused_rather_than_ignored():
    text = f"@revoked 10.0.0.5 ssh-rsa {HOST_KEY.get_base64()}\n"

    with pytest.raises(ValueError, match="markers"):
        identity(known_hosts=text).host_keys()


def test_an_encrypted_key_needs_its_passphrase_and_errors_never_quote_the_key():
    buffer = io.StringIO()
    paramiko.RSAKey.generate(1024).write_private_key(buffer, password="correct horse")
    text = buffer.getvalue()

    with pytest.raises(ValueError, match="encrypted") as missing:
        identity(private_key=text).load_private_key()
    assert identity(private_key=text, passphrase="correct horse").load_private_key()
    with pytest.raises(ValueError, match="not an ed25519") as garbage:
        identity(private_key="not a key at all").load_private_key()
    for error in (missing.value, garbage.value):
        assert text.splitlines()[2] not in str(error) and "not a key at all" not in str(error)


# -- parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"keep": 0},
        {"patterns": []},
        {"patterns": ["mysql_data", "mysql_data"]},
        {"patterns": ["mysql data; rm -rf /"]},
    ],  # fmt: skip
)
def test_volume_selection_rejects_bad_values(fields):
    with pytest.raises(ValidationError):
        VolumeSelection(**fields)


def test_the_vip_must_be_an_address():
    with pytest.raises(ValidationError):
        Safety(database_vip="the-vip")


def test_galera_health_needs_synced_primary_ready_and_the_cluster_size():
    healthy = DatabaseStatus("h", "backend1", "10.11", True, 3, "Synced", "Primary", True)
    assert healthy.problems(3) == []
    assert DatabaseStatus("h", "b", "10.11", False).problems(3) == []  # not Galera
    shrunk = DatabaseStatus("h", "b", "10.11", True, 2, "Donor/Desynced", "non-Primary", False)
    problems = " ".join(shrunk.problems(3))
    for fragment in ("Donor/Desynced", "non-Primary", "wsrep_ready", "was 3"):
        assert fragment in problems


def test_the_report_of_a_run_that_never_started_still_has_a_row_per_volume():
    report = BackupReport("backend1", "lock", 3, ["mysql_data", "mongodb_data"])

    rows = report.table()

    assert [row["pattern"] for row in rows] == ["mysql_data", "mongodb_data"]
    assert all(row["status"] == "not created" and row["write_blocked_s"] is None for row in rows)
    assert "writes blocked: none" in report.summary()


# -- the deployment ----------------------------------------------------------------------------


def test_nightly_backup_deployment_runs_at_0105_alone():
    prefect_yaml = Path(__file__).resolve().parents[2] / "prefect.yaml"
    deployments = {d["name"]: d for d in yaml.safe_load(prefect_yaml.read_text())["deployments"]}
    nightly = deployments["nightly-backup"]

    assert nightly["entrypoint"] == "flows/backup.py:backup_backend_node"
    assert [(s["cron"], bool(s["timezone"])) for s in nightly["schedules"]] == [("5 1 * * *", True)]
    assert nightly["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    backup_backend_node.validate_parameters(nightly["parameters"])
    assert nightly["parameters"]["safety"]["database_vip"]
