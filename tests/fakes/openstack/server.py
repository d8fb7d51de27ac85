"""The HTTP server of the OpenStack fake: stdlib ``ThreadingHTTPServer`` in a thread.

Each connection is served by its own thread (HTTP/1.1 keep-alive, as openstacksdk's
connection pool expects); every request goes to :meth:`.app.HttpApp.dispatch`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .app import HttpApp, Request


class _Handler(BaseHTTPRequestHandler):
    """Feeds every request of a connection to the server's :class:`HttpApp`."""

    protocol_version = "HTTP/1.1"
    # One buffered write per response (flushed by the base class) and no Nagle: otherwise
    # headers and body leave in two packets and delayed ACKs add ~40 ms to every request.
    wbufsize = -1
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        request = Request(
            self.command,
            path,
            parse_qs(url.query, keep_blank_values=True),
            self.headers,
            body,
            self.server.base_url,
        )
        response = self.server.app.dispatch(request)
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        self.send_response(response.status)
        if response.body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Openstack-Request-Id", "req-" + str(uuid.uuid4()))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: the request log replaces the stderr access log."""


class _Server(ThreadingHTTPServer):
    """Keeps track of open connections so that :meth:`close_connections` can cut them."""

    daemon_threads = True

    def __init__(self, app: HttpApp, host: str, port: int) -> None:
        super().__init__((host, port), _Handler)
        self.app = app
        self.base_url = f"http://{host}:{self.server_address[1]}"
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class ServerThread:
    """Serves an :class:`HttpApp` on ``host:port`` (0: a free port) in a daemon thread."""

    def __init__(self, app: HttpApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server(app, host, port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, cut open keep-alive connections, release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.close_connections()
        self._server.server_close()
