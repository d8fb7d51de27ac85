"""Nightly consistent backups of a backend node as a Prefect flow: ``backup-backend-node``.

The story: find the node in OpenStack and exactly one in-use volume per name pattern; ask the
node itself whether it holds the database VIP (refuse it: stopping or locking the primary cuts
the applications off); `sync`, make the data on disk consistent (a read lock, or stopping
MariaDB), `sync` again, request a snapshot of every volume; release in a `finally` and verify
the database is healthy again; wait until every snapshot is `available`; only then rotate the
old ones; publish a table of what happened, whatever happened.

Nothing is stopped before every check passed, a failure anywhere fails the run with a message
naming the cause, and a database that could not be brought back fails it loudly.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from prefect import flow, get_client, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency.sync import concurrency
from prefect.exceptions import TerminationSignal
from prefect.runtime import flow_run
from prefect.states import Completed
from pydantic import BaseModel, Field, field_validator

from blocks.database import MySqlDatabase
from blocks.openstack import OpenStackCloud
from blocks.ssh import SshIdentity
from domain.backend import PRIMARY, PRIMARY_MARKS, node_role
from domain.names import artifact_key, is_address
from domain.snapshots import snapshot_name
from pipeline.errors import Refused
from pipeline_config.fields import NonEmptyStr
from tasks.mariadb import (
    DatabaseNotRestored,
    DatabaseStatus,
    HealthCheck,
    WriteBlock,
    inspect_database,
    read_locked,
    resync,
    service_stopped,
    start,
    verify,
)
from tasks.node_record import (
    DEFAULT_RECORD_PATH,
    NodeChange,
    clear_change,
    holder_of,
    mark_crashed,
    read_change,
    record_change,
)
from tasks.openstack import (
    RotationFailed,
    ServerInfo,
    SnapshotInfo,
    VolumeInfo,
    create_snapshot,
    find_attached_volumes,
    find_server,
    rotate_snapshots,
    wait_for_snapshots,
)
from tasks.parameters import fill_from_deployment
from tasks.signals import TerminationShield
from tasks.ssh import HostFacts, read_host_facts, run_remote_command

FLOW_NAME = "backup-backend-node"


class VolumeSelection(BaseModel):
    """Which volumes of the node to snapshot, and how many snapshots of each to keep."""

    patterns: list[NonEmptyStr] = Field(
        default=["mysql_data", "mongodb_data"],
        min_length=1,
        description="Each selects exactly one in-use volume attached to the node, by a "
        "substring of its name (Heat names volumes `<stack>-<resource>-<id>`).",
    )
    keep: int = Field(
        default=3,
        ge=1,
        description="Backup snapshots kept per volume after a run, the new one included.",
    )

    @field_validator("patterns")
    @classmethod
    def _distinct_words(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if not re.fullmatch(r"[A-Za-z0-9_.]+", pattern):
                raise ValueError(f"volume pattern {pattern!r}: use letters, digits, _ and .")
        if len(set(patterns)) != len(patterns):
            raise ValueError(f"volume patterns repeat: {patterns}")
        return patterns


class Consistency(BaseModel):
    """How the data on disk is made consistent while the snapshots are requested."""

    mode: Literal["lock", "stop"] = Field(
        default="lock",
        description="lock: FLUSH TABLES WITH READ LOCK (reads go on; Galera node desynced). "
        "stop: stop MariaDB, start it again afterwards.",
    )
    stop_command: NonEmptyStr = Field(
        default="sudo -n systemctl stop mariadb", description="stop mode: stops MariaDB."
    )
    start_command: NonEmptyStr = Field(
        default="sudo -n systemctl start mariadb",
        description="stop mode: starts MariaDB; run whatever failed, so it must be idempotent.",
    )
    start_attempts: int = Field(
        default=3, ge=1, le=10, description="stop mode: tries of the start command."
    )
    sync_command: NonEmptyStr = Field(
        default="sync", description="Flushes the node's file systems."
    )
    hold_until_available: bool = Field(
        default=False,
        description="Keep writes blocked until the snapshots are available, not only "
        "requested: for storage back ends that snapshot lazily after the API call.",
    )
    record_path: NonEmptyStr = Field(
        default=DEFAULT_RECORD_PATH,
        min_length=1,
        description="File on the node (over SFTP; ~/ is the SSH login's home) where a run "
        "records what it is about to change (desync, read lock, stop) and for which flow run, "
        "until the node is restored. A run finding one left by a dead run repairs the node.",
    )


class Safety(BaseModel):
    """What makes a node the wrong one to back up."""

    database_vip: NonEmptyStr | None = Field(
        default=None,
        description="The database VIP (keepalived moves it to the primary). The node is "
        "refused if it holds it. Required unless force is set.",
    )
    address_command: NonEmptyStr = Field(
        default="ip -o addr show", description="Lists the node's addresses, run on the node."
    )
    primary_metadata: dict[NonEmptyStr, NonEmptyStr] = Field(
        default=dict(PRIMARY_MARKS),
        description="Server metadata marking a primary backend; such a node is refused.",
    )
    check_database_hostname: bool = Field(
        default=True,
        description="Refuse when MariaDB's @@hostname differs from the node's hostname (the "
        "database session would not be on the node being snapshotted).",
    )

    @field_validator("database_vip")
    @classmethod
    def _an_address(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)
        return value


class Access(BaseModel):
    """Which blocks hold the credentials, and where the node is reached."""

    openstack_block: NonEmptyStr = Field(default="openstack", description="OpenStack Cloud block.")
    ssh_block: NonEmptyStr = Field(default="backend-ssh", description="SSH Identity block.")
    database_block: NonEmptyStr = Field(
        default="backend-database",
        description="MySQL Database block: its credentials and port are used on the node's "
        "address, never its host (which may be the VIP).",
    )
    network: NonEmptyStr | None = Field(
        default=None, description="Network whose fixed address reaches the node."
    )
    address: NonEmptyStr | None = Field(
        default=None, description="Reach the node here instead (SSH and MariaDB)."
    )


def _seconds(default: float, description: str, **bounds: float) -> Any:
    """A time limit's field: seconds, more than 0 unless `bounds` say otherwise."""
    return Field(default=default, **(bounds or {"gt": 0}), description=description)


