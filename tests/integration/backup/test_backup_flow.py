"""backup-backend-node on real services: sshd + MariaDB (+ single-node Galera) + the OpenStack fake.

Each test seeds a cloud with a backend server (reached over SSH at 127.0.0.1), its two data
volumes, three earlier backup snapshots of each, and snapshots rotation must never touch. Faults
come from the bed (cut connections, failing commands, a MariaDB that cannot start) and the fake
(5xx answers, snapshots that fail or never finish).
"""

from __future__ import annotations

import json
import shlex
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect import get_client
from prefect.artifacts import Artifact
from prefect.concurrency.sync import concurrency

from blocks.database import MySqlDatabase
from blocks.openstack import OpenStackCloud
from blocks.ssh import SshIdentity
from flows.backup import (
    Access,
    Consistency,
    Safety,
    Timeouts,
    VolumeSelection,
    backup_backend_node,
)
from tasks.openstack import parse_snapshot_name
from tests.bed.mariadb import TEST_PASSWORD, TEST_USER, MariaDBServer
from tests.bed.sshd import SshHost
from tests.fakes.openstack import OpenStackFake, Snapshot, Volume

pytestmark = [
    pytest.mark.slow,
    # openstacksdk's own deprecation notices are not ours
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),
]

PATTERNS = ["mysql_data", "mongodb_data"]
ABSENT_VIP = "192.0.2.10"  # TEST-NET-1: on no interface of this machine
FAST = Timeouts(
    command_seconds=30, stop_seconds=30, start_seconds=30, lock_wait_seconds=5,
    max_write_block_seconds=60, snapshot_seconds=5, delete_seconds=5, health_seconds=5,
    poll_interval_seconds=0.05, node_lock_wait_seconds=10, cloud_retries=2,
    cloud_retry_delay_seconds=0.05,
)  # fmt: skip


@dataclass
class Site:
    """One backend node as the flow sees it: cloud records, SSH host, database, blocks."""

    fake: OpenStackFake
    server_id: str
    server_name: str
    volumes: dict[str, Volume]  # pattern -> volume
    old: dict[str, list[Snapshot]]  # pattern -> earlier backups, oldest first
    others: list[Snapshot]  # snapshots rotation must never touch
    host: SshHost
    db: MariaDBServer
    access: Access
    probe_dir: Path

    def snapshots(self, pattern: str | None = None) -> list[Snapshot]:
        found = self.fake.snapshots()
        if pattern is not None:
            found = [s for s in found if s.volume_id == self.volumes[pattern].id]
        return found

    def new_snapshots(self, pattern: str) -> list[Snapshot]:
        known = {s.id for s in self.old[pattern] + self.others}
        return [s for s in self.snapshots(pattern) if s.id not in known]

    @property
    def record_path(self) -> Path:
        return self.probe_dir.parent / "node-record" / "backup-state.json"

    def consistency(self, mode: str, **overrides) -> Consistency:
        commands = {
            "stop_command": self.db.control_command("stop"),
            "start_command": self.db.control_command("start"),
            # the node's record of a run's changes: in the test's directory, not in the login's
            # real home (the bed's sshd logs in the current user)
            "record_path": str(self.record_path),
        }
        return Consistency(mode=mode, **{**commands, **overrides})

    def in_block(self, command: str) -> str:
        """A sync command that also runs `command`, but only on its second call: the flow syncs
        once before blocking writes and once inside the write block."""
        marker = self.probe_dir / "presynced"
        return f"sync; if [ -e {marker} ]; then {command}; else touch {marker}; fi"

    def root_sql_command(self, sql: str) -> str:
        """A shell command running `sql` as root over the socket (for probes inside the run)."""
        return shlex.join(
            ["mariadb", "--no-defaults", f"--socket={self.db.socket}", "-uroot", "-N", "-e", sql]
        )


