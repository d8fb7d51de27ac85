"""Request handling of the OpenStack fake: routing, token checks, faults, request log.

:class:`HttpApp` turns a :class:`Request` into a :class:`Response`: it applies injected
latency and faults, finds the route, checks the ``X-Auth-Token``, and runs the handler while
holding the cloud's lock (after letting due transitions happen). Errors come back in each
service's own JSON shape (see :func:`error_body`). :mod:`.server` puts it on the network.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from typing import Any

from .records import ApiError
from .state import CloudState

#: First path segment -> service; decides the shape of error bodies.
SERVICES = {"identity": "keystone", "compute": "nova", "volume": "cinder", "heat": "heat"}

#: Fault names Nova and Cinder use as the single key of an error body.
_FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}


def error_body(service: str, status: int, message: str, error_type: str | None = None) -> Any:
    """The JSON body the real service sends with an error status."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    if service == "keystone":
        return {"error": {"code": status, "title": title, "message": message}}
    if service == "heat":
        return {
            "code": status,
            "title": title,
            "explanation": message,
            "error": {"type": error_type or title.replace(" ", ""), "message": message},
        }
    return {_FAULT_NAMES.get(status, "computeFault"): {"code": status, "message": message}}


@dataclass(frozen=True)
class Request:
    """One HTTP request as the handlers see it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    base_url: str

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (``{}`` when empty); a 400 for anything else."""
        if not self.body:
            return {}
        try:
            body = json.loads(self.body)
        except ValueError:
            raise ApiError(400, "Malformed request body") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Malformed request body: a JSON object is expected")
        return body

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    """A handler's answer: status, JSON-serialisable body (None: empty) and extra headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Response]
    authenticated: bool


@dataclass
class RequestRecord:
    """One served request, as kept in the request log."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    service: str
    duration: float
    body: Any


@dataclass
class _Rule:
    """A fault or latency rule: matches ``method`` (None: any) and a path regex."""

    method: str | None
    pattern: re.Pattern[str]
    remaining: int | None
    status: int = 0
    message: str = ""
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and bool(self.pattern.search(path))


class Router:
    """Routes are ``(method, full-path regex)``; the first match wins."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(
        self, method: str, pattern: str, handler: Callable[..., Response], *, auth: bool = True
    ) -> None:
        self.routes.append(Route(method, re.compile(f"^{pattern}$"), handler, auth))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """``(route, path groups, path known for another method)``."""
        other_method = False
        for route in self.routes:
            found = route.pattern.match(path)
            if found and route.method == method:
                return route, found.groupdict(), False
            other_method = other_method or bool(found)
        return None, {}, other_method


class HttpApp:
    """Dispatches requests to the service handlers, with faults, latency and a log."""

    def __init__(self, state: CloudState) -> None:
        self.state = state
        self.router = Router()
        self._rules_lock = threading.Lock()
        self._faults: list[_Rule] = []
        self._latencies: list[_Rule] = []
        self.log: list[RequestRecord] = []
        #: Tracebacks of handler crashes (answered 500); a healthy fake keeps this empty.
        self.internal_errors: list[str] = []

    # -- fault injection --------------------------------------------------------------------

    def add_fault(
        self, method: str | None, path: str, status: int, count: int | None, message: str
    ) -> None:
        rule = _Rule(method and method.upper(), re.compile(path), count, status, message)
        with self._rules_lock:
            self._faults.append(rule)

    def add_latency(self, method: str | None, path: str, seconds: float, count: int | None) -> None:
        rule = _Rule(method and method.upper(), re.compile(path), count, seconds=seconds)
        with self._rules_lock:
            self._latencies.append(rule)

    def records(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._rules_lock:
            return list(self.log)

    def clear_log(self) -> None:
        with self._rules_lock:
            self.log.clear()

    def clear_rules(self) -> None:
        with self._rules_lock:
            self._faults.clear()
            self._latencies.clear()

    def _take(self, rules: list[_Rule], method: str, path: str) -> list[_Rule]:
        """Matching rules, each use counted; exhausted rules are dropped."""
        with self._rules_lock:
            taken = [rule for rule in rules if rule.matches(method, path)]
            for rule in taken:
                if rule.remaining is not None:
                    rule.remaining -= 1
            rules[:] = [rule for rule in rules if rule.remaining is None or rule.remaining > 0]
            return taken

    # -- dispatch ---------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        started = time.monotonic()
        service = SERVICES.get(request.path.strip("/").split("/")[0], "unknown")
        delay = sum(
            rule.seconds for rule in self._take(self._latencies, request.method, request.path)
        )
        if delay:
            time.sleep(delay)
        try:
            response = self._respond(request, service)
        except ApiError as exc:
            response = Response(
                exc.status, error_body(service, exc.status, exc.message, exc.error_type)
            )
        except Exception:
            self.internal_errors.append(traceback.format_exc())
            print(self.internal_errors[-1], file=sys.stderr)
            response = Response(500, error_body(service, 500, "Internal error in the fake"))
        try:
            body = request.json() if request.body else None
        except ApiError:
            body = request.body.decode(errors="replace")
        record = RequestRecord(
            request.method,
            request.path,
            request.query,
            response.status,
            service,
            time.monotonic() - started,
            body,
        )
        with self._rules_lock:
            self.log.append(record)
        return response

    def _respond(self, request: Request, service: str) -> Response:
        faults = self._take(self._faults, request.method, request.path)
        if faults:
            rule = faults[0]
            raise ApiError(rule.status, rule.message)
        route, groups, other_method = self.router.match(request.method, request.path)
        if route is None:
            if other_method:
                raise ApiError(405, f"The method {request.method} is not allowed here.")
            raise ApiError(404, f"The resource could not be found: {request.path}")
        with self.state.lock:
            if route.authenticated and request.headers.get("X-Auth-Token") not in self.state.tokens:
                raise ApiError(401, "The request you have made requires authentication.")
            self.state.advance()
            return route.handler(request, **groups)