class Timeouts(BaseModel):
    """Time limits (seconds) and retry pacing."""

    command_seconds: float = _seconds(120, "sync, address listing.")
    stop_seconds: float = _seconds(600, "The stop command.")
    start_seconds: float = _seconds(600, "The start command.")
    lock_wait_seconds: float = _seconds(10, "FLUSH TABLES WITH READ LOCK waiting for statements.")
    max_write_block_seconds: float = _seconds(
        900,
        "lock mode: MariaDB drops the lock session after this long idle, should this flow die "
        "while holding it.",
    )
    snapshot_seconds: float = _seconds(1800, "Until available.")
    delete_seconds: float = _seconds(300, "Until a deletion is done.")
    health_seconds: float = _seconds(600, "Until healthy again.")
    poll_interval_seconds: float = _seconds(5, "Pause between polls and between start attempts.")
    node_lock_wait_seconds: float = _seconds(
        30, "Wait for another backup of this node to finish.", ge=0
    )
    slot_lease_seconds: float = _seconds(
        60,
        "Lease on the node's concurrency slot, renewed while the run lives: the slot of a run "
        "killed without a trace comes back this long (plus the server's lease check, 15 s) after "
        "its last renewal.",
        ge=60,  # the Prefect server's minimum
        le=86400,
    )
    cloud_retries: int = Field(default=3, ge=0, le=10, description="Transient cloud errors.")
    cloud_retry_delay_seconds: float = _seconds(
        10, "Pause before retrying a transient cloud error.", ge=0
    )


class BackupRefused(Refused):
    """The node must not be backed up this way (primary, VIP holder, wrong database...)."""


class BackupAlreadyRunning(Refused):
    """Another run holds this node's concurrency slot."""


# -- what happened, for the artifact and the return value -----------------------------------


@dataclass
class VolumeOutcome:
    """One volume's part of a run."""

    pattern: str
    volume: VolumeInfo | None = None
    snapshot: SnapshotInfo | None = None
    seconds_to_available: float | None = None
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


