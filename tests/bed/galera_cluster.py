"""A real multi-node Galera cluster on loopback (Debian `mariadb-server`, `galera-4`).

The single-node `GaleraServer` (`tests/bed/mariadb.py`) bootstraps alone; here the first node
bootstraps (`gcomm://`) and the others join it through `gcomm://` of every member's group
port, receiving a full state transfer (rsync SST) into an empty data directory.

Joiners' rsync state transfer fails when mariadbd runs as root, so every node runs as an
unprivileged user: the current user, or Debian's `mysql` when the tests run as root
(`mariadbd --user=mysql` drops root's privileges before Galera and its SST scripts start).
That user must reach the data directories: the cluster lives in a directory of its own under
/tmp (pytest's temporary directories are private to the user running pytest), owned by that
user and removed by :meth:`GaleraCluster.stop`.

Every port (MySQL, group communication, IST, SST) is a free port on 127.0.0.1 and each node
announces `127.0.0.1:<mysql port>` as its incoming address, so `wsrep_incoming_addresses`
names the members. Three nodes form in about 10 s on the 2-core machine.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.bed.mariadb import GALERA_PROVIDER
from tests.bed.ports import free_port

PROGRAMS = {
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "mariadb": "mariadb-client",
    "rsync": "rsync",
    str(GALERA_PROVIDER): "galera-4",
}


def missing_galera_cluster_programs() -> dict[str, str]:
    return {
        program: package
        for program, package in PROGRAMS.items()
        if not (Path(program).exists() if program.startswith("/") else shutil.which(program))
    }


def service_user() -> str:
    """Who runs mariadbd: the current user, or `mysql` for root (see the module's docstring)."""
    if os.getuid() != 0:
        return pwd.getpwuid(os.getuid()).pw_name
    try:
        pwd.getpwnam("mysql")
    except KeyError:
        raise RuntimeError(
            "Galera cluster test bed: running as root needs the unprivileged user 'mysql' "
            "(created by Debian's mariadb-server)"
        ) from None
    return "mysql"


@dataclass
class GaleraNode:
    cluster: GaleraCluster
    number: int
    port: int = field(default_factory=free_port)
    group_port: int = field(default_factory=free_port)
    ist_port: int = field(default_factory=free_port)
    sst_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return f"galera{self.number}"

    @property
    def address(self) -> str:
        """How the node announces itself in `wsrep_incoming_addresses`."""
        return f"127.0.0.1:{self.port}"

    @property
    def directory(self) -> Path:
        return self.cluster.base_dir / self.name

    @property
    def socket(self) -> Path:
        return self.directory / "sock"

    def server_command(self, cluster_address: str) -> list[str]:
        provider_options = ";".join([
            f"gmcast.listen_addr=tcp://127.0.0.1:{self.group_port}",
            f"ist.recv_addr=127.0.0.1:{self.ist_port}",
            "gcache.size=16M",
        ])  # fmt: skip
        d = self.directory
        return [
            "mariadbd", "--no-defaults", f"--datadir={d / 'data'}", f"--socket={self.socket}",
            f"--port={self.port}", "--bind-address=127.0.0.1", f"--pid-file={d / 'pid'}",
            f"--log-error={d / 'error.log'}", f"--user={self.cluster.user}",
            "--skip-name-resolve", "--innodb-buffer-pool-size=32M",
            "--wsrep-on=ON", f"--wsrep-provider={GALERA_PROVIDER}",
            f"--wsrep-cluster-address={cluster_address}",
            f"--wsrep-cluster-name={self.cluster.name}", f"--wsrep-node-name={self.name}",
            f"--wsrep-node-address=127.0.0.1:{self.group_port}",
            f"--wsrep-node-incoming-address={self.address}",
            f"--wsrep-sst-receive-address=127.0.0.1:{self.sst_port}",
            "--wsrep-sst-method=rsync", f"--wsrep-provider-options={provider_options}",
            "--binlog-format=ROW", "--default-storage-engine=InnoDB",
            "--innodb-autoinc-lock-mode=2", "--innodb-flush-log-at-trx-commit=2",
        ]  # fmt: skip

    def start(self, cluster_address: str) -> None:
        """Start mariadbd (returns at once; :meth:`wait_synced` waits)."""
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        self.cluster.chown(self.directory)
        out = (self.directory / "mariadbd.out").open("ab")
        self.process = subprocess.Popen(
            self.server_command(cluster_address), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def wsrep_status(self, timeout: float = 10) -> dict[str, str]:
        """`SHOW GLOBAL STATUS LIKE 'wsrep_%'` as name -> value (root over the socket)."""
        done = subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "--batch",
             "--skip-column-names", f"--connect-timeout={int(timeout)}",
             "-e", "SHOW GLOBAL STATUS LIKE 'wsrep_%'"],
            capture_output=True, text=True, timeout=timeout + 5,
        )  # fmt: skip
        if done.returncode != 0:
            raise ConnectionError(f"{self.name}: {done.stderr.strip()}")
        return dict(line.split("\t", 1) for line in done.stdout.splitlines() if "\t" in line)

    def wait_synced(self, size: int, timeout: float = 120) -> dict[str, str]:
        """Until this node is Synced in a Primary cluster of `size`; returns its status."""
        deadline = time.monotonic() + timeout
        last: object = "no answer yet"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                status = self.wsrep_status()
            except (ConnectionError, subprocess.TimeoutExpired) as exc:
                last = exc
            else:
                last = status
                if (
                    status.get("wsrep_local_state_comment") == "Synced"
                    and status.get("wsrep_cluster_status") == "Primary"
                    and status.get("wsrep_cluster_size") == str(size)
                ):
                    return status
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not Synced in {size} nodes after {timeout}s: {last}")

    def pid(self) -> int | None:
        if self.process is not None and self.process.poll() is None:
            return self.process.pid
        return None

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug: no goodbye to the other members."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        for log in (self.directory / "error.log", self.directory / "mariadbd.out"):
            with contextlib.suppress(OSError):
                return f"--- {log}\n" + "\n".join(log.read_text().splitlines()[-lines:])
        return "(no log)"


