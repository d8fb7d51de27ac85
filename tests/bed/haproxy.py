"""A real haproxy on loopback (Debian `haproxy`), for the stats socket's `show stat` output.

`haproxy -db -f CFG` runs in the foreground with a config written into the bed's directory:
a stats socket there (`level user`, the read-only level), TCP mode, and the backends the test
gives (haproxy's own `backend`/`server` lines). Servers point at ports where a
:class:`TcpListener` accepts (a check passes) or where nothing listens (the check is refused:
DOWN). :meth:`Haproxy.start` returns once every checked server has had its first check, so
`show stat` then shows UP or DOWN, never the initial state.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.bed import foreground
from tests.bed.ports import free_port

PROGRAMS = {"haproxy": "haproxy", "socat": "socat"}

#: Seconds between health checks of the bed's servers (sites use 1 s; the bed is impatient).
CHECK_INTERVAL = "200ms"


def missing_haproxy_programs() -> dict[str, str]:
    return {p: pkg for p, pkg in PROGRAMS.items() if shutil.which(p) is None}


class TcpListener:
    """A port on 127.0.0.1 that accepts connections and closes them (a live server)."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            connection.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join(5)


def dead_port() -> int:
    """A free port on 127.0.0.1 where nothing listens (a connection is refused)."""
    return free_port()


@dataclass
class Haproxy:
    """haproxy with the given backend sections; `stats_socket` is its stats socket."""

    base_dir: Path
    sections: str
    process: subprocess.Popen | None = None
    frontend_port: int = field(default_factory=free_port)

    @property
    def stats_socket(self) -> Path:
        return self.base_dir / "admin.sock"

    @property
    def config(self) -> Path:
        return self.base_dir / "haproxy.cfg"

    def start(self, timeout: float = 30) -> Haproxy:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f"global\n  stats socket {self.stats_socket} mode 600 level user\n"
            "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n"
            f"  timeout server 5s\n  default-server check inter {CHECK_INTERVAL} fall 1 rise 1\n"
            f"{self.sections}"
        )
        self.process = foreground.spawn(
            ["haproxy", "-db", "-f", str(self.config)], self.base_dir / "haproxy.out"
        )

        def checked() -> bool:
            if not self.stats_socket.exists():
                return False
            answer = self.ask("show stat")
            return "# pxname," in answer and not _checks_pending(answer)

        foreground.wait_ready(
            self.process, checked, what="haproxy (first checks)",
            logs=[self.base_dir / "haproxy.out"], timeout=timeout,
        )  # fmt: skip
        return self

    def ask(self, command: str) -> str:
        """One command on the stats socket (as socat would send it); the answer."""
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(str(self.stats_socket))
            client.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := client.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stop(self) -> None:
        foreground.stop(self.process)


def _checks_pending(show_stat: str) -> bool:
    """Whether a checked server has not had its first check yet (check_status INI...)."""
    lines = show_stat.splitlines()
    columns = lines[0][2:].split(",")
    check_status = columns.index("check_status")
    for line in lines[1:]:
        values = line.split(",")
        if len(values) > check_status and values[check_status].startswith("INI"):
            return True
    return False