@dataclass
class BackupReport:
    """Everything a run did, filled in as it goes, published whatever happened."""

    node: str
    mode: str
    keep: int
    patterns: list[str]
    server: ServerInfo | None = None
    address: str = ""
    write_block: WriteBlock | None = None
    outcome: str = "running"
    error: str = ""
    repaired: str = ""  # what a dead run had left on the node, and how it was repaired
    started: float = field(default_factory=time.monotonic)
    volumes: list[VolumeOutcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.volumes = [VolumeOutcome(pattern) for pattern in self.patterns]

    def outcome_of(self, volume: VolumeInfo) -> VolumeOutcome:
        return next(v for v in self.volumes if v.pattern == volume.pattern)

    @property
    def write_blocked_seconds(self) -> float | None:
        seconds = self.write_block.seconds if self.write_block else None
        return round(seconds, 3) if seconds is not None else None

    def table(self) -> list[dict]:
        return [
            {
                "pattern": v.pattern,
                "volume": f"{v.volume.name} ({v.volume.id})" if v.volume else "-",
                "snapshot": f"{v.snapshot.name} ({v.snapshot.id})" if v.snapshot else "-",
                "status": v.snapshot.status if v.snapshot else "not created",
                "available_after_s": v.seconds_to_available,
                "deleted": ", ".join(v.deleted) or "-",
                "kept": len(v.kept),
                "kept_snapshots": ", ".join(v.kept) or "-",
                "write_blocked_s": self.write_blocked_seconds,
            }
            for v in self.volumes
        ]

    def summary(self) -> str:
        block = self.write_block
        window = "none (nothing was blocked)"
        if block and block.started_at:
            end = block.ended_at.strftime("%H:%M:%S.%f")[:-3] if block.ended_at else "?"
            window = (
                f"{self.write_blocked_seconds}s ({self.mode} mode, "
                f"{block.started_at.strftime('%H:%M:%S.%f')[:-3]}-{end} UTC), database "
                + ("released and verified healthy" if block.restored else "NOT verified healthy")
            )
        server = f"{self.server.name} ({self.server.id})" if self.server else self.node
        text = (
            f"**{FLOW_NAME}** of {server} at {self.address or '?'}: **{self.outcome}** in "
            f"{time.monotonic() - self.started:.1f}s; writes blocked: {window}; "
            f"keep {self.keep} per volume."
        )
        if self.repaired:
            text = f"**REPAIRED FIRST**: {self.repaired}\n\n{text}"
        return text + (f"\n\nCause: {self.error}" if self.error else "")

    def as_dict(self) -> dict:
        return {
            "node": self.node,
            "server": self.server.name if self.server else None,
            "server_id": self.server.id if self.server else None,
            "mode": self.mode,
            "outcome": self.outcome,
            "write_blocked_seconds": self.write_blocked_seconds,
            "seconds": round(time.monotonic() - self.started, 3),
            "volumes": self.table(),
            "snapshots": [v.snapshot.id for v in self.volumes if v.snapshot],
            "deleted": [name for v in self.volumes for name in v.deleted],
            "repaired": self.repaired or None,
        }


def publish(report: BackupReport) -> None:
    """The run's table artifact; a failure here must not hide the run's own error."""
    name = report.server.name if report.server else report.node
    try:
        create_table_artifact(
            key=f"backup-{artifact_key(name, 'node')}",
            table=report.table(),
            description=report.summary(),
        )
    except Exception as error:
        get_run_logger().warning("could not publish the backup table: %s", error)


def _seconds_between(start: str, end: str) -> float | None:
    try:
        began, ended = dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)
    except (TypeError, ValueError):
        return None
    return round((ended - began).total_seconds(), 3)


# -- the flow ------------------------------------------------------------------------------------


