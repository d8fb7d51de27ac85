"""A throwaway MariaDB server for tests: its own data directory, socket and TCP port on 127.0.0.1.

Bootstrapping a data directory takes 0.6-3 s (copying a bootstrapped one with `seed_from()` about
0.2 s); the server is ready about 0.2 s after it starts.

Besides `start()`/`stop()` from Python, `write_control_script()` generates `mariadb-ctl
start|stop|status|restart`, a shell script that starts mariadbd detached and stops it by its pid
file, like an operator's service command (usable over SSH). `stop()` and `is_running()` also see a
server started by that script. `GaleraServer` is the same server as a single-node Galera cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pymysql

from tests.bed.ports import free_port

TEST_USER = "bed"
TEST_PASSWORD = "bed-password"
GALERA_PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"


def mariadb_binaries_present() -> bool:
    return all(shutil.which(b) for b in ("mariadbd", "mariadb-install-db", "mariadb"))


def missing_mariadb_binaries(galera: bool = False) -> dict[str, str]:
    """Programs (or the Galera provider) this module needs that are missing -> Debian package."""
    needed = {
        "mariadbd": "mariadb-server", "mariadb-install-db": "mariadb-server",
        "mariadb": "mariadb-client", "mariadb-admin": "mariadb-client",
        "setsid": "util-linux", "nohup": "coreutils",
    }  # fmt: skip
    search_path = f"{os.environ.get('PATH', '')}:{SBIN_PATH}"
    missing = {
        name: pkg for name, pkg in needed.items() if not shutil.which(name, path=search_path)
    }
    if galera and not GALERA_PROVIDER.is_file():
        missing[str(GALERA_PROVIDER)] = "galera-4"
    return missing


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

    @property
    def control_script(self) -> Path:
        """Where `write_control_script()` puts `mariadb-ctl`."""
        return self.base_dir / "mariadb-ctl"

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
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}",
             f"--user={_user()}", "--auth-root-authentication-method=socket", "--skip-test-db"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def seed_from(self, source_datadir: Path) -> None:
        """Copy an already bootstrapped (and stopped) data directory instead of bootstrapping.

        Users created in the source (such as the test user) come along; faster than bootstrap.
        """
        if (self.datadir / "mysql").is_dir():
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source_datadir, self.datadir)

    def start(self, timeout: float = 30) -> MariaDBServer:
        if self.is_running():  # e.g. started by the control script
            self.wait_ready(timeout)
            return self
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
                raise RuntimeError(
                    f"mariadbd exited early; see {self.error_log}:\n{self._log_tail()}"
                )
            probe = subprocess.run(
                ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-e", "SELECT 1"],
                capture_output=True,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"mariadbd not ready after {timeout}s:\n{self._log_tail()}")

    def stop(self, timeout: float = 30) -> None:
        """Stop the server, whether `start()` or the control script started it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        detached = self._detached_process()
        if detached is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                detached.send_signal(signal.SIGTERM)
            if not _wait_gone(detached, timeout):
                with contextlib.suppress(psutil.NoSuchProcess):
                    detached.kill()
                _wait_gone(detached, 10)

    def running_pid(self) -> int | None:
        """The pid of this server's live mariadbd, however it was started; None if it is down."""
        if self.process is not None:
            if self.process.poll() is None:
                return self.process.pid
            self.process = None  # stopped behind our back, e.g. by the control script
        detached = self._detached_process()
        return detached.pid if detached is not None else None

    def is_running(self) -> bool:
        return self.running_pid() is not None

    def accepts_tcp(self, timeout: float = 2) -> bool:
        """True if something accepts TCP connections on this server's port."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout):
                return True
        except OSError:
            return False

    def write_control_script(self, start_timeout: int = 60, stop_timeout: int = 60) -> Path:
        """Generate `base_dir/mariadb-ctl {start|stop|status|restart}` and return its path.

        start: runs `server_command()` detached (setsid + nohup, output to `mariadbd.out`) and
        waits until the server answers on its socket; does nothing if it is already running.
        stop: SIGTERM to the pid in the pid file, then waits until the process is gone.
        status: exit 0 and "running (pid N)" if up, exit 3 and "stopped" if not (LSB codes).
        The data directory must be bootstrapped first (call `start()` once, or `seed_from()`).
        """
        self.base_dir.mkdir(parents=True, exist_ok=True)
        script = _CONTROL_SCRIPT.format(
            base_dir=self.base_dir,
            pid_file=shlex.quote(str(self.pid_file)),
            socket=shlex.quote(str(self.socket)),
            output=shlex.quote(str(self.base_dir / "mariadbd.out")),
            error_log=shlex.quote(str(self.error_log)),
            server_command=shlex.join(self.server_command()),
            start_timeout=start_timeout,
            stop_timeout=stop_timeout,
        )
        self.control_script.write_text(script)
        self.control_script.chmod(0o755)
        return self.control_script

    def control_command(self, action: str) -> str:
        """The shell command an operator's setting would hold, e.g. `/tmp/.../mariadb-ctl stop`."""
        if action not in ("start", "stop", "status", "restart"):
            raise ValueError(f"unknown mariadb-ctl action {action!r}")
        if not self.control_script.exists():
            self.write_control_script()
        return f"{shlex.quote(str(self.control_script))} {action}"

    def _detached_process(self) -> psutil.Process | None:
        """The live mariadbd named in our pid file (a server the control script started)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            process = psutil.Process(pid)
            if process.name() != "mariadbd" or process.status() == psutil.STATUS_ZOMBIE:
                return None
            return process
        except (OSError, ValueError, psutil.Error):
            return None

    def root_sql(self, sql: str) -> str:
        """Run SQL as root over the socket with the mariadb client; returns tab-separated output."""
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


@dataclass
class GaleraServer(MariaDBServer):
    """A MariaDB server running as a single-node Galera cluster (it bootstraps `gcomm://`).

    wsrep status is real: `wsrep_local_state_comment` is Synced, `SET GLOBAL wsrep_desync=ON`
    makes it Donor/Desynced. Galera's own ports (group communication, IST) are free ports on
    127.0.0.1, so several of these can run side by side.
    """

    cluster_name: str = "bed-cluster"
    galera_port: int = field(default_factory=free_port)
    ist_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        provider_options = ";".join([
            f"gmcast.listen_addr=tcp://127.0.0.1:{self.galera_port}",
            f"ist.recv_addr=127.0.0.1:{self.ist_port}",
            "gcache.size=16M",
        ])  # fmt: skip
        self.extra_args = [
            "--wsrep-on=ON", f"--wsrep-provider={GALERA_PROVIDER}",
            "--wsrep-cluster-address=gcomm://", f"--wsrep-cluster-name={self.cluster_name}",
            "--wsrep-node-name=bed-node-1", "--wsrep-node-address=127.0.0.1",
            f"--wsrep-provider-options={provider_options}",
            "--binlog-format=ROW", "--default-storage-engine=InnoDB",
            "--innodb-autoinc-lock-mode=2", "--innodb-flush-log-at-trx-commit=2",
            *self.extra_args,
        ]  # fmt: skip

    def wsrep_status(self, name: str) -> str | None:
        """One `SHOW GLOBAL STATUS` value, e.g. `wsrep_local_state_comment` -> 'Synced'."""
        rows = self.root_sql(f"SHOW GLOBAL STATUS LIKE '{name}'").splitlines()[1:]
        return rows[0].split("\t", 1)[1] if rows else None

    def set_desync(self, desync: bool) -> None:
        self.root_sql(f"SET GLOBAL wsrep_desync={'ON' if desync else 'OFF'}")


_CONTROL_SCRIPT = """\
#!/bin/sh
# mariadb-ctl: start|stop|status|restart the test-bed MariaDB server in {base_dir}
# Generated by tests/bed/mariadb.py; behaves like an operator's service command.
set -u
PID_FILE={pid_file}
SOCKET={socket}
OUTPUT={output}
ERROR_LOG={error_log}

