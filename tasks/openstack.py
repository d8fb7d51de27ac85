"""Prefect tasks on OpenStack (Nova servers, Cinder volumes and snapshots) through openstacksdk.

Tasks take an openstacksdk `Connection` (hence `cache_policy=NO_CACHE`) and return plain data:
`ServerInfo`, `VolumeInfo`, `SnapshotInfo`. Only transient cloud errors (HTTP 5xx or 429,
connection failures) are retried, through `retry_on_transient_cloud_error`; a 4xx means a
request that will fail again, so it fails at once.

Snapshot names and the rotation plan are `domain.snapshots`' (pure); the tasks here carry them
out in Cinder.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openstack import exceptions as sdk_exceptions
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run as current_task_run

from domain.names import is_address
from domain.polling import wait_until
from domain.servers import FIXED, nova_addresses
from domain.snapshots import RotationPlan, SnapshotInfo, plan_rotation
from pipeline.errors import NotFound, OperationFailed, OperationTimeout
from tasks.retries import retry_when

if TYPE_CHECKING:
    from openstack.connection import Connection

#: Task defaults; flows tune them with `.with_options(retries=..., retry_delay_seconds=...)`.
CLOUD_RETRIES = 3
CLOUD_RETRY_DELAY_SECONDS = 10


class CloudLookupError(NotFound):
    """The server or its volumes are not what the operation needs (missing, ambiguous)."""


class SnapshotFailed(OperationFailed):
    """A snapshot went to an error state or disappeared."""


class SnapshotTimeout(OperationTimeout):
    """A snapshot did not become available in time."""


class SnapshotDeleteFailed(OperationFailed):
    """Cinder could not delete a snapshot (error_deleting; still there after the timeout:
    `SnapshotDeleteTimeout`)."""


class SnapshotDeleteTimeout(SnapshotDeleteFailed, OperationTimeout):
    """A deleted snapshot was still there after the timeout.

    Not retried by `retry_on_transient_cloud_error` (which knows only cloud and connection
    errors): a second delete request would not make Cinder any faster.
    """


# -- transient errors --------------------------------------------------------------------------


def is_transient_cloud_error(error: BaseException | None) -> bool:
    """True for errors worth retrying: HTTP 5xx/429 and connection failures (TLS errors excluded).

    Follows `__cause__`/`__context__`, because keystoneauth reports an unreachable Keystone as a
    DiscoveryFailure whose cause is the connection error.
    """
    from keystoneauth1 import exceptions as ksa

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        status = None
        if isinstance(error, sdk_exceptions.HttpException):
            status = error.status_code
        elif isinstance(error, ksa.HttpError):
            status = error.http_status
        if status is not None:
            return status >= 500 or status == 429
        if isinstance(error, ksa.SSLError):
            return False
        if isinstance(error, ksa.ConnectionError | ksa.RequestTimeout | ConnectionError):
            return True
        import requests

        if isinstance(error, requests.ConnectionError | requests.Timeout):
            return True
        error = error.__cause__ or error.__context__
    return False


#: `retry_condition_fn` for cloud tasks: retry only what `is_transient_cloud_error` accepts.
retry_on_transient_cloud_error = retry_when(is_transient_cloud_error)


def cloud_task(**options: Any):
    """`@task` with the settings every cloud task shares (NO_CACHE: a Connection is an input)."""
    return task(
        cache_policy=NO_CACHE,
        retries=CLOUD_RETRIES,
        retry_delay_seconds=CLOUD_RETRY_DELAY_SECONDS,
        retry_condition_fn=retry_on_transient_cloud_error,
        **options,
    )


# -- plain data --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerInfo:
    """A Nova server. `addresses`: (network, address, type) with type `fixed` or `floating`."""

    id: str
    name: str
    status: str
    addresses: tuple[tuple[str, str, str], ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)

    def address(self, network: str | None = None) -> str:
        """The first fixed IPv4 address (on `network` if given), else any fixed address."""
        fixed = [(net, addr) for net, addr, kind in self.addresses if kind == FIXED]
        candidates = [addr for net, addr in fixed if network is None or net == network]
        if not candidates:
            where = f" on network {network!r}" if network else ""
            raise CloudLookupError(f"server {self.name} ({self.id}) has no fixed address{where}; "
                                   f"it has {list(self.addresses) or 'none'}")  # fmt: skip
        ipv4 = [addr for addr in candidates if ":" not in addr]
        return (ipv4 or candidates)[0]


@dataclass(frozen=True)
class VolumeInfo:
    """A Cinder volume attached to a server, and the name pattern that selected it."""

    id: str
    name: str
    status: str
    size: int
    pattern: str
    device: str | None = None


def _server_info(server: Any) -> ServerInfo:
    addresses = nova_addresses(server.addresses)
    return ServerInfo(server.id, server.name, server.status, addresses, dict(server.metadata or {}))


def _snapshot_info(snap: Any) -> SnapshotInfo:
    return SnapshotInfo(
        id=snap.id,
        name=snap.name or "",
        volume_id=snap.volume_id,
        status=snap.status,
        created_at=str(snap.created_at or ""),
        updated_at=str(snap.updated_at or ""),
        metadata=dict(snap.metadata or {}),
    )


# -- tasks ---------------------------------------------------------------------------------------


@cloud_task(name="find-server", task_run_name="find-server {reference}")
def find_server(conn: Connection, reference: str) -> ServerInfo:
    """Find exactly one server by id, name or (fixed or floating) address.

    Raises:
        CloudLookupError: no server, or several, match `reference`.
    """
    if is_address(reference):
        found = [
            info
            for info in map(_server_info, conn.compute.servers(details=True))
            if any(address == reference for _, address, _ in info.addresses)
        ]
    else:
        try:
            server = conn.compute.find_server(reference, ignore_missing=True, details=True)
        except sdk_exceptions.DuplicateResource:
            raise CloudLookupError(
                f"several servers are named {reference!r}: give the server id instead"
            ) from None
        found = [_server_info(server)] if server is not None else []
    if not found:
        raise CloudLookupError(f"no server matches {reference!r} (by id, name or address)")
    if len(found) > 1:
        names = ", ".join(f"{s.name} ({s.id})" for s in found)
        raise CloudLookupError(f"{len(found)} servers match {reference!r}: {names}")
    return found[0]


@cloud_task(name="find-attached-volumes", task_run_name="find-attached-volumes {server.name}")
def find_attached_volumes(
    conn: Connection, server: ServerInfo, patterns: Sequence[str]
) -> list[VolumeInfo]:
    """Exactly one in-use volume attached to `server` per name pattern (a substring), in order.

    Raises:
        CloudLookupError: a pattern matches no attached in-use volume, or several, or one volume
            matches several patterns. The message lists what is attached.
    """
    attached = []
    for attachment in conn.compute.volume_attachments(server.id):
        volume = conn.block_storage.get_volume(attachment.volume_id)
        attached.append((volume, attachment.device))
    described = ", ".join(f"{v.name!r} ({v.status})" for v, _ in attached) or "none"
    found: list[VolumeInfo] = []
    problems: list[str] = []
    for pattern in patterns:
        matches = [(v, device) for v, device in attached if pattern in (v.name or "")]
        in_use = [(v, device) for v, device in matches if v.status == "in-use"]
        if len(in_use) != 1:
            other = len(matches) - len(in_use)
            problems.append(
                f"{len(in_use)} in-use volumes named like {pattern!r}"
                + (f" (and {other} attached in another state)" if other else "")
            )
            continue
        volume, device = in_use[0]
        found.append(
            VolumeInfo(volume.id, volume.name, volume.status, volume.size, pattern, device)
        )
    ids = [v.id for v in found]
    for volume_id in {i for i in ids if ids.count(i) > 1}:
        shared = [v.pattern for v in found if v.id == volume_id]
        problems.append(f"volume {volume_id} matches several patterns {shared}")
    if problems:
        raise CloudLookupError(
            f"server {server.name} ({server.id}): " + "; ".join(problems)
            + f". Expected exactly one in-use volume per pattern; attached: {described}"
        )  # fmt: skip
    return found


@cloud_task(name="create-snapshot", task_run_name="create-snapshot {name}")
def create_snapshot(
    conn: Connection,
    volume: VolumeInfo,
    name: str,
    metadata: dict[str, str] | None = None,
    description: str | None = None,
) -> SnapshotInfo:
    """Request a snapshot of an in-use volume (`force`: Cinder refuses in-use volumes without).

    Idempotent across retries: if an earlier attempt's request reached Cinder but its answer was
    lost, the snapshot it created (same name, same volume) is returned instead of a second one.
    """
    logger = get_run_logger()
    if (current_task_run.run_count or 1) > 1:
        for existing in conn.block_storage.snapshots(details=True, volume_id=volume.id, name=name):
            if existing.name == name and existing.volume_id == volume.id:
                logger.info("snapshot %s already exists (%s): earlier attempt", name, existing.id)
                return _snapshot_info(existing)
    snap = conn.block_storage.create_snapshot(
        volume_id=volume.id,
        name=name,
        force=True,
        metadata={str(k): str(v) for k, v in (metadata or {}).items()},
        description=description,
    )
    logger.info("requested snapshot %s (%s) of volume %s", name, snap.id, volume.name)
    return _snapshot_info(snap)


@task(name="wait-for-snapshots", cache_policy=NO_CACHE, retries=0)
def wait_for_snapshots(
    conn: Connection,
    snapshots: Sequence[SnapshotInfo],
    timeout: float,
    poll_interval: float = 5,
) -> list[SnapshotInfo]:
    """Wait until every snapshot is `available`; fail on the first in an error state.

    Transient cloud errors while polling are logged and polling goes on until the deadline (a
    task retry would restart the clock).

    Raises:
        SnapshotFailed: a snapshot reached `error` (or any `error_*`) or disappeared.
        SnapshotTimeout: some were not available after `timeout` seconds.
    """
    logger = get_run_logger()
    pending = {snap.id: snap for snap in snapshots}
    done: dict[str, SnapshotInfo] = {}

    def all_available() -> list[SnapshotInfo] | None:
        for snap_id, snap in list(pending.items()):
            try:
                current = _snapshot_info(conn.block_storage.get_snapshot(snap_id))
            except sdk_exceptions.NotFoundException:
                raise SnapshotFailed(
                    f"snapshot {snap.name} ({snap_id}) disappeared while being created"
                ) from None
            except Exception as error:
                if not is_transient_cloud_error(error):
                    raise
                logger.warning("polling snapshot %s: %s (will poll again)", snap.name, error)
                continue
            if current.status == "available":
                done[snap_id] = current
                del pending[snap_id]
                logger.info("snapshot %s is available", snap.name)
            elif current.status.startswith("error"):
                raise SnapshotFailed(
                    f"snapshot {snap.name} ({snap_id}) of volume {snap.volume_id} went to "
                    f"'{current.status}'"
                )
            else:
                pending[snap_id] = current
        return None if pending else [done[snap.id] for snap in snapshots]

    def timed_out() -> list[SnapshotInfo]:
        stuck = ", ".join(f"{s.name} ({s.id}) still '{s.status}'" for s in pending.values())
        raise SnapshotTimeout(f"snapshots not available after {timeout:g}s: {stuck}")

    return wait_until(all_available, timeout=timeout, interval=poll_interval, on_timeout=timed_out)


@cloud_task(name="list-snapshots", task_run_name="list-snapshots {volume.name}")
def list_snapshots(conn: Connection, volume: VolumeInfo) -> list[SnapshotInfo]:
    """Every snapshot of `volume`, whatever its name or status."""
    return [
        _snapshot_info(snap)
        for snap in conn.block_storage.snapshots(details=True, volume_id=volume.id)
        if snap.volume_id == volume.id
    ]


@cloud_task(name="delete-snapshot", task_run_name="delete-snapshot {snapshot.name}")
def delete_snapshot(
    conn: Connection, snapshot: SnapshotInfo, timeout: float = 300, poll_interval: float = 5
) -> None:
    """Delete a snapshot and wait until Cinder has removed it.

    Raises:
        SnapshotDeleteFailed: it went to `error_deleting`.
        SnapshotDeleteTimeout: it was still there after `timeout` (a SnapshotDeleteFailed too).
    """
    logger = get_run_logger()
    conn.block_storage.delete_snapshot(snapshot.id, ignore_missing=True)
    last: list[Any] = []

    def gone() -> bool | None:
        try:
            current = conn.block_storage.get_snapshot(snapshot.id)
        except sdk_exceptions.NotFoundException:
            return True
        if current.status == "error_deleting":
            raise SnapshotDeleteFailed(
                f"deleting snapshot {snapshot.name} ({snapshot.id}) failed: 'error_deleting'"
            )
        last[:] = [current]
        return None

    def timed_out() -> bool:
        raise SnapshotDeleteTimeout(
            f"snapshot {snapshot.name} ({snapshot.id}) still '{last[0].status}' "
            f"{timeout:g}s after its deletion"
        )

    wait_until(gone, timeout=timeout, interval=poll_interval, on_timeout=timed_out)
    logger.info("deleted snapshot %s (%s)", snapshot.name, snapshot.id)


def rotate_snapshots(
    conn: Connection,
    volume: VolumeInfo,
    keep: int,
    new_snapshot_ids: Iterable[str],
    *,
    delete_timeout: float = 300,
    poll_interval: float = 5,
    retries: int = CLOUD_RETRIES,
    retry_delay_seconds: float = CLOUD_RETRY_DELAY_SECONDS,
) -> tuple[RotationPlan, list[SnapshotInfo]]:
    """List, plan and delete one volume's old backup snapshots, oldest first.

    Call it only once every new snapshot is available. The first failed delete (after the
    task's transient-error retries) raises `RotationFailed` and nothing more is deleted.

    Returns:
        The plan, and the snapshots deleted (all of `plan.delete`).
    """
    retry = {"retries": retries, "retry_delay_seconds": retry_delay_seconds}
    plan = plan_rotation(
        list_snapshots.with_options(**retry)(conn, volume),
        volume_id=volume.id,
        pattern=volume.pattern,
        keep=keep,
        new_snapshot_ids=new_snapshot_ids,
    )
    delete = delete_snapshot.with_options(**retry)
    deleted: list[SnapshotInfo] = []
    for snap in plan.delete:
        try:
            delete(conn, snap, timeout=delete_timeout, poll_interval=poll_interval)
        except Exception as error:
            raise RotationFailed(volume, plan, deleted, snap, error) from error
        deleted.append(snap)
    return plan, deleted


class RotationFailed(OperationFailed):
    """Deleting an old snapshot failed; rotation stopped there. `deleted`: what went before."""

    def __init__(
        self,
        volume: VolumeInfo,
        plan: RotationPlan,
        deleted: list[SnapshotInfo],
        failed: SnapshotInfo,
        error: BaseException,
    ) -> None:
        before = ", ".join(s.name for s in deleted) or "none"
        super().__init__(
            f"rotation of volume {volume.name} stopped: deleting old snapshot {failed.name} "
            f"({failed.id}) failed: {type(error).__name__}: {error}. Deleted before it: "
            f"{before}; nothing else was deleted."
        )
        self.volume, self.plan, self.deleted, self.failed = volume, plan, list(deleted), failed
