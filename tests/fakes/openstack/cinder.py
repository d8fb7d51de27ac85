"""Cinder (block storage v3) for the fake: volumes, snapshots and their metadata.

Snapshots follow Cinder before microversion 3.66 (openstacksdk asks for 3.65 at most): an
``in-use`` volume can only be snapshotted with ``force: true``, otherwise 400. A snapshot is
``creating`` for :attr:`~.state.CloudState.snapshot_delay` seconds, then ``available`` (or the
outcome a test forced). The version documents report 3.60 as the highest microversion.
"""

from __future__ import annotations

from typing import Any

from .app import HttpApp, Request, Response
from .metadata import register_metadata
from .records import ApiError, Snapshot, Volume, timestamp
from .state import CloudState

BASE = r"/volume/v3/(?P<project_id>[^/]+)"
VOLUME = BASE + r"/volumes/(?P<volume_id>[^/]+)"
SNAPSHOT = BASE + r"/snapshots/(?P<snapshot_id>[^/]+)"
MAX_MICROVERSION = "3.60"

_TRUE = {"true", "1", "yes", "y", "on", "t"}
_FALSE = {"false", "0", "no", "n", "off", "f"}


def _versions(base_url: str) -> dict[str, Any]:
    version = {
        "id": "v3.0",
        "status": "CURRENT",
        "version": MAX_MICROVERSION,
        "min_version": "3.0",
        "updated": "2023-08-31T00:00:00Z",
        "links": [{"rel": "self", "href": f"{base_url}/volume/v3/"}],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}
        ],
    }
    return {"versions": [version]}