def seed_cloud(fake: OpenStackFake, name: str = "backend1") -> tuple[str, dict, dict, list]:
    server = fake.add_server(name, addresses={"management": ["127.0.0.1"]})
    fake.add_volume("multi-root-6f2a9c", attached_to=server.id)  # matches no pattern
    volumes = {
        pattern: fake.add_volume(f"multi-{pattern}-{uuid.uuid4().hex[:12]}", attached_to=server.id)
        for pattern in PATTERNS
    }
    old = {
        pattern: [
            fake.add_snapshot(
                volume.id,
                f"{pattern}-{server.id}-2026010{day}-010500",
                created_at=f"2026-01-0{day}T01:05:00.000000",
            )  # fmt: skip
            for day in (1, 2, 3)
        ]
        for pattern, volume in volumes.items()
    }
    mysql = volumes["mysql_data"].id
    others = [
        fake.add_snapshot(mysql, "manual-before-upgrade", created_at="2025-06-01T00:00:00"),
        fake.add_snapshot(mysql, f"mysql_data-{server.id}-20250101-010500", status="error"),
        fake.add_snapshot(mysql, f"mongodb_data-{server.id}-20250102-010500"),  # other pattern
        fake.add_snapshot(mysql, "mysql_data-backend1-20250103-010500"),  # no server UUID
    ]
    return server.id, volumes, old, others


@pytest.fixture
def make_site(openstack_fake, tmp_path, concurrency_limit):
    """`make_site(host, db)`: a cloud seeded for `host`, blocks saved, the node's limit made."""

    def make(host: SshHost, db: MariaDBServer, name: str = "backend1") -> Site:
        server_id, volumes, old, others = seed_cloud(openstack_fake, name)
        suffix = uuid.uuid4().hex[:8]
        OpenStackCloud(**openstack_fake.credentials).save(f"cloud-{suffix}")
        SshIdentity(
            username=host.user, private_key=host.client_key.read_text(),
            known_hosts=host.known_hosts_line, port=host.port,
        ).save(f"ssh-{suffix}")  # fmt: skip
        MySqlDatabase(
            host="203.0.113.7",  # never used: the flow connects to the node's own address
            port=db.port, username=TEST_USER, password=TEST_PASSWORD, database="mysql",
        ).save(f"db-{suffix}")  # fmt: skip
        concurrency_limit(f"backup-{name}")
        access = Access(
            openstack_block=f"cloud-{suffix}",
            ssh_block=f"ssh-{suffix}",
            database_block=f"db-{suffix}",
        )
        db.write_control_script()
        probe_dir = tmp_path / "probes"
        probe_dir.mkdir(exist_ok=True)
        return Site(openstack_fake, server_id, name, volumes, old, others, host, db, access,
                    probe_dir)  # fmt: skip

    return make


@pytest.fixture
def site(make_site, mariadb_via_ssh) -> Site:
    """A plain MariaDB backend node."""
    return make_site(mariadb_via_ssh.host, mariadb_via_ssh.server)


@pytest.fixture
def galera_site(make_site, ssh_host, galera) -> Site:
    """A Galera backend node (single-node cluster)."""
    return make_site(ssh_host, galera)


def run_backup(site: Site, mode: str = "lock", *, keep: int = 3, consistency=None, **options):
    """Run the flow against `site`; returns the final state (never raises)."""
    options.setdefault("safety", Safety(database_vip=ABSENT_VIP))
    options.setdefault("timeouts", FAST)
    return backup_backend_node(
        node=options.pop("node", site.server_name),
        volumes=VolumeSelection(patterns=PATTERNS, keep=keep),
        consistency=consistency or site.consistency(mode),
        access=options.pop("access", site.access),
        return_state=True,
        **options,
    )


def assert_failed(state, *fragments: str) -> None:
    assert state.is_failed(), f"expected Failed, got {state.type}: {state.message}"
    for fragment in fragments:
        assert fragment in state.message, f"{fragment!r} not in: {state.message}"


def assert_database_healthy(site: Site) -> None:
    """Running, answering, writable at once (no lock left), and on Galera Synced again."""
    assert site.db.is_running(), "MariaDB is not running"
    conn = site.db.connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SET SESSION lock_wait_timeout = 1")
            cursor.execute("CREATE DATABASE IF NOT EXISTS probe")
            cursor.execute("CREATE TABLE IF NOT EXISTS probe.t (id INT PRIMARY KEY) ENGINE=InnoDB")
            cursor.execute("REPLACE INTO probe.t VALUES (1)")
            cursor.execute("SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")
            if cursor.fetchone()[1] == "ON":
                cursor.execute("SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'")
                assert cursor.fetchone()[1] == "Synced"
                cursor.execute("SELECT @@global.wsrep_desync")
                assert cursor.fetchone()[0] == 0
    finally:
        conn.close()


