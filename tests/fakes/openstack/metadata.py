"""The metadata sub-API shared by Nova servers and Cinder volumes/snapshots.

For a resource URL ``R``: ``GET R/metadata``; ``POST R/metadata`` merges; ``PUT R/metadata``
replaces; ``GET``/``PUT``/``DELETE R/metadata/{key}`` work on one item (``{"meta": {...}}``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .app import HttpApp, Request, Response
from .records import ApiError, timestamp


def _items(body: Any, key: str) -> dict[str, str]:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, dict):
        raise ApiError(400, f"Malformed request body: '{key}' must be an object")
    return {str(k): str(v) for k, v in value.items()}


def register_metadata(app: HttpApp, resource_pattern: str, lookup: Callable[..., Any]) -> None:
    """Add metadata routes below ``resource_pattern``; ``lookup(**groups)`` returns the record
    (anything with a ``metadata`` dict and an ``updated_at`` string) or raises a 404."""

    def show_all(request: Request, **groups: str) -> Response:
        return Response(200, {"metadata": dict(lookup(**groups).metadata)})

    def merge(request: Request, **groups: str) -> Response:
        record = lookup(**groups)
        record.metadata.update(_items(request.json(), "metadata"))
        record.updated_at = timestamp()
        return Response(200, {"metadata": dict(record.metadata)})

    def replace(request: Request, **groups: str) -> Response:
        record = lookup(**groups)
        record.metadata = _items(request.json(), "metadata")
        record.updated_at = timestamp()
        return Response(200, {"metadata": dict(record.metadata)})

    def show_item(request: Request, key: str, **groups: str) -> Response:
        record = lookup(**groups)
        if key not in record.metadata:
            raise ApiError(404, f"Metadata item {key} was not found")
        return Response(200, {"meta": {key: record.metadata[key]}})

    def set_item(request: Request, key: str, **groups: str) -> Response:
        record = lookup(**groups)
        meta = _items(request.json(), "meta")
        if list(meta) != [key]:
            raise ApiError(400, "Request body and URI mismatch")
        record.metadata.update(meta)
        record.updated_at = timestamp()
        return Response(200, {"meta": meta})

    def delete_item(request: Request, key: str, **groups: str) -> Response:
        record = lookup(**groups)
        if key not in record.metadata:
            raise ApiError(404, f"Metadata item {key} was not found")
        del record.metadata[key]
        record.updated_at = timestamp()
        return Response(200)

    base = f"{resource_pattern}/metadata"
    item = f"{base}/(?P<key>[^/]+)"
    app.router.add("GET", base, show_all)
    app.router.add("POST", base, merge)
    app.router.add("PUT", base, replace)
    app.router.add("GET", item, show_item)
    app.router.add("PUT", item, set_item)
    app.router.add("DELETE", item, delete_item)
