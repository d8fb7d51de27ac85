"""The backup's pure logic, without services or a Prefect server: names, rotation, retries,
parameters, host keys and addresses, the deployment entry."""

from __future__ import annotations

import datetime as dt
import io
import warnings
from pathlib import Path

import paramiko
import pytest
import yaml
from keystoneauth1 import exceptions as ksa
from openstack import exceptions as sdk
from openstack.warnings import RemovedInSDK50Warning
from prefect.states import Completed, Failed
from pydantic import ValidationError

from blocks.ssh import SshIdentity
from flows.backup import BackupReport, Safety, VolumeSelection, backup_backend_node
from tasks.database import DatabaseStatus
from tasks.openstack import (
    SnapshotInfo,
    is_transient_cloud_error,
    parse_snapshot_name,
    plan_rotation,
    retry_on_transient_cloud_error,
    snapshot_name,
)
from tasks.ssh import HostFacts, parse_ip_addresses

SERVER = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
OTHER_SERVER = "11111111-2222-3333-4444-555555555555"
VOLUME = "vol-mysql"


def snap(name, status="available", volume=VOLUME, snap_id=None, created_at=""):
    return SnapshotInfo(snap_id or name, name, volume, status, created_at)


def backup(day: int, pattern="mysql_data", server=SERVER, **kwargs):
    return snap(f"{pattern}-{server}-202601{day:02d}-010500", **kwargs)


# -- naming ------------------------------------------------------------------------------------


def test_snapshot_name_follows_the_original_scheme_in_utc():
    when = dt.datetime(2026, 3, 1, 1, 5, 9, tzinfo=dt.timezone(dt.timedelta(hours=2)))

    assert snapshot_name("mysql_data", SERVER, when) == f"mysql_data-{SERVER}-20260228-230509"
    assert parse_snapshot_name(f"mysql_data-{SERVER}-20260228-230509", "mysql_data") == (
        dt.datetime(2026, 2, 28, 23, 5, 9, tzinfo=dt.UTC)
    )


@pytest.mark.parametrize(
    "name",
    [
        f"mongodb_data-{SERVER}-20260101-010500",  # another pattern
        "mysql_data-backend1-20260101-010500",  # no server UUID
        f"mysql_data-{SERVER}-20261399-010500",  # not a date
        f"mysql_data-{SERVER}-20260101-010500-copy",
        f"old-mysql_data-{SERVER}-20260101-010500",
        "manual-before-upgrade",
        "",
    ],
)
def test_names_outside_the_scheme_are_not_backups(name):
    assert parse_snapshot_name(name, "mysql_data") is None


def test_pattern_is_literal_not_a_regex():
    assert parse_snapshot_name(f"mysqlXdata-{SERVER}-20260101-010500", "mysql.data") is None


# -- rotation ----------------------------------------------------------------------------------


def test_rotation_keeps_the_newest_including_the_new_one_and_deletes_oldest_first():
    old = [backup(day) for day in (4, 1, 3, 2)]
    new = backup(20)

    plan = plan_rotation(old + [new], volume_id=VOLUME, pattern="mysql_data", keep=3,
                         new_snapshot_ids=[new.id])  # fmt: skip

    assert [s.id for s in plan.keep] == [new.id, backup(4).id, backup(3).id]
    assert [s.id for s in plan.delete] == [backup(1).id, backup(2).id]


def test_keep_one_deletes_every_earlier_backup():
    new = backup(20)
    plan = plan_rotation([backup(1), backup(2), new], volume_id=VOLUME, pattern="mysql_data",
                         keep=1, new_snapshot_ids=[new.id])  # fmt: skip

    assert plan.keep == (new,) and len(plan.delete) == 2


def test_fewer_backups_than_keep_deletes_nothing():
    plan = plan_rotation([backup(1), backup(2)], volume_id=VOLUME, pattern="mysql_data", keep=3)

    assert plan.delete == () and len(plan.keep) == 2


def test_rotation_never_touches_other_snapshots():
    others = [
        backup(1, status="error"),
        backup(2, status="creating"),
        backup(3, volume="vol-other"),
        backup(4, pattern="mongodb_data"),
        snap("manual-before-upgrade"),
        snap("mysql_data-backend1-20260105-010500"),
    ]
    new = backup(20)

    plan = plan_rotation(others + [new], volume_id=VOLUME, pattern="mysql_data", keep=1,
                         new_snapshot_ids=[new.id])  # fmt: skip

    assert plan.delete == ()
    assert [s.id for s in plan.ignored] == [s.id for s in others]


def test_backups_named_after_a_previous_server_rotate_with_the_volume():
    new = backup(20)
    plan = plan_rotation([backup(1, server=OTHER_SERVER), new], volume_id=VOLUME,
                         pattern="mysql_data", keep=1, new_snapshot_ids=[new.id])  # fmt: skip

    assert [s.id for s in plan.delete] == [backup(1, server=OTHER_SERVER).id]


def test_the_new_snapshot_is_kept_even_if_its_clock_was_behind():
    new = backup(1, snap_id="new")
    plan = plan_rotation([backup(5), backup(6), new], volume_id=VOLUME, pattern="mysql_data",
                         keep=2, new_snapshot_ids=["new"])  # fmt: skip

    assert [s.id for s in plan.keep] == ["new", backup(6).id]
    assert [s.id for s in plan.delete] == [backup(5).id]


def test_keep_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        plan_rotation([], volume_id=VOLUME, pattern="mysql_data", keep=0)


# -- which cloud errors are retried ------------------------------------------------------------


# openstacksdk deprecates http_status= (a real error takes it from the response); these
# errors are built at collection time, where pytest marks do not filter warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore", RemovedInSDK50Warning)
    CLOUD_ERRORS = [
        (sdk.HttpException("x", http_status=503), True),
        (sdk.HttpException("x", http_status=500), True),
        (sdk.HttpException("x", http_status=429), True),
        (sdk.BadRequestException("x", http_status=400), False),
        (sdk.NotFoundException("x", http_status=404), False),
        (ksa.ServiceUnavailable(http_status=503), True),
        (ksa.Unauthorized(http_status=401), False),
        (ksa.ConnectFailure("refused"), True),
        (ksa.ConnectTimeout("slow"), True),
        (ksa.SSLError("bad certificate"), False),
        (sdk.ResourceTimeout("waited"), False),
        (ValueError("bug"), False),
    ]


@pytest.mark.parametrize(("error", "transient"), CLOUD_ERRORS)
def test_only_transient_cloud_errors_are_retried(error, transient):
    assert is_transient_cloud_error(error) is transient
    assert retry_on_transient_cloud_error(None, None, Failed(data=error)) is transient


def test_an_unreachable_keystone_is_transient_through_its_cause():
    try:
        try:
            raise ksa.ConnectFailure("Unable to establish connection")
        except ksa.ConnectFailure as cause:
            raise ksa.DiscoveryFailure("Could not find versioned identity endpoints") from cause
    except ksa.DiscoveryFailure as error:
        assert is_transient_cloud_error(error)


def test_a_completed_state_is_not_retried():
    assert retry_on_transient_cloud_error(None, None, Completed(data=1)) is False


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
