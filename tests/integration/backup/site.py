"""The backed-up node of the integration tests: a cloud seeded for it, its SSH host, MariaDB and
blocks (`make_site`, `site`, `galera_site`), running the flow on it, and what must hold after.

The fixtures are registered in this directory's conftest.py.
"""

from __future__ import annotations

import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from blocks.database import MySqlDatabase
from blocks.openstack import OpenStackCloud
from blocks.ssh import SshIdentity
from domain.snapshots import parse_snapshot_name
from flows.backup import (
    Access,
    Consistency,
    Safety,
    Timeouts,
    VolumeSelection,
    backup_backend_node,
)
from tests.bed.mariadb import TEST_PASSWORD, TEST_USER, MariaDBServer
from tests.bed.sshd import SshHost
from tests.fakes.openstack import OpenStackFake, Snapshot, Volume

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
    #: the node's record of a run's changes: in a directory of its own, not in the login's real
    #: home (the bed's sshd logs in the current user), nor named after the test (whose name
    #: may contain what the secrets test looks for)
    record_path: Path

    def snapshots(self, pattern: str | None = None) -> list[Snapshot]:
        found = self.fake.snapshots()
        if pattern is not None:
            found = [s for s in found if s.volume_id == self.volumes[pattern].id]
        return found

    def new_snapshots(self, pattern: str) -> list[Snapshot]:
        known = {s.id for s in self.old[pattern] + self.others}
        return [s for s in self.snapshots(pattern) if s.id not in known]

    def consistency(self, mode: str, **overrides) -> Consistency:
        commands = {
            "stop_command": self.db.control_command("stop"),
            "start_command": self.db.control_command("start"),
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
def make_site(openstack_fake, tmp_path, tmp_path_factory, concurrency_limit):
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
        record_path = tmp_path_factory.mktemp("node-record") / "backup-state.json"
        return Site(openstack_fake, server_id, name, volumes, old, others, host, db, access,
                    probe_dir, record_path)  # fmt: skip

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