@flow(name=FLOW_NAME)
def backup_backend_node(
    node: NonEmptyStr,
    # read-only parameter models, rendered as forms (B008: see pyproject's immutable calls)
    volumes: VolumeSelection = VolumeSelection(),
    consistency: Consistency = Consistency(),
    safety: Safety = Safety(),
    access: Access = Access(),
    timeouts: Timeouts = Timeouts(),
    force: bool = False,
) -> dict:
    """Snapshot a backend node's database volumes consistently, then rotate old snapshots.

    Args:
        node: The node: OpenStack server name or id, or one of its addresses.
        volumes: Volume name patterns and how many snapshots to keep of each.
        consistency: lock (read lock, reads go on) or stop (MariaDB stopped), and commands.
        safety: The database VIP and primary markers that make a node the wrong one.
        access: Names of the OpenStack, SSH and MySQL blocks; where the node is reached.
        timeouts: Time limits, polling and retry pacing.
        force: Back up even a node that holds the VIP or is marked primary (disruptive).

    Returns:
        What was done: snapshots created, deleted and kept per volume, the write-blocked window.
    """
    volumes, consistency, safety, access, timeouts = fill_from_deployment(
        volumes=volumes, consistency=consistency, safety=safety, access=access, timeouts=timeouts
    )
    if safety.database_vip is None and not force:
        raise BackupRefused(
            "safety.database_vip is not set: without it the flow cannot tell whether the node is "
            "the primary. Set it (e.g. 192.168.122.110), or force=True to skip that check."
        )
    cloud = OpenStackCloud.load(access.openstack_block)
    identity = SshIdentity.load(access.ssh_block)
    database = MySqlDatabase.load(access.database_block)
    retry = {
        "retries": timeouts.cloud_retries,
        "retry_delay_seconds": timeouts.cloud_retry_delay_seconds,
    }
    report = BackupReport(node, consistency.mode, volumes.keep, list(volumes.patterns))
    conn = cloud.get_client()
    try:
        server = find_server.with_options(**retry)(conn, node)
        report.server = server
        address = access.address or (node if is_address(node) else None)
        address = address or server.address(access.network)
        report.address = address
        node_ssh = NodeAccess(identity, database, address, consistency, timeouts)
        with node_slot(
            server.name,
            timeouts.node_lock_wait_seconds,
            timeouts.slot_lease_seconds,
            reclaim=lambda busy: reclaim_slot(node_ssh, busy),
        ) as lease_id:
            # before anything else on the node: what a dead run left there is repaired first
            report.repaired = repair_left_changes(node_ssh, server) or ""
            # every check before anything is stopped or locked
            facts = read_host_facts(
                identity, address, safety.address_command, timeout=timeouts.command_seconds
            )
            refuse_primary(server, facts, safety, force)
            found = find_attached_volumes.with_options(**retry)(conn, server, volumes.patterns)
            for volume in found:
                report.outcome_of(volume).volume = volume
            baseline = inspect_database(database, address)
            refuse_other_database(baseline, facts, safety)

            created = snapshot_consistently(
                conn, node_ssh, server, found, baseline, lease_id, report
            )
            if not consistency.hold_until_available:
                created = wait_for_snapshots(
                    conn, created, timeouts.snapshot_seconds, timeouts.poll_interval_seconds
                )
            record_available(report, found, created)
            # only now that every new snapshot is available may old ones go
            for volume, snap in zip(found, created, strict=True):
                rotate(conn, report, volume, snap, volumes.keep, timeouts, retry)
        report.outcome = "completed"
        get_run_logger().info(report.summary())
        if report.repaired:
            # a visible mark on a run that otherwise went well: the node had been left broken
            return Completed(message=f"Completed after repairing: {report.repaired}",
                             data=report.as_dict())  # fmt: skip
        return report.as_dict()
    except BaseException as error:
        if isinstance(error, TerminationSignal | KeyboardInterrupt):
            report.outcome = "interrupted"
            name = signal.Signals(getattr(error, "signal", signal.SIGINT)).name
            report.error = f"{type(error).__name__}: stopped by {name} (a cancel, or a shutdown)"
        else:
            report.outcome = "failed"
            report.error = f"{type(error).__name__}: {error}"
        raise
    finally:
        conn.close()
        publish(report)


