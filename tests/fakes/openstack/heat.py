"""Heat (orchestration v1) HTTP API for the fake; the work is done by :mod:`.stacks`.

As in Heat, ``/stacks/{name or id}`` (optionally followed by ``/resources``, ``/events``,
...) answers 302 to the canonical ``/stacks/{name}/{id}`` URL, keeping the method and the
query string; keystoneauth follows it. ``POST /stacks`` takes the unwrapped body openstacksdk
sends (``stack_name``, ``template``, ``files``, ``parameters``, ``environment``, ...).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from .app import HttpApp, Request, Response
from .records import ApiError
from .stack_model import Stack
from .stacks import HeatEngine

BASE = r"/heat/v1/(?P<project_id>[^/]+)"
LOOKUP = BASE + r"/stacks/(?P<ident>[^/]+)"
STACK = BASE + r"/stacks/(?P<name>[^/]+)/(?P<stack_id>[^/]+)"
_SUBPATHS = "resources|events|template|environment|files|outputs"


def _time(value: str | None) -> str | None:
    return value[:19] + "Z" if value else None


def stack_url(request: Request, project_id: str, stack: Stack) -> str:
    return f"{request.base_url}/heat/v1/{project_id}/stacks/{stack.name}/{stack.id}"


def stack_view(
    engine: HeatEngine, stack: Stack, request: Request, project_id: str, full: bool = True
) -> dict[str, Any]:
    """A stack as ``GET /stacks/{name}/{id}`` (full) or ``GET /stacks`` (summary) shows it."""
    view: dict[str, Any] = {
        "id": stack.id,
        "stack_name": stack.name,
        "description": stack.template.description,
        "stack_status": stack.stack_status,
        "stack_status_reason": stack.reason,
        "creation_time": _time(stack.created_at),
        "updated_time": _time(stack.updated_at),
        "deletion_time": _time(stack.deleted_at),
        "links": [{"href": stack_url(request, project_id, stack), "rel": "self"}],
        "tags": stack.tags or None,
        "parent": stack.parent,
        "stack_owner": engine.state.identity.username,
        "stack_user_project_id": project_id,
    }
    if full:
        view.update(
            {
                "template_description": stack.template.description,
                "parameters": {k: _text(v) for k, v in stack.params.items()},
                "disable_rollback": True,
                "timeout_mins": stack.timeout_mins,
                "capabilities": [],
                "notification_topics": [],
            }
        )
        if (request.arg("resolve_outputs") or "true").lower() != "false":
            view["outputs"] = engine.outputs(stack)
    return view


def _text(value: Any) -> str:
    """Heat shows every parameter value as a string."""
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _resource_view(stack: Stack, name: str, request: Request, project_id: str) -> dict[str, Any]:
    res = stack.resources[name]
    url = stack_url(request, project_id, stack)
    required_by = [
        other for other in stack.template.resources if name in stack.template.dependencies(other)
    ]
    return {
        "resource_name": res.name,
        "logical_resource_id": res.name,
        "physical_resource_id": res.physical_id,
        "resource_type": res.type,
        "resource_status": res.resource_status,
        "resource_status_reason": res.reason,
        "creation_time": _time(stack.created_at),
        "updated_time": _time(res.updated_at),
        "required_by": required_by,
        "links": [
            {"href": f"{url}/resources/{res.name}", "rel": "self"},
            {"href": url, "rel": "stack"},
        ],
    }


def _events(stack: Stack, request: Request, project_id: str, resource: str | None) -> Response:
    url = stack_url(request, project_id, stack)
    events = [e for e in stack.events if resource is None or e["resource_name"] == resource]
    status, kind = request.arg("resource_status"), request.arg("resource_type")
    if status:
        events = [
            e
            for e in events
            if status in (e["resource_status"], e["resource_status"].split("_")[-1])
        ]
    if kind:
        events = [e for e in events if e["resource_type"] == kind]
    action = request.arg("resource_action")
    if action:
        events = [e for e in events if e["resource_status"].startswith(action + "_")]
    if (request.arg("sort_dir") or "asc").lower() == "desc":
        events = list(reversed(events))
    marker = request.arg("marker")
    if marker:
        ids = [e["id"] for e in events]
        if marker not in ids:
            raise ApiError(404, f"The Event ({marker}) could not be found.", "EntityNotFound")
        events = events[ids.index(marker) + 1 :]
    limit = request.arg("limit")
    events = events[: int(limit)] if limit else events
    shown = []
    for event in events:
        res_url = f"{url}/resources/{event['resource_name']}"
        links = [
            {"href": f"{res_url}/events/{event['id']}", "rel": "self"},
            {"href": res_url, "rel": "resource"},
            {"href": url, "rel": "stack"},
        ]
        shown.append({**event, "links": links})
    return Response(200, {"events": shown})


def register(app: HttpApp, engine: HeatEngine) -> None:
    """Add Heat's routes to ``app``."""

    def stack(name: str, stack_id: str) -> Stack:
        found = engine.find(stack_id)
        if found.name != name:
            raise ApiError(404, f"The Stack ({name}) could not be found.", "EntityNotFound")
        return found

    def versions(request: Request) -> Response:
        version = {
            "id": "v1.0",
            "status": "CURRENT",
            "links": [{"rel": "self", "href": f"{request.base_url}/heat/v1/"}],
        }
        return Response(200, {"versions": [version]})

    def list_stacks(request: Request, project_id: str) -> Response:
        stacks = engine.listed()
        for field, attr in (("name", "name"), ("status", "status"), ("action", "action")):
            wanted = request.query.get(field)
            if wanted:
                stacks = [s for s in stacks if getattr(s, attr) in wanted]
        views = [stack_view(engine, s, request, project_id, full=False) for s in stacks]
        return Response(200, {"stacks": views})

    def create(request: Request, project_id: str) -> Response:
        body = request.json()
        created = engine.create(body)
        links = [{"href": stack_url(request, project_id, created), "rel": "self"}]
        return Response(201, {"stack": {"id": created.id, "links": links}})

    def lookup(request: Request, project_id: str, ident: str, rest: str = "") -> Response:
        found = engine.find(ident)
        location = stack_url(request, project_id, found) + rest
        query = urlencode(request.query, doseq=True)
        return Response(302, None, {"Location": location + (f"?{query}" if query else "")})

    def show(request: Request, project_id: str, name: str, stack_id: str) -> Response:
        found = stack(name, stack_id)
        return Response(200, {"stack": stack_view(engine, found, request, project_id)})

    def update(request: Request, project_id: str, name: str, stack_id: str) -> Response:
        body = request.json()
        engine.update(stack(name, stack_id), body, patch=request.method == "PATCH")
        return Response(202)

    def delete(request: Request, project_id: str, name: str, stack_id: str) -> Response:
        engine.delete(stack(name, stack_id))
        return Response(204)

    def resources(request: Request, project_id: str, name: str, stack_id: str) -> Response:
        found = stack(name, stack_id)
        views = [_resource_view(found, n, request, project_id) for n in found.resources]
        return Response(200, {"resources": views})

    def resource(request: Request, project_id: str, name: str, stack_id: str, res: str):
        found = stack(name, stack_id)
        if res not in found.resources:
            raise ApiError(404, f"The Resource ({res}) could not be found.", "EntityNotFound")
        return Response(200, {"resource": _resource_view(found, res, request, project_id)})

    def events(request: Request, project_id: str, name: str, stack_id: str, res: str = ""):
        return _events(stack(name, stack_id), request, project_id, res or None)

    def template(request: Request, project_id: str, name: str, stack_id: str) -> Response:
        return Response(200, stack(name, stack_id).template.body)

    def environment(request: Request, project_id: str, name: str, stack_id: str) -> Response:
        return Response(200, stack(name, stack_id).environment)

    def files(request: Request, project_id: str, name: str, stack_id: str) -> Response:
        return Response(200, stack(name, stack_id).template.files)

    def outputs(request: Request, project_id: str, name: str, stack_id: str) -> Response:
        return Response(200, {"outputs": engine.outputs(stack(name, stack_id))})

    router = app.router
    router.add("GET", "/heat", versions, auth=False)
    router.add("GET", BASE + "/stacks", list_stacks)
    router.add("POST", BASE + "/stacks", create)
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        router.add(method, LOOKUP, lookup)
    router.add("GET", LOOKUP + rf"(?P<rest>/(?:{_SUBPATHS})(?:/.*)?)", lookup)
    router.add("GET", STACK, show)
    router.add("PUT", STACK, update)
    router.add("PATCH", STACK, update)
    router.add("DELETE", STACK, delete)
    router.add("GET", STACK + "/resources", resources)
    router.add("GET", STACK + "/resources/(?P<res>[^/]+)", resource)
    router.add("GET", STACK + "/resources/(?P<res>[^/]+)/events", events)
    router.add("GET", STACK + "/events", events)
    router.add("GET", STACK + "/template", template)
    router.add("GET", STACK + "/environment", environment)
    router.add("GET", STACK + "/files", files)
    router.add("GET", STACK + "/outputs", outputs)