running_pid() {{
    [ -r "$PID_FILE" ] || return 1
    pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = mariadbd ] || return 1
    # a killed server may linger as a zombie until its parent reaps it: that is not running
    state=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f1)
    [ "$state" != Z ] || return 1
    echo "$pid"
}}

do_start() {{
    if pid=$(running_pid); then
        echo "mariadbd already running (pid $pid)"
        return 0
    fi
    cd /
    setsid -w nohup {server_command} </dev/null >>"$OUTPUT" 2>&1 &
    launcher=$!
    tries=$(({start_timeout} * 10))
    while [ "$tries" -gt 0 ]; do
        if mariadb-admin --no-defaults --socket="$SOCKET" -uroot ping >/dev/null 2>&1; then
            echo "mariadbd started (pid $(running_pid || echo '?'))"
            return 0
        fi
        if ! kill -0 "$launcher" 2>/dev/null; then
            echo "mariadbd exited during start-up; see $ERROR_LOG:" >&2
            tail -n 20 "$ERROR_LOG" >&2
            return 1
        fi
        sleep 0.1
        tries=$((tries - 1))
    done
    echo "mariadbd not ready after {start_timeout}s; see $ERROR_LOG" >&2
    return 1
}}

do_stop() {{
    if ! pid=$(running_pid); then
        echo "mariadbd not running"
        return 0
    fi
    kill -TERM "$pid"
    tries=$(({stop_timeout} * 10))
    while [ "$tries" -gt 0 ]; do
        if ! running_pid >/dev/null; then
            echo "mariadbd stopped"
            return 0
        fi
        sleep 0.1
        tries=$((tries - 1))
    done
    echo "mariadbd (pid $pid) still running after {stop_timeout}s" >&2
    return 1
}}

case "${{1:-}}" in
    start) do_start ;;
    stop) do_stop ;;
    restart) do_stop && do_start ;;
    status)
        if pid=$(running_pid); then
            echo "mariadbd running (pid $pid)"
        else
            echo "mariadbd stopped"
            exit 3
        fi
        ;;
    *) echo "usage: $0 start|stop|status|restart" >&2; exit 2 ;;
esac
"""


def _wait_gone(process: psutil.Process, timeout: float) -> bool:
    """Wait until `process` has exited (a zombie counts as gone); False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