@dataclass(frozen=True)
class NodeAccess:
    """How this run reaches the node (SSH, MariaDB on its own address) and its settings."""

    identity: SshIdentity
    database: MySqlDatabase
    address: str
    consistency: Consistency
    timeouts: Timeouts

    def read_record(self) -> NodeChange | None:
        return read_change(
            self.identity, self.address, self.consistency.record_path,
            timeout=self.timeouts.command_seconds,
        )  # fmt: skip

    def clear_record(self) -> None:
        clear_change(
            self.identity, self.address, self.consistency.record_path,
            timeout=self.timeouts.command_seconds,
        )  # fmt: skip

    def health(self, baseline: DatabaseStatus) -> HealthCheck:
        return HealthCheck(
            self.database, self.address, baseline, self.timeouts.health_seconds,
            self.timeouts.poll_interval_seconds,
        )  # fmt: skip


def snapshot_consistently(
    conn,
    node: NodeAccess,
    server: ServerInfo,
    found: list[VolumeInfo],
    baseline: DatabaseStatus,
    lease_id: str | None,
    report: BackupReport,
) -> list[SnapshotInfo]:
    """Sync, record the change on the node, block writes, sync, request one snapshot per volume,
    release (finally), verify, remove the record."""
    identity, address = node.identity, node.address
    consistency, timeouts = node.consistency, node.timeouts
    health = node.health(baseline)
    window = WriteBlock(consistency.mode)
    report.write_block = window
    if consistency.mode == "lock":
        changes = ("desync", "read_lock") if baseline.galera else ("read_lock",)
        block = read_locked(
            health, galera=baseline.galera, lock_wait_timeout=timeouts.lock_wait_seconds,
            max_hold_seconds=timeouts.max_write_block_seconds, block=window,
        )  # fmt: skip
    else:
        changes = ("stop",)
        block = service_stopped(
            identity, health, stop_command=consistency.stop_command,
            start_command=consistency.start_command,
            stop_timeout=timeouts.stop_seconds, start_timeout=timeouts.start_seconds,
            start_attempts=consistency.start_attempts, retry_delay=timeouts.poll_interval_seconds,
            block=window,
        )  # fmt: skip
    create = create_snapshot.with_options(
        retries=timeouts.cloud_retries, retry_delay_seconds=timeouts.cloud_retry_delay_seconds
    )
    tags = {
        "created_by": f"edx-ops-flows/{FLOW_NAME}",
        "flow_run_id": str(flow_run.id or ""),
        "flow_run_name": str(flow_run.name or ""),
        "server_id": server.id,
    }
    created: list[SnapshotInfo] = []
    # a first sync while writes still flow: the one inside the block then has little left to
    # write, which keeps the write-blocked window short
    run_remote_command(
        identity, address, consistency.sync_command, timeout=timeouts.command_seconds
    )
    record_change(
        identity, address, consistency.record_path,
        NodeChange.now(
            flow_run_id=tags["flow_run_id"], flow_run_name=tags["flow_run_name"],
            server=server.name, mode=consistency.mode, changes=changes,
            galera=baseline.galera, cluster_size=baseline.cluster_size, lease_id=lease_id,
        ),
        timeout=timeouts.command_seconds,
    )  # fmt: skip
    try:
        with block:
            run_remote_command(
                identity, address, consistency.sync_command, timeout=timeouts.command_seconds
            )
            when = dt.datetime.now(dt.UTC)
            for volume in found:
                snap = create(
                    conn,
                    volume,
                    snapshot_name(volume.pattern, server.id, when),
                    metadata={**tags, "volume_pattern": volume.pattern},
                    description=f"{FLOW_NAME} run {tags['flow_run_name']} of {server.name}",
                )
                report.outcome_of(volume).snapshot = snap
                created.append(snap)
            if consistency.hold_until_available:
                created = wait_for_snapshots(
                    conn, created, timeouts.snapshot_seconds, timeouts.poll_interval_seconds
                )
    finally:
        # kept when the node could not be restored: the next run then repairs it
        if window.restored:
            with TerminationShield():
                node.clear_record()
    return created