@dataclass
class GaleraCluster:
    """`size` Galera nodes on 127.0.0.1 run by :func:`service_user`; :meth:`stop` ends them."""

    size: int = 3
    name: str = "bed-galera-cluster"
    user: str = field(default_factory=service_user)
    base_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="galera-bed-")))
    nodes: list[GaleraNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base_dir.chmod(0o755)
        self.chown(self.base_dir)
        self.nodes = [GaleraNode(self, number) for number in range(1, self.size + 1)]

    @property
    def cluster_address(self) -> str:
        return "gcomm://" + ",".join(f"127.0.0.1:{n.group_port}" for n in self.nodes)

    def chown(self, path: Path) -> None:
        if os.getuid() == 0:
            for item in [path, *path.rglob("*")]:
                shutil.chown(item, self.user, self.user)

    def start(self, timeout: float = 120) -> GaleraCluster:
        first = self.nodes[0]
        first.directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={first.directory / 'data'}",
             f"--user={self.user}", "--auth-root-authentication-method=socket", "--skip-test-db"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        first.start("gcomm://")
        first.wait_synced(1, timeout)
        for node in self.nodes[1:]:
            node.start(self.cluster_address)
        for node in self.nodes:
            node.wait_synced(self.size, timeout)
        return self

    def restart(self, node: GaleraNode, timeout: float = 120) -> None:
        """Start a stopped or killed member again; it rejoins the others (IST or SST)."""
        node.start(self.cluster_address)
        for member in self.nodes:
            member.wait_synced(self.size, timeout)

    def statuses(self) -> dict[str, dict[str, str] | str]:
        """Every node's wsrep status by node address, or why it could not be read."""
        result: dict[str, dict[str, str] | str] = {}
        for node in self.nodes:
            try:
                result[node.address] = node.wsrep_status(timeout=5)
            except (ConnectionError, subprocess.TimeoutExpired) as exc:
                result[node.address] = str(exc)
        return result

    def process_users(self) -> set[str]:
        """The users the running mariadbd processes run as (never root: see the docstring)."""
        return {psutil.Process(pid).username() for n in self.nodes if (pid := n.pid())}

    def stop(self) -> None:
        for node in reversed(self.nodes):
            with contextlib.suppress(Exception):
                node.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)