def assert_old_backups_intact(site: Site) -> None:
    """Every earlier backup and every unrelated snapshot is still there, unchanged."""
    present = {s.id: s.status for s in site.snapshots()}
    for snap in [s for series in site.old.values() for s in series] + site.others:
        assert present.get(snap.id) == snap.status, f"{snap.name} was touched"


def assert_rotated(site: Site, keep: int) -> None:
    """Per volume: the new snapshot plus the newest keep-1 earlier ones; others untouched."""
    for pattern in PATTERNS:
        new = site.new_snapshots(pattern)
        assert len(new) == 1 and new[0].status == "available", new
        assert parse_snapshot_name(new[0].name, pattern) is not None, new[0].name
        assert site.server_id in new[0].name
        present = {s.id for s in site.snapshots(pattern)}
        expected_old = site.old[pattern][len(site.old[pattern]) - (keep - 1) :] if keep > 1 else []
        assert [s.id for s in site.old[pattern] if s.id in present] == [s.id for s in expected_old]
    present = {s.id for s in site.snapshots()}
    assert all(s.id in present for s in site.others), "an unrelated snapshot was deleted"


# -- good runs ---------------------------------------------------------------------------------


def test_lock_mode_snapshots_rotates_and_blocks_only_writes(site):
    probe = site.probe_dir
    # inside the write block: a read must work and a write must wait (and time out)
    sync = site.in_block(
        f"{site.root_sql_command('SELECT 1')} > {probe}/read.out 2>&1; "
        f"echo $? > {probe}/read.rc; "
        f"{site.root_sql_command('SET SESSION lock_wait_timeout=1; CREATE DATABASE blocked')} "
        f"> {probe}/write.out 2>&1; echo $? > {probe}/write.rc"
    )

    state = run_backup(site, "lock", consistency=site.consistency("lock", sync_command=sync))

    assert state.is_completed(), state.message
    assert (probe / "presynced").exists()  # the first sync ran before the lock
    assert (probe / "read.rc").read_text().strip() == "0"
    assert (probe / "write.rc").read_text().strip() != "0"
    assert "Lock wait timeout" in (probe / "write.out").read_text()
    assert_rotated(site, keep=3)
    assert_database_healthy(site)
    summary = state.result()
    assert summary["outcome"] == "completed" and summary["mode"] == "lock"
    assert 0 < summary["write_blocked_seconds"] < 10
    new = site.new_snapshots("mysql_data")[0]
    assert new.metadata["server_id"] == site.server_id
    assert new.metadata["flow_run_id"] == str(state.state_details.flow_run_id)
    assert len(summary["deleted"]) == 2  # the oldest of each volume


def test_stop_mode_stops_mariadb_for_the_snapshots_and_starts_it(site):
    status = site.db.control_command("status")
    sync = site.in_block(f"{status}; echo $? > {site.probe_dir}/status.rc")

    state = run_backup(
        site, "stop", keep=2, consistency=site.consistency("stop", sync_command=sync)
    )

    assert state.is_completed(), state.message
    assert (site.probe_dir / "status.rc").read_text().strip() == "3"  # stopped meanwhile
    assert_rotated(site, keep=2)
    assert_database_healthy(site)
    assert state.result()["write_blocked_seconds"] > 0


def test_keep_one_leaves_only_the_new_snapshot(site):
    state = run_backup(site, "lock", keep=1)

    assert state.is_completed(), state.message
    assert_rotated(site, keep=1)


def test_table_artifact_describes_the_run(site):
    state = run_backup(site, "lock")

    assert state.is_completed(), state.message
    artifact = Artifact.get("backup-backend1")
    assert artifact is not None
    assert artifact.flow_run_id == state.state_details.flow_run_id
    rows = artifact.data if isinstance(artifact.data, list) else json.loads(artifact.data)
    assert [row["pattern"] for row in rows] == PATTERNS
    for row in rows:
        assert row["status"] == "available"
        assert row["kept"] == 3 and row["deleted"] != "-"
        assert row["write_blocked_s"] > 0
    assert "completed" in artifact.description and "lock mode" in artifact.description


def test_galera_lock_mode_desyncs_the_node_and_resyncs_it(galera_site):
    site = galera_site
    state_sql = "SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'"
    sync = site.in_block(f"{site.root_sql_command(state_sql)} > {site.probe_dir}/state.out")

    state = run_backup(site, "lock", consistency=site.consistency("lock", sync_command=sync))

    assert state.is_completed(), state.message
    assert "Donor/Desynced" in (site.probe_dir / "state.out").read_text()
    assert_rotated(site, keep=3)
    assert_database_healthy(site)