def repair_left_changes(node: NodeAccess, server: ServerInfo) -> str | None:
    """Repair what a dead run left on the node (its record says what), loudly; None if nothing.

    Raises:
        BackupAlreadyRunning: the record's run still runs (it lost its slot, but is alive).
        DatabaseNotRestored: the repair did not bring the database back to healthy.
    """
    change = node.read_record()
    if change is None:
        return None
    holder = holder_of(change, str(flow_run.id) if flow_run.id else None)
    where = f"{server.name} ({node.address})"
    if holder.alive:
        raise BackupAlreadyRunning(
            f"backup run {change.run_label()} ({holder.state}) recorded on {where} that it has "
            f"MariaDB {change.describe()}, and it still runs (it no longer holds the node's "
            "slot): not touching the node. If that run is gone, cancel it in Prefect "
            "and run the backup again."
        )
    logger = get_run_logger()
    logger.critical(
        "backup run %s (%s) left MariaDB on %s %s: repairing it now",
        change.run_label(), holder.state, where, change.describe(),
    )  # fmt: skip
    baseline = DatabaseStatus(
        host=node.address, hostname="", version="", galera=change.galera,
        cluster_size=change.cluster_size,
    )  # fmt: skip
    done = []
    try:
        with TerminationShield():  # a repair is a cleanup: it runs to its end
            if "desync" in change.changes:
                resync(node.database, node.address)
                done.append("resynced (wsrep_desync = OFF)")
            if "stop" in change.changes:
                start(
                    node.identity, node.address, node.consistency.start_command,
                    attempts=node.consistency.start_attempts,
                    timeout=node.timeouts.start_seconds,
                    retry_delay=node.timeouts.poll_interval_seconds,
                )  # fmt: skip
                done.append(f"started (`{node.consistency.start_command}`)")
            status = verify(node.health(baseline))
            node.clear_record()
    except DatabaseNotRestored as error:
        raise DatabaseNotRestored(
            f"repairing what backup run {change.run_label()} ({holder.state}) left on {where} "
            f"({change.describe()}) failed: {error}"
        ) from None
    message = (
        f"backup run {change.run_label()}, {holder.state}, had left MariaDB on {where} "
        f"{change.describe()}; {' and '.join(done) or 'nothing to undo'}, verified: "
        f"{status.describe()} is healthy"
    )
    logger.error(message)
    if holder.orphaned:
        try:
            mark_crashed(change, f"its process was found gone by run {flow_run.name}: {message}")
        except Exception as error:  # the node is repaired: that is what matters tonight
            logger.warning("could not set run %s to Crashed: %s", change.run_label(), error)
    return message


def reclaim_slot(node: NodeAccess, busy: BackupAlreadyRunning) -> bool:
    """The node's slot is taken: release it if the run that took it (named in the node's
    record) is dead. False when there is nothing to reclaim (the slot's holder left no record:
    its lease runs out by itself, `timeouts.slot_lease_seconds` after its last renewal).

    Raises:
        BackupAlreadyRunning: the run named in the record is alive.
    """
    change = node.read_record()
    if change is None or not change.lease_id:
        return False
    holder = holder_of(change, str(flow_run.id) if flow_run.id else None)
    if holder.alive:
        raise BackupAlreadyRunning(
            f"{busy}: backup run {change.run_label()} ({holder.state}) has MariaDB on "
            f"{node.address} {change.describe()}"
        )
    with get_client(sync_client=True) as client:
        # a no-op when the lease ran out meanwhile (the slot is free already)
        client.release_concurrency_slots_with_lease(uuid.UUID(change.lease_id))
    get_run_logger().error(
        "released the node's concurrency slot held by backup run %s (%s), which is dead",
        change.run_label(), holder.state,
    )  # fmt: skip
    return True


def record_available(
    report: BackupReport, found: list[VolumeInfo], snapshots: list[SnapshotInfo]
) -> None:
    for volume, snap in zip(found, snapshots, strict=True):
        outcome = report.outcome_of(volume)
        outcome.snapshot = snap
        outcome.seconds_to_available = _seconds_between(snap.created_at, snap.updated_at)


