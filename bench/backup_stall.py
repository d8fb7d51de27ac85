"""Benchmark: the longest write stall a client sees while backup-backend-node runs, per mode.

    uv run python bench/backup_stall.py                 # 5 runs per backend and mode
    uv run python bench/backup_stall.py --runs 10 --no-galera

Real services from the test bed (tests/bed): an sshd host and MariaDB (and a single-node
Galera cluster) on 127.0.0.1, the OpenStack fake for Nova/Cinder (snapshots take 0.1 s), and a
temporary Prefect server. The real flow runs, unchanged, in each consistency mode, while a
writer thread INSERTs in a loop on its own connection (reconnecting at once when the server
goes away, as an application's pool would). A stall is the time between two consecutive
successful writes; the figure is the longest one seen during a run, next to the write-blocked
window the flow itself reports and the longest stall with no backup running.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pymysql  # noqa: E402

from tests.bed.mariadb import (  # noqa: E402
    TEST_PASSWORD,
    TEST_USER,
    GaleraServer,
    MariaDBServer,
)
from tests.bed.sshd import SshHost  # noqa: E402
from tests.fakes.openstack import OpenStackFake  # noqa: E402


class Writer(threading.Thread):
    """INSERTs one row after another; records when each succeeded."""

    def __init__(self, server: MariaDBServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.stop_event = threading.Event()
        self.successes: list[float] = []
        self.errors = 0

    def connect(self) -> pymysql.connections.Connection:
        return pymysql.connect(
            host="127.0.0.1", port=self.server.port, user=TEST_USER, password=TEST_PASSWORD,
            database="bench", autocommit=True, connect_timeout=2, read_timeout=60,
        )  # fmt: skip

    def run(self) -> None:
        conn = None
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = self.connect()
                with conn.cursor() as cursor:
                    cursor.execute("INSERT INTO writes (at) VALUES (NOW(6))")
                self.successes.append(time.perf_counter())
            except pymysql.MySQLError:
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.005)  # retry at once, as a connection pool would
        if conn is not None:
            conn.close()

    def longest_stall(self, start: float, end: float) -> float:
        times = [t for t in self.successes if start <= t <= end]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=end - start)


def prepare_database(server: MariaDBServer) -> None:
    server.root_sql(
        "CREATE DATABASE IF NOT EXISTS bench; CREATE TABLE IF NOT EXISTS bench.writes "
        "(id BIGINT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6)) ENGINE=InnoDB"
    )


def save_blocks(fake: OpenStackFake, host: SshHost, server: MariaDBServer, suffix: str):
    from blocks.database import MySqlDatabase
    from blocks.openstack import OpenStackCloud
    from blocks.ssh import SshIdentity
    from flows.backup import Access

    OpenStackCloud(**fake.credentials).save(f"bench-cloud-{suffix}", overwrite=True)
    SshIdentity(
        username=host.user, private_key=host.client_key.read_text(),
        known_hosts=host.known_hosts_line, port=host.port,
    ).save(f"bench-ssh-{suffix}", overwrite=True)  # fmt: skip
    MySqlDatabase(
        host="127.0.0.1", port=server.port, username=TEST_USER, password=TEST_PASSWORD,
        database="bench",
    ).save(f"bench-db-{suffix}", overwrite=True)  # fmt: skip
    return Access(
        openstack_block=f"bench-cloud-{suffix}",
        ssh_block=f"bench-ssh-{suffix}",
        database_block=f"bench-db-{suffix}",
    )


def measure(backend: str, server: MariaDBServer, host: SshHost, fake: OpenStackFake, runs: int):
    """Runs the flow `runs` times per mode against `server`; returns result rows."""
    from prefect import get_client

    from flows.backup import Consistency, Safety, Timeouts, VolumeSelection, backup_backend_node

    name = f"bench-{backend}"
    node = fake.add_server(name, addresses={"management": ["127.0.0.1"]})
    for pattern in ("mysql_data", "mongodb_data"):
        fake.add_volume(f"bench-{pattern}-{uuid.uuid4().hex[:12]}", attached_to=node.id)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(f"backup-{name}", 1)
    access = save_blocks(fake, host, server, backend)
    prepare_database(server)
    timeouts = Timeouts(poll_interval_seconds=0.05, cloud_retry_delay_seconds=0.5)

    writer = Writer(server)
    writer.start()
    time.sleep(1.0)
    quiet_start = time.perf_counter()
    time.sleep(2.0)
    baseline = writer.longest_stall(quiet_start, time.perf_counter())
    rows = []
    for mode in ("lock", "stop"):
        stalls, windows = [], []
        consistency = Consistency(
            mode=mode,
            stop_command=server.control_command("stop"),
            start_command=server.control_command("start"),
        )
        for _ in range(runs):
            start = time.perf_counter()
            summary = backup_backend_node(
                node=name, volumes=VolumeSelection(keep=2), consistency=consistency,
                safety=Safety(database_vip="192.0.2.10"), access=access, timeouts=timeouts,
            )  # fmt: skip
            time.sleep(0.3)  # let the writer get through after the run
            stalls.append(writer.longest_stall(start, time.perf_counter()))
            windows.append(summary["write_blocked_seconds"])
            time.sleep(0.3)
        rows.append((backend, mode, runs, stalls, windows, baseline))
    writer.stop_event.set()
    writer.join(10)
    print(f"  {backend}: {len(writer.successes)} writes, {writer.errors} failed attempts")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="backups per backend and mode")
    parser.add_argument("--no-galera", action="store_true", help="plain MariaDB only")
    args = parser.parse_args(argv)

    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    base = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    servers = {"mariadb": MariaDBServer(base / "mariadb")}
    if not args.no_galera:
        servers["galera"] = GaleraServer(base / "galera")
    host = SshHost(base / "sshd", name="backend")
    fake = OpenStackFake(snapshot_delay=0.1)
    rows = []
    settings = {
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
        # SQLite contention on the temporary server only (see tests/integration/backup)
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED: False,
    }
    try:
        host.start()
        fake.start()
        for server in servers.values():
            server.start()
            server.write_control_script()
        print("starting a temporary Prefect server ...")
        with temporary_settings(settings), prefect_test_harness(server_startup_timeout=60):
            for backend, server in servers.items():
                print(f"measuring {backend} ({args.runs} backups per mode) ...")
                rows += measure(backend, server, host, fake, args.runs)
    finally:
        for server in servers.values():
            server.stop()
        fake.stop()
        host.stop()

    print()
    print("Longest write stall seen by a client during a backup (seconds)")
    print(f"{'backend':<8} {'mode':<5} {'runs':>4} {'stall max':>10} {'median':>8} "
          f"{'flow window (median)':>21} {'no backup':>10}")  # fmt: skip
    for backend, mode, runs, stalls, windows, baseline in rows:
        print(f"{backend:<8} {mode:<5} {runs:>4} {max(stalls):>10.3f} "
              f"{statistics.median(stalls):>8.3f} {statistics.median(windows):>21.3f} "
              f"{baseline:>10.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