def test_galera_stop_mode_waits_for_synced_after_the_restart(galera_site):
    state = run_backup(galera_site, "stop")

    assert state.is_completed(), state.message
    assert_rotated(galera_site, keep=3)
    assert_database_healthy(galera_site)


# -- faults: the database always ends healthy (or the run says loudly it is not) ---------------


def assert_nothing_new_and_nothing_lost(site: Site) -> None:
    assert_old_backups_intact(site)
    for pattern in PATTERNS:
        assert site.new_snapshots(pattern) == []


def test_stop_command_failure_restarts_mariadb_and_creates_nothing(site):
    # the stop half-worked (MariaDB went down) and then reported an error
    stop = f"{site.db.control_command('stop')} && echo 'Job for mariadb failed' >&2 && exit 1"

    state = run_backup(site, "stop", consistency=site.consistency("stop", stop_command=stop))

    assert_failed(state, "RemoteCommandFailed", "exit status 1", "Job for mariadb failed")
    assert_database_healthy(site)
    assert_nothing_new_and_nothing_lost(site)


@pytest.mark.parametrize("mode", ["stop", "lock"])
def test_connection_cut_while_blocked_releases_the_database(site, mode):
    flag = site.probe_dir / "sync-started"
    sync = site.in_block(f"touch {flag}; sleep 10")

    def cut_when_syncing():
        deadline = time.monotonic() + 15
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        site.host.cut_connections()

    cutter = threading.Thread(target=cut_when_syncing)
    cutter.start()
    state = run_backup(site, mode, consistency=site.consistency(mode, sync_command=sync))
    cutter.join()

    assert_failed(state, "ConnectionLost", "was lost while running `sync; if")
    assert_database_healthy(site)
    assert_nothing_new_and_nothing_lost(site)


@pytest.mark.parametrize("mode", ["stop", "lock"])
def test_snapshot_create_5xx_fails_after_retries_and_releases(site, mode):
    site.fake.fail_requests("POST", r"/snapshots$", status=503, count=None)

    state = run_backup(site, mode)

    assert_failed(state, "HttpException", "503")
    assert len(site.fake.requests("POST", r"/snapshots$")) == 1 + FAST.cloud_retries
    assert_database_healthy(site)
    assert_nothing_new_and_nothing_lost(site)


def test_a_transient_5xx_is_retried_and_the_run_completes(site):
    site.fake.fail_requests("POST", r"/snapshots$", status=503, count=1)

    state = run_backup(site, "lock")

    assert state.is_completed(), state.message
    assert len(site.fake.requests("POST", r"/snapshots$")) == 3  # one retried, two volumes
    assert_rotated(site, keep=3)


def test_a_client_error_is_not_retried(site):
    site.fake.fail_requests("POST", r"/snapshots$", status=400, count=None)

    state = run_backup(site, "lock")

    assert_failed(state, "BadRequestException", "400")
    assert len(site.fake.requests("POST", r"/snapshots$")) == 1
    assert_nothing_new_and_nothing_lost(site)


@pytest.mark.parametrize("mode", ["stop", "lock"])
def test_snapshot_in_error_fails_the_run_and_rotates_nothing(site, mode):
    site.fake.fail_next_snapshots(1)  # the mysql_data one; mongodb_data succeeds

    state = run_backup(site, mode)

    assert_failed(state, "SnapshotFailed", "mysql_data-", "went to 'error'")
    assert_database_healthy(site)
    assert_old_backups_intact(site)


def test_snapshot_never_available_times_out_and_rotates_nothing(site):
    site.fake.stall_next_snapshots(1)
    timeouts = FAST.model_copy(update={"snapshot_seconds": 0.5})

    state = run_backup(site, "lock", timeouts=timeouts)

    assert_failed(state, "SnapshotTimeout", "not available after 0.5s", "still 'creating'")
    assert_database_healthy(site)
    assert_old_backups_intact(site)


def test_failure_while_holding_until_available_still_restarts(site):
    site.fake.fail_next_snapshots(1)
    consistency = site.consistency("stop", hold_until_available=True)

    state = run_backup(site, "stop", consistency=consistency)

    assert_failed(state, "SnapshotFailed", "went to 'error'")
    assert_database_healthy(site)
    assert_old_backups_intact(site)