def rotate(conn, report, volume, snap, keep, timeouts: Timeouts, retry: dict) -> None:
    """Rotate one volume's snapshots; record what was deleted even when a delete fails."""
    outcome = report.outcome_of(volume)
    try:
        plan, deleted = rotate_snapshots(
            conn, volume, keep, [snap.id], delete_timeout=timeouts.delete_seconds,
            poll_interval=timeouts.poll_interval_seconds, **retry,
        )  # fmt: skip
    except RotationFailed as error:
        outcome.deleted = [s.name for s in error.deleted]
        outcome.kept = [s.name for s in error.plan.keep]
        raise
    outcome.deleted = [s.name for s in deleted]
    outcome.kept = [s.name for s in plan.keep]


def refuse_primary(server: ServerInfo, facts: HostFacts, safety: Safety, force: bool) -> None:
    """Refuse a node that is a primary (`domain.backend`): it holds the database VIP (asked on
    the node) or its server metadata marks it primary."""
    role = node_role(
        holds_vip=bool(safety.database_vip and facts.has_address(safety.database_vip)),
        metadata=server.metadata,
        marks=safety.primary_metadata,
    )
    if role.role != PRIMARY:
        return
    reasons = []
    if role.holds_vip:
        reasons.append(
            f"it holds the database VIP {safety.database_vip} (`{safety.address_command}` on "
            f"{facts.hostname} lists it)"
        )
    if role.marks:
        reasons.append(f"its server metadata marks it primary ({role.marks})")
    if force:
        get_run_logger().warning("force=True: backing up %s although %s", server.name, reasons)
        return
    raise BackupRefused(
        f"refusing to back up {server.name}: {'; '.join(reasons)}. Blocking writes there cuts "
        "the applications off: back up a secondary backend node (or set force=True)."
    )


def refuse_other_database(baseline: DatabaseStatus, facts: HostFacts, safety: Safety) -> None:
    """The database session must be on the node whose volumes are snapshotted."""
    if not safety.check_database_hostname:
        return
    ours, theirs = facts.hostname.split(".")[0].lower(), baseline.hostname.split(".")[0].lower()
    if ours != theirs:
        raise BackupRefused(
            f"MariaDB at {baseline.host} reports hostname {baseline.hostname!r} but the node is "
            f"{facts.hostname!r}: the database session would not be on the node being "
            "snapshotted (a VIP or a proxy in between?)"
        )


@contextmanager
def node_slot(
    server_name: str,
    wait_seconds: float,
    lease_seconds: float,
    reclaim: Callable[[BackupAlreadyRunning], bool],
) -> Iterator[str | None]:
    """Hold this node's global concurrency slot (`backup-<server name>`, limit 1, strict) on a
    lease of `lease_seconds`, renewed in the background while the run lives. Yields the lease's
    id (None outside a flow run), recorded on the node so that a later run can release the slot
    of a dead run at once (`reclaim`, asked when the slot stays taken; True: try again)."""
    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency.context import ConcurrencyContext

    limit = f"backup-{server_name}"
    holder = ConcurrencyLeaseHolder(type="flow_run", id=flow_run.id) if flow_run.id else None

    def acquire(stack: ExitStack) -> str | None:
        try:
            stack.enter_context(
                concurrency(
                    limit, occupy=1, strict=True, timeout_seconds=wait_seconds,
                    lease_duration=lease_seconds, holder=holder,
                    # a lease renewal blip must never abort a run mid-backup (the DB stopped)
                    raise_on_lease_renewal_failure=False,
                )
            )  # fmt: skip
        except TimeoutError:
            raise BackupAlreadyRunning(
                f"another backup of {server_name} is running (global concurrency limit "
                f"{limit!r} stayed taken for {wait_seconds:g}s); not starting a second one"
            ) from None
        except ConcurrencySlotAcquisitionError as error:
            raise BackupRefused(
                f"global concurrency limit {limit!r} is missing ({error}); create it once: "
                f"prefect gcl create {limit} --limit 1"
            ) from None
        # Prefect 3.9 keeps the lease's id only on the run's concurrency context (for its own
        # cleanup); `concurrency()` does not return it
        context = ConcurrencyContext.get()
        leases = context.cleanup_lease_ids if context else []
        return str(leases[-1]) if leases else None

    with ExitStack() as stack:
        try:
            lease_id = acquire(stack)
        except BackupAlreadyRunning as busy:
            if not reclaim(busy):
                raise
            lease_id = acquire(stack)
        yield lease_id
