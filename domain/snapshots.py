"""Backup snapshots: their names and which of them rotation deletes, computed without a cloud.

Backup snapshots are named `<pattern>-<server-uuid>-<YYYYmmdd-HHMMSS>` (UTC), as the original
backup playbook named them, so snapshots of existing sites keep rotating with new ones.
`tasks.openstack` lists, creates and deletes them in Cinder.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.errors import InvalidInput

SNAPSHOT_TIME_FORMAT = "%Y%m%d-%H%M%S"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@dataclass(frozen=True)
class SnapshotInfo:
    """A Cinder snapshot."""

    id: str
    name: str
    volume_id: str
    status: str
    created_at: str = ""
    updated_at: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


def snapshot_name(pattern: str, server_id: str, when: dt.datetime) -> str:
    """`<pattern>-<server-uuid>-<YYYYmmdd-HHMMSS>` with `when` in UTC."""
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return f"{pattern}-{server_id}-{when.strftime(SNAPSHOT_TIME_FORMAT)}"


def parse_snapshot_name(name: str, pattern: str) -> dt.datetime | None:
    """The UTC time in a backup snapshot name of `pattern`; None if it does not follow the scheme.

    Any server UUID is accepted: the snapshots of one volume stay one series even after the
    volume was attached to a rebuilt server.
    """
    match = re.fullmatch(rf"{re.escape(pattern)}-{_UUID}-(\d{{8}}-\d{{6}})", name or "")
    if not match:
        return None
    try:
        return dt.datetime.strptime(match.group(1), SNAPSHOT_TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class RotationPlan:
    """What rotation does to one volume's snapshots: `delete` oldest first."""

    keep: tuple[SnapshotInfo, ...]
    delete: tuple[SnapshotInfo, ...]
    ignored: tuple[SnapshotInfo, ...]


def plan_rotation(
    snapshots: Iterable[SnapshotInfo],
    *,
    volume_id: str,
    pattern: str,
    keep: int,
    new_snapshot_ids: Iterable[str] = (),
) -> RotationPlan:
    """Keep the `keep` newest available backup snapshots of a volume, new ones included.

    Only `available` snapshots of `volume_id` whose names follow the scheme for `pattern` take
    part; everything else (other names, other volumes, `creating`, `error`...) is ignored, never
    deleted. The new snapshots are always kept, whatever time their names carry.
    """
    if keep < 1:
        raise InvalidInput(f"keep must be at least 1 (the new snapshot), not {keep}")
    new_ids = set(new_snapshot_ids)
    ours, ignored = [], []
    for snap in snapshots:
        when = parse_snapshot_name(snap.name, pattern)
        if snap.volume_id == volume_id and snap.status == "available" and when is not None:
            ours.append((when, snap.created_at, snap.id, snap))
        else:
            ignored.append(snap)
    ours.sort(key=lambda item: item[:3], reverse=True)  # newest first
    new = [item[3] for item in ours if item[3].id in new_ids]
    older = [item[3] for item in ours if item[3].id not in new_ids]
    room = max(keep - len(new), 0)
    return RotationPlan(
        keep=tuple(new + older[:room]),
        delete=tuple(reversed(older[room:])),  # oldest first
        ignored=tuple(ignored),
    )
