"""A throwaway PostgreSQL cluster (Debian's `postgresql`) on 127.0.0.1, as the orchestrator's
database in tests.

PostgreSQL refuses to run as root, so the cluster belongs to a dedicated system user
(`OS_USER`, created when missing), whose name is also the cluster's superuser: `psql` run as
that user (`runuser -u`) logs in over the socket by peer authentication, as `postgres` does on
a Debian install. Other roles log in over TCP with SCRAM passwords, as Prefect will.
"""

from __future__ import annotations

import glob
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.bed.ports import free_port

OS_USER = "edxops-pgtest"


def postgres_bin() -> Path | None:
    """`/usr/lib/postgresql/<newest>/bin`, or None when Debian's postgresql is missing."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def ensure_os_user(name: str = OS_USER) -> str:
    """A system user without a login shell for the cluster; created when missing."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        name], check=True, timeout=30)  # fmt: skip
    return name


@dataclass
class PostgresCluster:
    """`initdb` + `pg_ctl start` in a directory of its own (not under pytest's root-only
    tmp_path: the cluster's user must reach it)."""

    user: str = OS_USER
    port: int = 0
    base_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pgbed-")))

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgresql.log"

    def _as_user(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", self.user, "--", *argv], capture_output=True,
                              text=True, timeout=timeout, check=True)  # fmt: skip

    def start(self) -> PostgresCluster:
        """initdb (first time only) and start; returns once it accepts connections."""
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError("no /usr/lib/postgresql/*/bin/initdb: apt-get install -y postgresql")
        ensure_os_user(self.user)
        shutil.chown(self.base_dir, self.user)
        self.port = self.port or free_port()
        if not self.data_dir.exists():
            self._as_user(str(binaries / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                          "--auth-local=peer", "--auth-host=scram-sha-256")  # fmt: skip
        options = f"-k {self.socket_dir} -p {self.port} -c listen_addresses=127.0.0.1"
        self._as_user(str(binaries / "pg_ctl"), "-D", str(self.data_dir), "-l",
                      str(self.log_path), "-o", options, "-w", "-t", "60", "start")  # fmt: skip
        return self

    def psql(self, sql: str, database: str = "postgres") -> str:
        """`sql` as the superuser; the unaligned, tuples-only output."""
        return self._as_user("psql", "-X", "-tA", "-v", "ON_ERROR_STOP=1", "-h",
                             str(self.socket_dir), "-p", str(self.port), "-d", database,
                             "-c", sql).stdout  # fmt: skip

    def stop(self) -> None:
        binaries = postgres_bin()
        if binaries and (self.data_dir / "postmaster.pid").exists():
            self._as_user(str(binaries / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                          "-w", "stop")  # fmt: skip

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)


def timed_start(cluster: PostgresCluster) -> float:
    """Start `cluster`; the seconds it took (initdb included)."""
    started = time.perf_counter()
    cluster.start()
    return time.perf_counter() - started
