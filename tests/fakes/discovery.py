"""A course-discovery service fake: ``GET /api/v1/course_runs/`` paged as the real one pages.

A real ``http.server`` on 127.0.0.1, so ``launch-task`` in a subprocess talks to it over HTTP
exactly as to discovery: Django REST framework's limit/offset pagination (``count``, ``next`` as
an absolute URL, ``previous``, ``results``), ``partner`` filtering, and, when given client
credentials, the LMS's OAuth2 client-credentials token endpoint
(``POST /oauth2/v1/access_token``) with ``Authorization: JWT <token>`` required on the API.

Faults: ``fail_next(status, count)`` answers the next requests with an HTTP error;
``stall_next(seconds, count)`` delays them. ``requests`` records what was asked.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_PATH = "/api/v1/course_runs/"
TOKEN_PATH = "/oauth2/v1/access_token"
DEFAULT_LIMIT = 20


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None


class DiscoveryFake:
    """Serves ``course_runs`` (dicts as the API returns them) until :meth:`stop`."""

    def __init__(
        self,
        course_runs: list[dict],
        client_id: str | None = None,
        client_secret: str | None = None,
    ):
        self.course_runs = list(course_runs)
        self.client_id, self.client_secret = client_id, client_secret
        self.tokens: set[str] = set()
        self.requests: list[Request] = []
        self._faults: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- control ---------------------------------------------------------------------------
    def start(self) -> DiscoveryFake:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                fake._handle(self, "GET")

            def do_POST(self):  # noqa: N802
                fake._handle(self, "POST")

            def log_message(self, *args):  # keep pytest's output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_root_url(self) -> str:
        return self.base_url + "/api/v1/"

    @property
    def auth_url(self) -> str:
        return self.base_url + TOKEN_PATH

    def fail_next(self, status: int, count: int = 1) -> None:
        with self._lock:
            self._faults.extend([("status", status)] * count)

    def stall_next(self, seconds: float, count: int = 1) -> None:
        with self._lock:
            self._faults.extend([("stall", seconds)] * count)

    def page_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path == API_PATH]

    # --- serving ---------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(handler.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append(
                Request(method, url.path, query, handler.headers.get("Authorization"))
            )
            fault = self._faults.pop(0) if self._faults else None
        if fault and fault[0] == "stall":
            time.sleep(fault[1])
        elif fault:
            return self._send(handler, int(fault[1]), {"detail": "injected fault"})
        if method == "POST" and url.path == TOKEN_PATH:
            return self._token(handler, dict(urllib.parse.parse_qsl(body.decode())))
        if method == "GET" and url.path == API_PATH:
            return self._course_runs(handler, query)
        return self._send(handler, 404, {"detail": "Not found."})

    def _token(self, handler, form: dict[str, str]) -> None:
        if form.get("grant_type") != "client_credentials":
            return self._send(handler, 400, {"error": "unsupported_grant_type"})
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return self._send(handler, 401, {"error": "invalid_client"})
        token = secrets.token_hex(16)
        with self._lock:
            self.tokens.add(token)
        self._send(handler, 200, {"access_token": token, "expires_in": 3600, "token_type": "JWT"})

    def _course_runs(self, handler, query: dict[str, str]) -> None:
        if self.client_id is not None:
            scheme, _, token = (handler.headers.get("Authorization") or "").partition(" ")
            if scheme != "JWT" or token not in self.tokens:
                return self._send(
                    handler, 401, {"detail": "Authentication credentials were not provided."}
                )
        runs = self.course_runs
        if "partner" in query:
            runs = [r for r in runs if r.get("partner_short_code") == query["partner"]]
        try:
            limit = int(query.get("limit", DEFAULT_LIMIT))
            offset = int(query.get("offset", 0))
        except ValueError:
            return self._send(handler, 400, {"detail": "Invalid limit or offset."})
        page = runs[offset : offset + limit]
        host = handler.headers.get("Host")

        def link(new_offset: int) -> str:
            return f"http://{host}{API_PATH}?" + urllib.parse.urlencode(
                {**query, "limit": limit, "offset": new_offset}
            )

        self._send(
            handler,
            200,
            {
                "count": len(runs),
                "next": link(offset + limit) if offset + limit < len(runs) else None,
                "previous": link(max(offset - limit, 0)) if offset > 0 else None,
                "results": page,
            },
        )

    @staticmethod
    def _send(handler, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            pass