def parse_bool(value: Any, name: str) -> bool:
    """Cinder's strict boolean parsing of request fields such as ``force``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ApiError(400, f"Invalid value '{value}' for {name}: must be a boolean.")


def volume_view(state: CloudState, volume: Volume, base_url: str) -> dict[str, Any]:
    return {
        "id": volume.id,
        "name": volume.name,
        "status": volume.status,
        "size": volume.size,
        "attachments": [dict(a) for a in volume.attachments],
        "metadata": dict(volume.metadata),
        "description": volume.description,
        "volume_type": volume.volume_type,
        "availability_zone": "nova",
        "bootable": "false",
        "encrypted": False,
        "multiattach": False,
        "snapshot_id": None,
        "source_volid": None,
        "consistencygroup_id": None,
        "replication_status": None,
        "created_at": volume.created_at,
        "updated_at": volume.updated_at,
        "user_id": state.identity.user_id,
        "os-vol-tenant-attr:tenant_id": state.identity.project_id,
        "links": [{"rel": "self", "href": f"{base_url}/volume/v3/volumes/{volume.id}"}],
    }


def snapshot_view(state: CloudState, snap: Snapshot) -> dict[str, Any]:
    return {
        "id": snap.id,
        "name": snap.name,
        "status": snap.status,
        "size": snap.size,
        "volume_id": snap.volume_id,
        "description": snap.description,
        "metadata": dict(snap.metadata),
        "created_at": snap.created_at,
        "updated_at": snap.updated_at,
        "user_id": state.identity.user_id,
        "group_snapshot_id": None,
        "os-extended-snapshot-attributes:progress": "100%" if snap.status != "creating" else "0%",
        "os-extended-snapshot-attributes:project_id": state.identity.project_id,
    }


def _select(items: list[Any], request: Request, filters: tuple[str, ...]) -> list[Any]:
    """Filter on exact attribute values, then sort (Cinder's default: newest first), then
    page with ``marker``/``limit``."""
    for name in filters:
        wanted = request.arg(name)
        if wanted is not None:
            items = [item for item in items if getattr(item, name) == wanted]
    sort = request.arg("sort")
    key, direction = "created_at", request.arg("sort_dir", "desc")
    if sort:
        key, _, direction = sort.split(",")[0].partition(":")
        direction = direction or "desc"
    else:
        key = request.arg("sort_key", key) or key
    if key not in ("created_at", "updated_at", "name", "id", "status", "size"):
        raise ApiError(400, f"Invalid sort key {key}")
    items = sorted(items, key=lambda item: getattr(item, key) or "", reverse=direction == "desc")
    marker = request.arg("marker")
    if marker:
        ids = [item.id for item in items]
        if marker not in ids:
            raise ApiError(404, f"Marker {marker} could not be found.")
        items = items[ids.index(marker) + 1 :]
    limit = request.arg("limit")
    return items[: int(limit)] if limit else items


def register(app: HttpApp) -> None:
    """Add Cinder's routes to ``app``."""
    state = app.state

    def versions(request: Request, **_: str) -> Response:
        return Response(200, _versions(request.base_url))

    def list_volumes(request: Request, project_id: str, detail: bool = False) -> Response:
        volumes = _select(list(state.volumes.values()), request, ("status", "name"))
        if detail:
            return Response(
                200, {"volumes": [volume_view(state, v, request.base_url) for v in volumes]}
            )
        return Response(
            200, {"volumes": [{"id": v.id, "name": v.name, "links": []} for v in volumes]}
        )

    def create_volume(request: Request, project_id: str) -> Response:
        spec = request.json().get("volume")
        if not isinstance(spec, dict) or "size" not in spec:
            raise ApiError(400, "Missing required element 'volume' or its 'size'.")
        volume = state.add_volume(
            spec.get("name") or "",
            int(spec["size"]),
            description=spec.get("description"),
            metadata={str(k): str(v) for k, v in (spec.get("metadata") or {}).items()},
        )
        return Response(202, {"volume": volume_view(state, volume, request.base_url)})

    def show_volume(request: Request, project_id: str, volume_id: str) -> Response:
        volume = state.volume(volume_id)
        return Response(200, {"volume": volume_view(state, volume, request.base_url)})

    def delete_volume(request: Request, project_id: str, volume_id: str) -> Response:
        state.delete_volume(volume_id)
        return Response(202)

    def list_snapshots(request: Request, project_id: str) -> Response:
        snaps = _select(list(state.snapshots.values()), request, ("status", "name", "volume_id"))
        return Response(200, {"snapshots": [snapshot_view(state, s) for s in snaps]})

    def create_snapshot(request: Request, project_id: str) -> Response:
        spec = request.json().get("snapshot")
        if not isinstance(spec, dict) or not spec.get("volume_id"):
            raise ApiError(400, "Missing required element 'snapshot' or its 'volume_id'.")
        snap = state.create_snapshot(
            spec["volume_id"],
            spec.get("name") or spec.get("display_name"),
            force=parse_bool(spec.get("force", False), "force"),
            description=spec.get("description"),
            metadata={str(k): str(v) for k, v in (spec.get("metadata") or {}).items()},
        )
        return Response(202, {"snapshot": snapshot_view(state, snap)})

    def show_snapshot(request: Request, project_id: str, snapshot_id: str) -> Response:
        return Response(200, {"snapshot": snapshot_view(state, state.snapshot(snapshot_id))})

    def update_snapshot(request: Request, project_id: str, snapshot_id: str) -> Response:
        snap = state.snapshot(snapshot_id)
        spec = request.json().get("snapshot") or {}
        snap.name = spec.get("name", snap.name)
        snap.description = spec.get("description", snap.description)
        snap.updated_at = timestamp()
        return Response(200, {"snapshot": snapshot_view(state, snap)})

    def delete_snapshot(request: Request, project_id: str, snapshot_id: str) -> Response:
        state.delete_snapshot(snapshot_id)
        return Response(202)

    router = app.router
    router.add("GET", "/volume", versions, auth=False)
    router.add("GET", "/volume/v3", versions, auth=False)
    router.add("GET", BASE, versions, auth=False)
    router.add("GET", BASE + "/volumes", list_volumes)
    router.add("GET", BASE + "/volumes/detail", lambda r, **g: list_volumes(r, detail=True, **g))
    router.add("POST", BASE + "/volumes", create_volume)
    router.add("GET", VOLUME, show_volume)
    router.add("DELETE", VOLUME, delete_volume)
    router.add("GET", BASE + "/snapshots", list_snapshots)
    router.add("GET", BASE + "/snapshots/detail", list_snapshots)
    router.add("POST", BASE + "/snapshots", create_snapshot)
    router.add("GET", SNAPSHOT, show_snapshot)
    router.add("PUT", SNAPSHOT, update_snapshot)
    router.add("DELETE", SNAPSHOT, delete_snapshot)
    register_metadata(app, VOLUME, lambda project_id, volume_id: state.volume(volume_id))
    register_metadata(app, SNAPSHOT, lambda project_id, snapshot_id: state.snapshot(snapshot_id))
