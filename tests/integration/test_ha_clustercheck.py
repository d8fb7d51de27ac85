"""The Galera HTTP check's assessment on real answers, asked over SSH.

Percona's `clustercheck` (the template Debian ships in `puppet-module-michaeltchapman-galera`,
rendered by Ruby's ERB) runs under a real xinetd for this module (the bed's `clustercheck`
fixture, `tests/bed/clustercheck.py`) and asks a real single-node Galera; `curl --include`
goes through the bed's sshd as the health check asks each node.
"""

from __future__ import annotations

import pytest

from domain.ha_clustercheck import assess_galera_http, parse_http_answer
from tasks.ha_gathering import galera_http_command
from tests.bed.ports import free_port

pytestmark = pytest.mark.slow


def ask(ssh_host, url: str) -> str:
    done = ssh_host.run(galera_http_command(url))
    return done.stdout + done.stderr


def test_a_synced_node_answers_200_and_has_no_finding(ssh_host, galera, clustercheck):
    clustercheck.point_at(galera.port)
    answer = ask(ssh_host, clustercheck.url)
    assert parse_http_answer(answer) == (200, "OK", "Percona XtraDB Cluster Node is synced.")
    assert assess_galera_http(answer, node="db1") == []


def test_a_desynced_node_answers_503_critical_naming_it(ssh_host, galera, clustercheck):
    clustercheck.point_at(galera.port)
    galera.set_desync(True)
    try:
        answer = ask(ssh_host, clustercheck.url)
    finally:
        galera.set_desync(False)
    (finding,) = assess_galera_http(answer, node="db1")
    assert (finding.component, finding.severity, finding.subject) == (
        "clustercheck", "critical", "db1"
    )  # fmt: skip
    assert finding.message == (
        "the Galera check on db1 answered 503 Service Unavailable: Percona XtraDB Cluster Node "
        "is not synced. (haproxy sends it no traffic)"
    )
    assert assess_galera_http(ask(ssh_host, clustercheck.url), node="db1") == []


def test_a_stopped_database_answers_503(ssh_host, galera, clustercheck):
    clustercheck.point_at(galera.port)
    galera.stop()
    (finding,) = assess_galera_http(ask(ssh_host, clustercheck.url), node="db1")
    assert finding.critical and "answered 503" in finding.message


def test_no_check_listening_is_critical(ssh_host):
    answer = ask(ssh_host, f"http://127.0.0.1:{free_port()}/")
    (finding,) = assess_galera_http(answer, node="db1")
    assert finding.critical and finding.subject == "db1"
    assert finding.message.startswith("no HTTP answer from the Galera check on db1: curl: (7)")
