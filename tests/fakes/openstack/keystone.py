"""Keystone v3 for the fake: version documents and password/token authentication.

``POST /identity/v3/auth/tokens`` checks the one user of :class:`~.state.Identity` (by name
or id, domain by name or id), issues a random token in ``X-Subject-Token`` and answers 201
with a project-scoped token whose catalog lists the fake's versioned endpoints. Every other
route of the fake requires one of the issued tokens.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .app import HttpApp, Request, Response
from .records import ApiError
from .state import CloudState

#: (service type, service name, path of the endpoint below the base URL).
CATALOG = (
    ("identity", "keystone", "/identity"),
    ("compute", "nova", "/compute/v2.1"),
    ("block-storage", "cinderv3", "/volume/v3/{project_id}"),
    ("volumev3", "cinderv3", "/volume/v3/{project_id}"),
    ("orchestration", "heat", "/heat/v1/{project_id}"),
)

_UNAUTHORIZED = "The request you have made requires authentication."


def _version(base_url: str) -> dict[str, Any]:
    return {
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": f"{base_url}/identity/v3/"}],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
        ],
    }


def catalog(state: CloudState, base_url: str) -> list[dict[str, Any]]:
    """The service catalog: every service with public, internal and admin endpoints."""
    identity = state.identity
    entries = []
    for service_type, name, path in CATALOG:
        url = base_url + path.format(project_id=identity.project_id)
        endpoints = [
            {
                "id": uuid.uuid5(uuid.NAMESPACE_URL, f"{service_type}/{interface}").hex,
                "interface": interface,
                "region": identity.region_name,
                "region_id": identity.region_name,
                "url": url,
            }
            for interface in ("public", "internal", "admin")
        ]
        entries.append(
            {
                "id": uuid.uuid5(uuid.NAMESPACE_URL, service_type).hex,
                "type": service_type,
                "name": name,
                "endpoints": endpoints,
            }
        )
    return entries


def _domain_matches(state: CloudState, domain: dict[str, Any] | None) -> bool:
    """Domains are optional in a request; when given they must name the Default domain."""
    if not domain:
        return True
    expected = state.identity.domain_name
    return domain.get("name") in (expected, None) and domain.get("id") in ("default", None)


def _check_password(state: CloudState, method: dict[str, Any]) -> None:
    identity = state.identity
    user = method.get("user") or {}
    name_ok = user.get("name") == identity.username or user.get("id") == identity.user_id
    if not (name_ok and _domain_matches(state, user.get("domain"))):
        raise ApiError(401, _UNAUTHORIZED)
    if user.get("password") != identity.password:
        raise ApiError(401, _UNAUTHORIZED)


def _check_scope(state: CloudState, scope: dict[str, Any] | None) -> bool:
    """True for a project scope on the fake's project, False for an unscoped request."""
    if not scope:
        return False
    project = scope.get("project")
    identity = state.identity
    if not project:
        raise ApiError(401, "Only project scope is supported by the fake.")
    if project.get("id") == identity.project_id or (
        project.get("name") == identity.project_name
        and _domain_matches(state, project.get("domain"))
    ):
        return True
    raise ApiError(401, f"Could not find project: {project.get('name') or project.get('id')}.")


def _issue_token(request: Request, state: CloudState) -> Response:
    auth = (request.json() or {}).get("auth") or {}
    identity_part = auth.get("identity") or {}
    methods = identity_part.get("methods") or []
    if "password" in methods:
        _check_password(state, identity_part.get("password") or {})
    elif "token" in methods:
        if (identity_part.get("token") or {}).get("id") not in state.tokens:
            raise ApiError(401, _UNAUTHORIZED)
    else:
        raise ApiError(401, f"Unsupported authentication methods: {methods}")
    scoped = _check_scope(state, auth.get("scope"))

    identity = state.identity
    now = datetime.now(UTC)
    domain = {"id": "default", "name": identity.domain_name}
    token: dict[str, Any] = {
        "methods": methods,
        "user": {
            "id": identity.user_id,
            "name": identity.username,
            "domain": domain,
            "password_expires_at": None,
        },
        "audit_ids": [uuid.uuid4().hex[:22]],
        "issued_at": now.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        "expires_at": (now + timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
    }
    if scoped:
        token["project"] = {
            "id": identity.project_id,
            "name": identity.project_name,
            "domain": domain,
        }
        token["is_domain"] = False
        token["roles"] = [{"id": uuid.uuid4().hex, "name": "member"}]
        token["catalog"] = catalog(state, request.base_url)
    token_id = "gAAAAA" + uuid.uuid4().hex
    state.tokens.add(token_id)
    return Response(201, {"token": token}, {"X-Subject-Token": token_id})


def register(app: HttpApp) -> None:
    """Add Keystone's routes to ``app``."""
    state = app.state

    def versions(request: Request) -> Response:
        return Response(200, {"versions": {"values": [_version(request.base_url)]}})

    def version(request: Request) -> Response:
        return Response(200, {"version": _version(request.base_url)})

    app.router.add("GET", "/identity", versions, auth=False)
    app.router.add("GET", "/identity/v3", version, auth=False)
    app.router.add(
        "POST", "/identity/v3/auth/tokens", lambda req: _issue_token(req, state), auth=False
    )