def test_failed_delete_stops_rotation_without_deleting_more(site):
    oldest, failing, newest = site.old["mysql_data"]
    site.fake.fail_requests("DELETE", rf"/snapshots/{failing.id}$", status=500, count=None)

    state = run_backup(site, "lock", keep=1)

    assert_failed(state, "RotationFailed", failing.name, "nothing else was deleted")
    present = {s.id for s in site.snapshots()}
    assert oldest.id not in present  # deleted before the failure
    assert failing.id in present and newest.id in present
    assert all(s.id in present for s in site.old["mongodb_data"])  # never reached
    assert all(len(site.new_snapshots(p)) == 1 for p in PATTERNS)
    assert_database_healthy(site)


def test_mariadb_that_cannot_start_fails_the_run_loudly(site):
    datadir = site.db.datadir
    # while MariaDB is stopped its system tables vanish: the start command then fails for real
    sync = site.in_block(f"mv {datadir}/mysql {datadir}/mysql.moved")
    consistency = site.consistency("stop", sync_command=sync, start_attempts=2)
    try:
        state = run_backup(site, "stop", consistency=consistency)

        assert_failed(
            state,
            "DatabaseNotRestored",
            "NOT back to healthy",
            "mariadb-ctl start` failed 2 times",
            "privilege tables",
        )
        assert not site.db.is_running()
        assert_old_backups_intact(site)  # no rotation after a failed restart
        assert TEST_PASSWORD not in state.message
    finally:
        if (datadir / "mysql.moved").exists():
            (datadir / "mysql.moved").rename(datadir / "mysql")


# -- refusals: nothing is stopped, locked or created -----------------------------------------


def assert_untouched(site: Site, pid: int) -> None:
    assert site.db.running_pid() == pid, "MariaDB was restarted"
    assert_nothing_new_and_nothing_lost(site)


def test_node_holding_the_vip_is_refused(site):
    pid = site.db.running_pid()

    state = run_backup(site, "stop", safety=Safety(database_vip="127.0.0.1"))

    assert_failed(state, "BackupRefused", "holds the database VIP 127.0.0.1", "secondary")
    assert_untouched(site, pid)


def test_node_marked_primary_is_refused(site, openstack_conn):
    openstack_conn.compute.set_server_metadata(site.server_id, backend_role="primary")
    pid = site.db.running_pid()

    state = run_backup(site, "stop")

    assert_failed(state, "BackupRefused", "marks it primary")
    assert_untouched(site, pid)


def test_force_backs_up_the_vip_holder(site):
    state = run_backup(site, "lock", safety=Safety(database_vip="127.0.0.1"), force=True)

    assert state.is_completed(), state.message
    assert_rotated(site, keep=3)


def test_without_a_vip_the_run_is_refused_unless_forced(site):
    state = run_backup(site, "lock", safety=Safety())

    assert_failed(state, "BackupRefused", "database_vip is not set")
    assert_nothing_new_and_nothing_lost(site)


def test_changed_host_key_is_refused_before_anything(site):
    pid = site.db.running_pid()
    site.host.replace_host_key()

    state = run_backup(site, "stop")

    assert_failed(state, "HostKeyMismatch", "[127.0.0.1]:", "does not match known_hosts")
    assert_untouched(site, pid)


@pytest.mark.parametrize(
    ("extra_volume", "patterns", "message"),
    [
        (None, [*PATTERNS, "elastic_data"], "0 in-use volumes named like 'elastic_data'"),
        ("multi-mysql_data-second", PATTERNS, "2 in-use volumes named like 'mysql_data'"),
    ],
    ids=["missing", "ambiguous"],
)
def test_volume_problems_are_found_before_anything_stops(site, extra_volume, patterns, message):
    if extra_volume:
        site.fake.add_volume(extra_volume, attached_to=site.server_id)
    pid = site.db.running_pid()

    state = backup_backend_node(
        node=site.server_name, volumes=VolumeSelection(patterns=patterns),
        consistency=site.consistency("stop"), safety=Safety(database_vip=ABSENT_VIP),
        access=site.access, timeouts=FAST, return_state=True,
    )  # fmt: skip

    assert_failed(state, "CloudLookupError", message, "attached:")
    assert_untouched(site, pid)


