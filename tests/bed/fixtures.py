"""pytest fixtures that start real services on 127.0.0.1 for the flows to work against.

Register with `pytest_plugins = ["tests.bed.fixtures"]` (in tests/conftest.py). Every service runs
in its own temporary directory and is stopped at teardown. A missing program FAILS the test with
the Debian package to install; these fixtures never skip. Mark tests using them
`@pytest.mark.slow`.

Start-up times are recorded (`bed_startup_times`) and summarised at the end of the session.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bed.mariadb import GaleraServer, MariaDBServer, missing_mariadb_binaries
from tests.bed.moto import MotoServer
from tests.bed.ports import free_port
from tests.bed.programs import require_programs
from tests.bed.sshd import (
    SshHost,
    current_user,
    generate_ed25519_key,
    loopback_alias_usable,
    missing_ssh_binaries,
)

SSH_HOSTS_COUNT = 3


class StartupTimes:
    """Seconds each fixture took to start its service, by fixture name."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = defaultdict(list)

    def record(self, fixture: str, seconds: float) -> None:
        self.seconds[fixture].append(seconds)

    def last(self, fixture: str) -> float:
        return self.seconds[fixture][-1]

    def summary_lines(self) -> list[str]:
        return [
            f"{name:<28} n={len(values):<3} min={min(values):.3f}s  max={max(values):.3f}s"
            for name, values in sorted(self.seconds.items())
        ]


_STARTUP_TIMES = StartupTimes()


class _Stopwatch:
    def __init__(self, fixture: str) -> None:
        self.fixture = fixture

    def __enter__(self) -> _Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc_info) -> None:
        if exc_info[0] is None:
            _STARTUP_TIMES.record(self.fixture, time.perf_counter() - self.started)


def pytest_terminal_summary(terminalreporter) -> None:
    if _STARTUP_TIMES.seconds:
        terminalreporter.write_sep("-", "test-bed start-up times")
        for line in _STARTUP_TIMES.summary_lines():
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def bed_startup_times() -> StartupTimes:
    """The recorded start-up times; `bed_startup_times.last("mariadb")` is the latest."""
    return _STARTUP_TIMES


# -- SSH ---------------------------------------------------------------------------------------


@pytest.fixture
def ssh_host_factory(tmp_path_factory) -> Iterator[Callable[..., SshHost]]:
    """Start SSH hosts on demand: `ssh_host_factory(name=None, address=None, user=None,
    environment=None)` (`environment`: variables set in every session, e.g. PATH).

    All hosts of one test authorize the same client key (`host.client_key`); each has its own
    host key, port and directory. All are stopped, with their sessions, at teardown.
    """
    require_programs(missing_ssh_binaries(), "SSH")
    client_key = generate_ed25519_key(tmp_path_factory.mktemp("ssh-client") / "id_ed25519")
    hosts: list[SshHost] = []

    def start_host(
        name: str | None = None,
        address: str = "127.0.0.1",
        user: str | None = None,
        environment: dict[str, str] | None = None,
    ):
        name = name or f"host{len(hosts) + 1}"
        host = SshHost(
            base_dir=tmp_path_factory.mktemp(f"sshd-{name}"), name=name, address=address,
            user=user or current_user(), client_key=client_key, environment=environment or {},
        )  # fmt: skip
        hosts.append(host)
        with _Stopwatch("ssh_host"):
            host.start()
        return host

    yield start_host
    for host in hosts:
        host.stop()


@pytest.fixture
def ssh_host(ssh_host_factory) -> SshHost:
    """One started SSH host on 127.0.0.1 (login: the current user, i.e. root in CI)."""
    return ssh_host_factory(name="host1")


@pytest.fixture
def ssh_hosts(ssh_host_factory) -> list[SshHost]:
    """Three SSH hosts, on 127.0.0.11-13 where this machine allows it (else 127.0.0.1)."""
    with _Stopwatch(f"ssh_hosts ({SSH_HOSTS_COUNT})"):
        return [
            ssh_host_factory(name=f"host{index}", address=_loopback_address(index))
            for index in range(1, SSH_HOSTS_COUNT + 1)
        ]


def _loopback_address(index: int) -> str:
    address = f"127.0.0.{10 + index}"
    return address if loopback_alias_usable(address) else "127.0.0.1"


# -- MariaDB -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mariadb_template_datadir(tmp_path_factory) -> Path:
    """A bootstrapped data directory (with the test user), copied by each MariaDB fixture."""
    require_programs(missing_mariadb_binaries(), "MariaDB")
    template = MariaDBServer(tmp_path_factory.mktemp("mariadb-template"))
    with _Stopwatch("mariadb bootstrap (session)"):
        template.start()
        template.stop()
    return template.datadir


@pytest.fixture
def mariadb(tmp_path_factory, mariadb_template_datadir) -> Iterator[MariaDBServer]:
    """A started MariaDB server with fresh data for this test; stopped at teardown.

    Function scoped: tests may stop it, break it or fill it. `connect()` gives pymysql as the
    test user over TCP; `root_sql()` runs SQL as root over the socket.
    """
    server = MariaDBServer(tmp_path_factory.mktemp("mariadb"))
    try:
        with _Stopwatch("mariadb"):
            server.seed_from(mariadb_template_datadir)
            server.start()
        yield server
    finally:
        server.stop()


