"""A throwaway MariaDB server for tests: its own data directory, socket and TCP port on 127.0.0.1.

Bootstrapping a data directory takes 2-3 s; the server is ready about 0.2 s after it starts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

from tests.bed.ports import free_port

TEST_USER = "bed"
TEST_PASSWORD = "bed-password"


def mariadb_binaries_present() -> bool:
    return all(shutil.which(b) for b in ("mariadbd", "mariadb-install-db", "mariadb"))


@dataclass
class MariaDBServer:
    """One mariadbd process; `start()` bootstraps the data directory on first use."""

    base_dir: Path
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None

    @property
    def datadir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket(self) -> Path:
        return self.base_dir / "mysqld.sock"

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "mysqld.pid"

    @property
    def error_log(self) -> Path:
        return self.base_dir / "error.log"

    def server_command(self) -> list[str]:
        """The command line that runs this server in the foreground (also usable over SSH)."""
        return [
            "mariadbd", "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
            f"--port={self.port}", "--bind-address=127.0.0.1", f"--pid-file={self.pid_file}",
            f"--log-error={self.error_log}", f"--user={_user()}", "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M", *self.extra_args,
        ]  # fmt: skip

    def bootstrap(self) -> None:
        if (self.datadir / "mysql").is_dir():
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}", f"--user={_user()}",
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def start(self, timeout: float = 30) -> MariaDBServer:
        first_start = not (self.datadir / "mysql").is_dir()
        self.bootstrap()
        self.process = subprocess.Popen(
            self.server_command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.wait_ready(timeout)
        if first_start:
            self.root_sql(
                f"CREATE USER '{TEST_USER}'@'127.0.0.1' IDENTIFIED BY '{TEST_PASSWORD}';"
                f"GRANT ALL PRIVILEGES ON *.* TO '{TEST_USER}'@'127.0.0.1' WITH GRANT OPTION;"
            )
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited early; see {self.error_log}:\n{self._log_tail()}")
            probe = subprocess.run(
                ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-e", "SELECT 1"],
                capture_output=True,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"mariadbd not ready after {timeout}s:\n{self._log_tail()}")

    def stop(self, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def root_sql(self, sql: str) -> str:
        """Run SQL as root over the socket with the mariadb client; returns its tab-separated output."""
        result = subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "--batch", "-e", sql],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"mariadb client failed: {result.stderr.strip()}")
        return result.stdout

    def connect(self, database: str | None = None, **kwargs) -> pymysql.connections.Connection:
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user=TEST_USER, password=TEST_PASSWORD,
            database=database, autocommit=True, **kwargs,
        )  # fmt: skip

    def credentials(self) -> dict:
        """The upstream pipeline's credentials-file shape for this server."""
        return {"host": "127.0.0.1", "port": self.port, "username": TEST_USER,
                "password": TEST_PASSWORD}  # fmt: skip

    def write_credentials(self, path: Path) -> Path:
        path.write_text(json.dumps(self.credentials()))
        return path

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.error_log.read_text().splitlines()[-20:])
        except OSError:
            return "(no error log)"


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