def test_node_found_by_address(site):
    state = run_backup(site, "lock", node="127.0.0.1")

    assert state.is_completed(), state.message
    assert state.result()["server"] == "backend1"


def test_unknown_node_is_a_clear_error(site):
    state = run_backup(site, "lock", node="backend7")

    assert_failed(state, "CloudLookupError", "no server matches 'backend7'")


# -- no overlapping runs ----------------------------------------------------------------------


def test_a_run_while_another_holds_the_node_is_refused(site):
    timeouts = FAST.model_copy(update={"node_lock_wait_seconds": 0.5})
    with concurrency("backup-backend1", occupy=1, strict=True):
        state = run_backup(site, "lock", timeouts=timeouts)

    assert_failed(state, "BackupAlreadyRunning", "another backup of backend1 is running")
    assert_nothing_new_and_nothing_lost(site)


def test_overlapping_runs_of_one_node_never_run_together(site):
    flag = site.probe_dir / "first-holds-the-lock"
    first_sync = site.in_block(f"touch {flag}; sleep 2")
    results = {}

    def first_run():
        results["first"] = run_backup(
            site, "lock", consistency=site.consistency("lock", sync_command=first_sync)
        )

    first = threading.Thread(target=first_run)
    first.start()
    deadline = time.monotonic() + 20
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    impatient = FAST.model_copy(update={"node_lock_wait_seconds": 0.5})
    second = run_backup(site, "lock", timeouts=impatient)
    first.join()

    assert_failed(second, "BackupAlreadyRunning")
    assert results["first"].is_completed(), results["first"].message
    assert_rotated(site, keep=3)  # exactly one new snapshot per volume


def test_missing_concurrency_limit_is_a_clear_error(make_site, mariadb_via_ssh):
    site = make_site(mariadb_via_ssh.host, mariadb_via_ssh.server, name="backend9")
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name("backup-backend9")

    state = run_backup(site, "lock")

    assert_failed(state, "BackupRefused", "prefect gcl create backup-backend9 --limit 1")
    assert_nothing_new_and_nothing_lost(site)


def test_secrets_stay_out_of_parameters_messages_artifacts_and_logs(site, caplog):
    site.fake.fail_next_snapshots(1)
    secrets = [TEST_PASSWORD, site.fake.credentials["password"]]
    secrets += site.host.client_key.read_text().splitlines()[1:3]  # lines of the key body

    state = run_backup(site, "lock")

    assert_failed(state, "SnapshotFailed")
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    artifact = Artifact.get("backup-backend1")
    seen = " ".join(
        [json.dumps(run.parameters), state.message, str(artifact.data), artifact.description]
        + [record.getMessage() for record in caplog.records]
    )
    for secret in secrets:
        assert secret not in seen


# -- the read lock's own limits ---------------------------------------------------------------


def test_a_read_lock_that_cannot_be_taken_in_time_fails_cleanly(site):
    blocker = site.db.connect()
    with blocker.cursor() as cursor:
        cursor.execute("CREATE DATABASE IF NOT EXISTS probe")
        cursor.execute("CREATE TABLE probe.busy (id INT) ENGINE=InnoDB")
        cursor.execute("LOCK TABLES probe.busy WRITE")  # FLUSH TABLES WITH READ LOCK must wait
    try:
        timeouts = FAST.model_copy(update={"lock_wait_seconds": 1})
        state = run_backup(site, "lock", timeouts=timeouts)
    finally:
        blocker.close()

    assert_failed(state, "ReadLockFailed", "FLUSH TABLES WITH READ LOCK", "Lock wait timeout")
    assert_database_healthy(site)
    assert_nothing_new_and_nothing_lost(site)


def test_a_lock_session_dropped_by_the_server_fails_the_run(site):
    # MariaDB drops the idle lock session after max_write_block_seconds: the dead man's switch
    # for a flow that dies holding the lock. Here the hold outlasts it.
    timeouts = FAST.model_copy(update={"max_write_block_seconds": 1})
    consistency = site.consistency("lock", sync_command=site.in_block("sleep 2.5"))

    state = run_backup(site, "lock", consistency=consistency, timeouts=timeouts)

    assert_failed(state, "ReadLockFailed", "ended before UNLOCK TABLES", "may not be consistent")
    assert_database_healthy(site)
    assert_old_backups_intact(site)  # no rotation on top of snapshots that may be inconsistent