@dataclass
class MariaDBViaSsh:
    """An SSH host on which an operator's service commands control a MariaDB server."""

    host: SshHost
    server: MariaDBServer
    control_script: Path

    @property
    def start_command(self) -> str:
        return self.server.control_command("start")

    @property
    def stop_command(self) -> str:
        return self.server.control_command("stop")

    @property
    def status_command(self) -> str:
        return self.server.control_command("status")


@pytest.fixture
def mariadb_via_ssh(ssh_host, mariadb) -> MariaDBViaSsh:
    """`ssh_host` + a started `mariadb` + `mariadb-ctl` start/stop/status commands for it.

    e.g. `host.run(bed.stop_command)` stops the database like an operator's stop command would;
    the mariadb fixture still stops whatever is running at teardown.
    """
    started = time.perf_counter()
    script = mariadb.write_control_script()
    # its cost is that of its two services plus writing the script
    dependencies = _STARTUP_TIMES.last("ssh_host") + _STARTUP_TIMES.last("mariadb")
    _STARTUP_TIMES.record("mariadb_via_ssh", dependencies + time.perf_counter() - started)
    return MariaDBViaSsh(host=ssh_host, server=mariadb, control_script=script)


@pytest.fixture
def galera(tmp_path_factory, mariadb_template_datadir) -> Iterator[GaleraServer]:
    """A started single-node Galera cluster (MariaDB with wsrep on); stopped at teardown."""
    require_programs(missing_mariadb_binaries(galera=True), "Galera")
    server = GaleraServer(tmp_path_factory.mktemp("galera"))
    try:
        with _Stopwatch("galera"):
            server.seed_from(mariadb_template_datadir)
            server.start()
        yield server
    finally:
        server.stop()


# -- AWS (moto) --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server for the whole session; use `aws` to get it reset for a test."""
    server = MotoServer()
    with _Stopwatch("moto_server (session)"):
        server.start()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server, monkeypatch) -> MotoServer:
    """The moto server emptied for this test, with AWS_* variables pointing at it.

    `aws.client("s3")`, `aws.endpoint_url`, `aws.client_kwargs()`, `aws.env()` (for
    subprocesses), `aws.reset()`.
    """
    with _Stopwatch("aws (reset)"):
        moto_server.reset()
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    return moto_server


# -- Prefect server ----------------------------------------------------------------------------

from tests.bed.prefect_server import PrefectServer  # noqa: E402


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory) -> Iterator[PrefectServer]:
    """A real `prefect server start` (SQLite, own PREFECT_HOME) on 127.0.0.1; stopped at teardown.

    Shared by the tests of one module (use distinct names). `prefect_server.api_url`,
    `.env()` for subprocesses, `.prefect("work-pool", "ls")` for the CLI, `.client()` for a
    SyncPrefectClient, `.start_worker(pool, cwd, log_path)`. The scheduler service is off.
    """
    server = PrefectServer(tmp_path_factory.mktemp("prefect-server"))
    try:
        with _Stopwatch("prefect_server (module)"):
            server.start()
        yield server
    finally:
        server.stop()


# -- HA services (corosync, haproxy, clustercheck) ------------------------------------------


def service_running(service, fixture: str, what: str) -> Iterator:
    """Start `service` (timed, recorded as `fixture`, printed), yield it, stop it at the end."""
    try:
        with _Stopwatch(fixture):
            service.start()
        print(f"\n{what} started in {_STARTUP_TIMES.last(fixture):.2f} s")
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def clustercheck(tmp_path_factory) -> Iterator:
    """Percona's clustercheck under a real xinetd (`tests/bed/clustercheck.py`), for the
    module; `clustercheck.point_at(galera.port)` makes it ask that Galera, `.url` is its URL."""
    from tests.bed.clustercheck import ClusterCheck, missing_clustercheck_programs
    from tests.bed.mariadb import TEST_PASSWORD, TEST_USER

    require_programs(missing_clustercheck_programs(), "clustercheck")
    check = ClusterCheck(tmp_path_factory.mktemp("clustercheck"), TEST_USER, TEST_PASSWORD)
    yield from service_running(check, "clustercheck xinetd (module)", "xinetd + clustercheck")


def ssh_hosts_sharing_a_port(
    tmp_path_factory, environments: list[dict[str, str]], fixture: str
) -> Iterator[list[SshHost]]:
    """One sshd per entry of `environments` on 127.0.0.11, .12, ... sharing one port (as real
    hosts share 22, so that one `SshIdentity` with one `port` reaches them all) and one client
    key; each session gets its entry's variables. Yields the hosts, stops them at the end."""
    require_programs(missing_ssh_binaries(), "SSH")
    addresses = [f"127.0.0.{11 + index}" for index in range(len(environments))]
    if not all(loopback_alias_usable(a) for a in addresses):
        pytest.fail(f"loopback aliases {', '.join(addresses)} are not usable here", pytrace=False)
    client_key = generate_ed25519_key(tmp_path_factory.mktemp("ssh-shared") / "id_ed25519")
    port = free_port(addresses[0])
    hosts: list[SshHost] = []
    try:
        with _Stopwatch(fixture):
            for number, (address, environment) in enumerate(
                zip(addresses, environments, strict=True), start=1
            ):
                host = SshHost(
                    base_dir=tmp_path_factory.mktemp(f"sshd-shared{number}"), name=f"host{number}",
                    address=address, port=port, client_key=client_key, environment=environment,
                )  # fmt: skip
                hosts.append(host)
                host.start()
        yield hosts
    finally:
        for host in hosts:
            host.stop()
