"""The haproxy assessment on a real haproxy's stats socket, read over SSH.

One haproxy (Debian `haproxy`, `tests/bed/haproxy.py`) runs for this module with backends
in front of listening ports (checks pass) and of ports where nothing listens (checks are
refused); `show stat;show table` goes through `socat` on the bed's sshd, host key verified,
as the health check asks a load balancer.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest

from blocks.ssh import SshIdentity
from domain.ha_haproxy import assess_haproxy, parse_haproxy_stats
from tasks.ha_gathering import haproxy_command
from tests.bed.fixtures import service_running
from tests.bed.haproxy import Haproxy, TcpListener, dead_port, missing_haproxy_programs
from tests.bed.programs import require_programs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory) -> Iterator[Haproxy]:
    require_programs(missing_haproxy_programs(), "haproxy")
    live = [TcpListener() for _ in range(3)]
    up = [f"127.0.0.1:{listener.port}" for listener in live]
    down = f"127.0.0.1:{dead_port()}"
    sections = f"""
frontend mysql
  bind 127.0.0.1:{dead_port()}
  default_backend galera
backend galera
  server db1 {up[0]}
  server db2 {up[1]}
  server db3 {up[2]} backup
backend galera_sticky
  stick-table type ip size 1
  stick on dst
  server db1 {up[0]}
  server db2 {up[1]}
backend galera_backups
  server db1 {up[0]}
  server db2 {up[1]} backup
  server db3 {down} backup
backend web
  server web1 {up[0]}
  server web2 {down}
backend api
  server api1 {down}
backend queue
  server mq1 {up[0]}
  server mq2 {up[1]} disabled
"""
    try:
        proxy = Haproxy(tmp_path_factory.mktemp("haproxy"), sections)
        yield from service_running(proxy, "haproxy (module)", "haproxy")
    finally:
        for listener in live:
            listener.close()


@pytest.fixture
def stats_over_ssh(ssh_host, haproxy) -> str:
    """The stats socket's answer, asked through the bed's sshd with the gathering's command."""
    identity = SshIdentity(
        username=ssh_host.user, private_key=ssh_host.client_key.read_text(),
        known_hosts=ssh_host.known_hosts_line, port=ssh_host.port, connect_timeout=5,
    )  # fmt: skip
    with identity.session(ssh_host.address) as session:
        result = session.run(haproxy_command(str(haproxy.stats_socket)), timeout=30)
    assert result.exit_status == 0, result.stderr
    return result.stdout


def by_subject(findings):
    return {f.subject: (f.severity, f.message) for f in findings}


def test_the_stats_and_stick_tables_are_read_over_ssh(stats_over_ssh):
    stats = parse_haproxy_stats(stats_over_ssh)
    assert stats.stick_tables == {"galera_sticky"}
    servers = {(r["pxname"], r["svname"]): r["status"] for r in stats.rows}
    assert servers[("web", "web1")] == "UP" and servers[("web", "web2")] == "DOWN"
    assert servers[("queue", "mq2")] == "MAINT"


def test_a_down_server_and_a_backend_without_server_are_critical(stats_over_ssh):
    found = by_subject(assess_haproxy(stats_over_ssh, galera_backends=[], node="lb1"))
    assert found["web/web2"][0] == "critical"
    assert found["web/web2"][1].startswith("server web/web2 is DOWN on lb1 (L4CON, ")
    assert found["api/api1"][0] == "critical"
    assert found["api"] == ("critical", "backend api has no server UP on lb1")
    # a backup server counts as much as an active one: it is the failover
    assert found["galera_backups/db3"][0] == "critical"
    assert found["queue/mq2"] == ("warning", "server queue/mq2 is in maintenance on lb1")
    # a frontend whose backend works is OPEN; the web backend still has web1 UP
    assert "mysql" not in found and "web" not in found
    assert set(found) == {"web/web2", "api/api1", "api", "galera_backups/db3", "queue/mq2"}


def test_galera_with_two_active_writers_is_a_warning(stats_over_ssh):
    galera = ["galera", "galera_sticky", "galera_backups"]
    found = by_subject(assess_haproxy(stats_over_ssh, galera_backends=galera, node="lb1"))
    assert found["galera"] == (
        "warning",
        "Galera backend galera on lb1 sends writes to 2 servers at once (db1, db2): one writer "
        "at a time needs the others marked backup or a stick table (stick on dst)",
    )
    # a stick table pins writes to one server; backups take over only when db1 fails
    assert "galera_sticky" not in found and "galera_backups" not in found


def test_a_galera_backend_missing_from_the_stats_is_a_warning(stats_over_ssh):
    found = by_subject(assess_haproxy(stats_over_ssh, galera_backends=["mariadb"], node="lb1"))
    assert found["mariadb"] == ("warning", "no Galera backend mariadb in haproxy on lb1")


def test_no_stats_socket_is_one_critical_finding(ssh_host, haproxy):
    missing = haproxy.stats_socket.with_name("no-such.sock")
    done = ssh_host.run(haproxy_command(str(missing)))
    (finding,) = assess_haproxy(done.stdout + done.stderr, node="lb1")
    assert finding.critical and finding.subject == "lb1"
    assert finding.message.startswith("no stats from haproxy on lb1: ")
    assert "No such file or directory" in finding.message


def test_the_command_quotes_the_socket_path():
    assert haproxy_command("/run/my haproxy/admin.sock") == (
        "echo 'show stat;show table' | socat stdio "
        + shlex.quote("UNIX-CONNECT:/run/my haproxy/admin.sock")
    )
