"""Nova (compute v2.1) for the fake: servers, their metadata, addresses and console output.

``GET servers/{id}`` answers 404 for anything that is not a server id, so openstacksdk's
``find_server(name)`` falls back to ``GET servers/detail?name=...`` as it does against Nova
(where ``name`` is a regular expression).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from .app import HttpApp, Request, Response
from .metadata import register_metadata
from .records import ApiError, Server
from .state import CloudState

BASE = r"/compute/v2\.1"
SERVER = BASE + r"/servers/(?P<server_id>[^/]+)"
MAX_MICROVERSION = "2.90"

_VM_STATES = {"ACTIVE": "active", "SHUTOFF": "stopped", "BUILD": "building", "ERROR": "error"}


def _version(base_url: str) -> dict[str, Any]:
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": MAX_MICROVERSION,
        "min_version": "2.1",
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": f"{base_url}/compute/v2.1/"}],
    }


def _links(base_url: str, server_id: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": f"{base_url}/compute/v2.1/servers/{server_id}"},
        {"rel": "bookmark", "href": f"{base_url}/compute/servers/{server_id}"},
    ]


def server_view(state: CloudState, server: Server, base_url: str) -> dict[str, Any]:
    """A server as ``GET servers/{id}`` shows it (microversion 2.47+ flavor format)."""
    attached = [
        {"id": volume.id, "delete_on_termination": False}
        for volume in state.volumes.values()
        if any(a["server_id"] == server.id for a in volume.attachments)
    ]
    return {
        "id": server.id,
        "name": server.name,
        "status": server.status,
        "addresses": server.addresses,
        "metadata": dict(server.metadata),
        "created": server.created_at[:19] + "Z",
        "updated": server.updated_at[:19] + "Z",
        "tenant_id": state.identity.project_id,
        "user_id": state.identity.user_id,
        "hostId": hashlib.sha224(server.id.encode()).hexdigest(),
        "image": {"id": server.image_id, "links": []} if server.image_id else "",
        "flavor": {
            "original_name": server.flavor,
            "vcpus": 4,
            "ram": 8192,
            "disk": 80,
            "ephemeral": 0,
            "swap": 0,
            "extra_specs": {},
        },
        "key_name": server.key_name,
        "accessIPv4": "",
        "accessIPv6": "",
        "config_drive": "",
        "progress": 0,
        "locked": False,
        "tags": [],
        "description": None,
        "security_groups": [{"name": "default"}],
        "OS-EXT-STS:vm_state": _VM_STATES.get(server.status, server.status.lower()),
        "OS-EXT-STS:power_state": 1 if server.status == "ACTIVE" else 4,
        "OS-EXT-STS:task_state": None,
        "OS-EXT-AZ:availability_zone": "nova",
        "OS-SRV-USG:launched_at": server.created_at,
        "OS-SRV-USG:terminated_at": None,
        "os-extended-volumes:volumes_attached": attached,
        "links": _links(base_url, server.id),
    }


def _filtered(state: CloudState, request: Request) -> list[Server]:
    """Servers newest first, filtered by ``name`` (a regex, as in Nova) and ``status``."""
    servers = list(reversed(state.servers.values()))
    name = request.arg("name")
    if name:
        try:
            pattern = re.compile(name)
        except re.error:
            raise ApiError(400, f"Invalid regular expression in name filter: {name}") from None
        servers = [s for s in servers if pattern.search(s.name)]
    status = request.arg("status")
    if status:
        servers = [s for s in servers if s.status.lower() == status.lower()]
    marker = request.arg("marker")
    if marker:
        ids = [s.id for s in servers]
        if marker not in ids:
            raise ApiError(400, f"marker [{marker}] not found")
        servers = servers[ids.index(marker) + 1 :]
    limit = request.arg("limit")
    return servers[: int(limit)] if limit else servers


def _console_output(server: Server, options: dict[str, Any] | None) -> Response:
    length = (options or {}).get("length")
    lines = server.console_output.splitlines(keepends=True)
    if length is not None and int(length) >= 0:
        lines = lines[-int(length) :] if int(length) else []
    return Response(200, {"output": "".join(lines)})


def register(app: HttpApp) -> None:
    """Add Nova's routes to ``app``."""
    state = app.state

    def versions(request: Request) -> Response:
        return Response(200, {"versions": [_version(request.base_url)]})

    def version(request: Request) -> Response:
        return Response(200, {"version": _version(request.base_url)})

    def list_servers(request: Request) -> Response:
        servers = [
            {"id": s.id, "name": s.name, "links": _links(request.base_url, s.id)}
            for s in _filtered(state, request)
        ]
        return Response(200, {"servers": servers})

    def list_details(request: Request) -> Response:
        servers = [server_view(state, s, request.base_url) for s in _filtered(state, request)]
        return Response(200, {"servers": servers})

    def show(request: Request, server_id: str) -> Response:
        server = state.server(server_id)
        return Response(200, {"server": server_view(state, server, request.base_url)})

    def delete(request: Request, server_id: str) -> Response:
        state.delete_server(server_id)
        return Response(204)

    def ips(request: Request, server_id: str) -> Response:
        return Response(200, {"addresses": state.server(server_id).addresses})

    def ips_of_network(request: Request, server_id: str, network: str) -> Response:
        addresses = state.server(server_id).addresses
        if network not in addresses:
            raise ApiError(404, "Instance is not a member of specified network")
        return Response(200, {network: addresses[network]})

    def volume_attachments(request: Request, server_id: str) -> Response:
        state.server(server_id)
        found = [
            {
                "id": a["attachment_id"],
                "volumeId": v.id,
                "serverId": server_id,
                "device": a["device"],
            }
            for v in state.volumes.values()
            for a in v.attachments
            if a["server_id"] == server_id
        ]
        return Response(200, {"volumeAttachments": found})

    def action(request: Request, server_id: str) -> Response:
        server = state.server(server_id)
        body = request.json()
        if not isinstance(body, dict) or len(body) != 1:
            raise ApiError(400, "Invalid action request: exactly one action expected")
        (name, options), *_ = body.items()
        if name == "os-getConsoleOutput":
            return _console_output(server, options)
        new_status = {"os-stop": "SHUTOFF", "os-start": "ACTIVE", "reboot": "ACTIVE"}.get(name)
        if new_status is None:
            raise ApiError(400, f"Action {name} is not supported by the fake")
        server.status = new_status
        return Response(202)

    router = app.router
    router.add("GET", "/compute", versions, auth=False)
    router.add("GET", BASE, version, auth=False)
    router.add("GET", BASE + "/servers", list_servers)
    router.add("GET", BASE + "/servers/detail", list_details)
    router.add("GET", SERVER, show)
    router.add("DELETE", SERVER, delete)
    router.add("GET", SERVER + "/ips", ips)
    router.add("GET", SERVER + "/ips/(?P<network>[^/]+)", ips_of_network)
    router.add("GET", SERVER + "/os-volume_attachments", volume_attachments)
    router.add("POST", SERVER + "/action", action)
    register_metadata(app, SERVER, lambda server_id: state.server(server_id))
