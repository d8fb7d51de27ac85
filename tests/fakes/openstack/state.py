"""In-memory state of the OpenStack fake: servers, volumes, snapshots and their lifecycles.

Everything lives in one :class:`CloudState` guarded by one re-entrant lock. The HTTP layer
holds that lock while a handler runs, and so do the Python-side seeding and inspection
methods, so tests and the SDK (in the server's threads) never see half-made changes.

Time-driven transitions (a snapshot leaving ``creating``, a stack finishing its create) are
evaluated lazily: :meth:`CloudState.advance` applies whatever is due, and it runs before every
request and every inspection. No background timer threads are needed, and a test that never
looks at the cloud never races with it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .records import (
    SNAPSHOT_STUCK,
    ApiError,
    Identity,
    Server,
    Snapshot,
    Volume,
    new_id,
    normalise_addresses,
    timestamp,
)


class CloudState:
    """All resources of the fake plus the knobs that drive their lifecycles."""

    def __init__(self, identity: Identity | None = None) -> None:
        self.lock = threading.RLock()
        self.identity = identity or Identity()
        self.tokens: set[str] = set()
        self.servers: dict[str, Server] = {}
        self.volumes: dict[str, Volume] = {}
        self.snapshots: dict[str, Snapshot] = {}
        #: Heat stacks by id; the records belong to :mod:`tests.fakes.openstack.stacks`.
        self.stacks: dict[str, Any] = {}
        #: Seconds a new snapshot stays ``creating`` before reaching its outcome.
        self.snapshot_delay = 0.2
        #: Outcomes for the next created snapshots (SNAPSHOT_ERROR or SNAPSHOT_STUCK), in order.
        self.next_snapshot_outcomes: deque[str] = deque()
        #: Called by :meth:`advance` after the snapshots, with the current monotonic time.
        self.advance_hooks: list[Callable[[float], None]] = []
        #: Console logs of servers yet to boot, by server name (what cloud-init will print).
        self.boot_consoles: dict[str, str] = {}

    def reset(self) -> None:
        """Forget every resource and pending outcome; tokens and settings stay valid."""
        with self.lock:
            self.servers.clear()
            self.volumes.clear()
            self.snapshots.clear()
            self.stacks.clear()
            self.next_snapshot_outcomes.clear()
            self.boot_consoles.clear()

    def advance(self) -> None:
        """Apply every time-driven transition that is due."""
        with self.lock:
            now = time.monotonic()
            for snap in self.snapshots.values():
                if snap.status == "creating" and snap.ready_at is not None and now >= snap.ready_at:
                    snap.status = snap.outcome
                    snap.updated_at = timestamp()
            for hook in self.advance_hooks:
                hook(now)

    # -- lookups ----------------------------------------------------------------------------

    def server(self, server_id: str) -> Server:
        try:
            return self.servers[server_id]
        except KeyError:
            raise ApiError(404, f"Instance {server_id} could not be found.") from None

    def volume(self, volume_id: str) -> Volume:
        try:
            return self.volumes[volume_id]
        except KeyError:
            raise ApiError(404, f"Volume {volume_id} could not be found.") from None

    def snapshot(self, snapshot_id: str) -> Snapshot:
        try:
            return self.snapshots[snapshot_id]
        except KeyError:
            raise ApiError(404, f"Snapshot {snapshot_id} could not be found.") from None

    # -- servers and volumes ----------------------------------------------------------------

    def add_server(self, name: str, **fields: Any) -> Server:
        """Create a server; ``addresses`` may use the short form of :func:`normalise_addresses`."""
        with self.lock:
            fields["addresses"] = normalise_addresses(fields.get("addresses"))
            if not fields.get("console_output") and name in self.boot_consoles:
                fields["console_output"] = self.boot_consoles[name]
            server = Server(id=fields.pop("id", None) or new_id(), name=name, **fields)
            self.servers[server.id] = server
            return server

    def delete_server(self, server_id: str) -> None:
        """Delete a server, detaching its volumes first (as Nova does)."""
        with self.lock:
            self.server(server_id)
            for volume in self.volumes.values():
                if any(a["server_id"] == server_id for a in volume.attachments):
                    self.detach(volume.id, server_id)
            del self.servers[server_id]

    def add_volume(self, name: str, size: int = 10, **fields: Any) -> Volume:
        with self.lock:
            volume = Volume(id=fields.pop("id", None) or new_id(), name=name, size=size, **fields)
            self.volumes[volume.id] = volume
            return volume

    def attach(self, volume_id: str, server_id: str, device: str | None = None) -> dict[str, Any]:
        """Attach a volume to a server; the volume becomes ``in-use``. Returns the attachment."""
        with self.lock:
            volume = self.volume(volume_id)
            self.server(server_id)
            if volume.status not in ("available", "in-use"):
                raise ApiError(400, f"Invalid volume: volume {volume_id} is {volume.status}")
            if any(a["server_id"] == server_id for a in volume.attachments):
                raise ApiError(409, f"Volume {volume_id} is already attached to {server_id}")
            if device is None:
                used = {
                    a["device"]
                    for v in self.volumes.values()
                    for a in v.attachments
                    if a["server_id"] == server_id
                }
                device = next(f"/dev/vd{c}" for c in "bcdefghijklmnop" if f"/dev/vd{c}" not in used)
            attachment = {
                "id": volume_id,
                "attachment_id": new_id(),
                "volume_id": volume_id,
                "server_id": server_id,
                "host_name": None,
                "device": device,
                "attached_at": timestamp(),
            }
            volume.attachments.append(attachment)
            volume.status = "in-use"
            volume.updated_at = timestamp()
            return attachment

    def detach(self, volume_id: str, server_id: str | None = None) -> None:
        """Detach a volume from ``server_id`` (from every server when None)."""
        with self.lock:
            volume = self.volume(volume_id)
            volume.attachments = [
                a
                for a in volume.attachments
                if server_id is not None and a["server_id"] != server_id
            ]
            volume.status = "in-use" if volume.attachments else "available"
            volume.updated_at = timestamp()

    def delete_volume(self, volume_id: str) -> None:
        """Delete a volume; refused (400) while attached or while it has snapshots."""
        with self.lock:
            volume = self.volume(volume_id)
            if volume.attachments:
                raise ApiError(
                    400,
                    "Invalid volume: Volume status must be available or error or "
                    "error_restoring or error_extending or error_managing and must not be "
                    "migrating, attached, belong to a group, have snapshots, "
                    "awaiting a transfer, or be disassociated from snapshots after "
                    "volume transfer.",
                )
            if any(s.volume_id == volume_id for s in self.snapshots.values()):
                raise ApiError(
                    400, f"Invalid volume: Volume {volume_id} still has dependent snapshots."
                )
            del self.volumes[volume_id]

    # -- snapshots --------------------------------------------------------------------------

    def create_snapshot(
        self,
        volume_id: str,
        name: str | None = None,
        *,
        force: bool = False,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Snapshot:
        """Start a snapshot the way Cinder (before microversion 3.66) does: an ``in-use``
        volume needs ``force``. The snapshot is ``creating`` for :attr:`snapshot_delay` seconds,
        then ``available`` unless an outcome was queued in :attr:`next_snapshot_outcomes`."""
        with self.lock:
            volume = self.volume(volume_id)
            if volume.status == "in-use" and not force:
                raise ApiError(
                    400,
                    f"Invalid volume: Volume {volume_id} status must be available, "
                    "but current status is: in-use.",
                )
            if volume.status not in ("available", "in-use"):
                raise ApiError(
                    400,
                    f"Invalid volume: Volume {volume_id} status must be available or in-use, "
                    f"but current status is: {volume.status}.",
                )
            outcome = self.next_snapshot_outcomes.popleft() if self.next_snapshot_outcomes else ""
            snap = Snapshot(
                id=new_id(),
                name=name,
                volume_id=volume_id,
                size=volume.size,
                description=description,
                metadata=dict(metadata or {}),
            )
            self.snapshots[snap.id] = snap
            self.set_snapshot_outcome(snap, outcome or "available")
            return snap

    def set_snapshot_outcome(self, snap: Snapshot, outcome: str) -> None:
        """Make a snapshot end in ``available`` or ``error``, or stay ``creating`` (``stuck``).

        A ``creating`` snapshot keeps its deadline (a stuck one gets a fresh one); a snapshot
        that already finished takes the new status at once."""
        with self.lock:
            if outcome == SNAPSHOT_STUCK:
                snap.status, snap.ready_at = "creating", None
                return
            snap.outcome = outcome
            if snap.status != "creating":
                snap.status = outcome
                snap.updated_at = timestamp()
            elif snap.ready_at is None:
                snap.ready_at = time.monotonic() + self.snapshot_delay

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete a snapshot; Cinder refuses while it is still ``creating``."""
        with self.lock:
            snap = self.snapshot(snapshot_id)
            if snap.status not in ("available", "error", "error_deleting"):
                raise ApiError(
                    400,
                    "Invalid snapshot: Snapshot status must be available or error and must "
                    "not be part of a group.",
                )
            del self.snapshots[snapshot_id]
