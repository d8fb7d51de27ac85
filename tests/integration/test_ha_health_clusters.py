"""The RabbitMQ and Galera assessments on the output of real clusters on loopback.

A 3-node RabbitMQ cluster (`tests/bed/rabbitmq.py`) and a 3-node Galera cluster run as an
unprivileged user (`tests/bed/galera_cluster.py`), each started once for this module; the
tests run in file order, from healthy to a member stopped or killed (and, for Galera,
restarted). Start-up times are printed (`-s`) and recorded with the bed's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from domain.ha_health import assess_galera, assess_galera_cluster, assess_rabbitmq
from domain.polling import wait_until
from tests.bed.fixtures import _Stopwatch
from tests.bed.galera_cluster import GaleraCluster, missing_galera_cluster_programs
from tests.bed.programs import require_programs
from tests.bed.rabbitmq import RabbitCluster, missing_rabbitmq_programs

pytestmark = pytest.mark.slow


def _timeout(what: str):
    def raise_timeout():
        raise AssertionError(f"timed out waiting for {what}")

    return raise_timeout


# -- RabbitMQ ----------------------------------------------------------------------------------


def _running(cluster, fixture: str, what: str):
    """Start `cluster` (timed, recorded as `fixture`), yield it, stop it whatever happened."""
    started = time.perf_counter()
    try:
        with _Stopwatch(fixture):
            cluster.start()
        print(f"\n{what} started in {time.perf_counter() - started:.1f} s")
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory) -> Iterator[RabbitCluster]:
    require_programs(missing_rabbitmq_programs(), "RabbitMQ")
    cluster = RabbitCluster(tmp_path_factory.mktemp("rabbitmq"))
    yield from _running(cluster, "rabbitmq_cluster", "RabbitMQ 3-node cluster")


def test_rabbitmq_healthy_cluster_has_no_finding(rabbit):
    output = rabbit.nodes[0].cluster_status_json()
    assert sorted(json.loads(output)["running_nodes"]) == [n.name for n in rabbit.nodes]
    assert assess_rabbitmq(output, expected_nodes=3) == []
    # RabbitMQ 4.1.0-4.1.3 print running_nodes as one string: the same cluster, so healthy.
    as_string = json.loads(output)
    as_string["running_nodes"] = ", ".join(as_string["running_nodes"])
    assert assess_rabbitmq(json.dumps(as_string), expected_nodes=3) == []


def test_rabbitmq_more_nodes_expected_is_critical(rabbit):
    findings = assess_rabbitmq(rabbit.nodes[0].cluster_status_json(), expected_nodes=5)
    assert [(f.subject, f.severity) for f in findings] == [("cluster", "critical")]
    assert "3 disk nodes" in findings[0].message and "expected 5" in findings[0].message


def test_rabbitmq_memory_alarm_is_critical_and_names_the_node(rabbit):
    node = rabbit.nodes[1]
    node.ctl("set_vm_memory_high_watermark", "0.000001")
    try:
        findings = wait_until(
            lambda: assess_rabbitmq(rabbit.nodes[0].cluster_status_json()) or None,
            timeout=30, interval=0.5, on_timeout=_timeout("the memory alarm"),
        )  # fmt: skip
        assert [(f.subject, f.message) for f in findings] == [
            (node.name, f"alarm on {node.name}: memory alarm")
        ]
    finally:
        node.ctl("set_vm_memory_high_watermark", "0.4")
    wait_until(
        lambda: assess_rabbitmq(rabbit.nodes[0].cluster_status_json()) == [] or None,
        timeout=30, interval=0.5, on_timeout=_timeout("the memory alarm to clear"),
    )  # fmt: skip


def test_rabbitmq_stopped_node_is_critical_and_named(rabbit):
    stopped = rabbit.nodes[2]
    stopped.stop()
    output = rabbit.nodes[0].cluster_status_json()
    findings = assess_rabbitmq(output, expected_nodes=3)
    assert [(f.severity, f.subject, f.message) for f in findings] == [
        ("critical", stopped.name, f"disk node {stopped.name} is not running")
    ]
    as_string = json.loads(output)
    as_string["running_nodes"] = " ".join(as_string["running_nodes"])
    assert assess_rabbitmq(json.dumps(as_string)) == findings
    # The stopped node itself cannot answer: rabbitmqctl's error text, not JSON.
    done = stopped.ctl("cluster_status", "--formatter", "json", check=False)
    assert done.returncode != 0
    (finding,) = assess_rabbitmq(done.stdout or done.stderr)
    assert finding.critical and finding.subject == "cluster_status"


# -- Galera ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def galera_cluster() -> Iterator[GaleraCluster]:
    require_programs(missing_galera_cluster_programs(), "Galera cluster")
    yield from _running(GaleraCluster(size=3), "galera_cluster", "Galera 3-node cluster")


def test_galera_cluster_runs_unprivileged_and_is_healthy(galera_cluster):
    assert "root" not in galera_cluster.process_users()
    members = [node.address for node in galera_cluster.nodes]
    statuses = galera_cluster.statuses()
    assert assess_galera_cluster(statuses, expected_size=3) == []
    for address, status in statuses.items():
        assert assess_galera(status, expected_size=3, node=address, expected_members=members) == []


def test_galera_killed_node_is_named_and_restart_heals(galera_cluster):
    killed, survivor = galera_cluster.nodes[2], galera_cluster.nodes[0]
    members = [node.address for node in galera_cluster.nodes]
    killed.kill()
    # The survivors notice after Galera's suspect timeout (about 5 s).
    wait_until(
        lambda: survivor.wsrep_status().get("wsrep_cluster_size") == "2" or None,
        timeout=60, interval=0.5, on_timeout=_timeout("the cluster to shrink to 2"),
    )  # fmt: skip
    findings = assess_galera_cluster(galera_cluster.statuses(), expected_size=3)
    assert (killed.address, "critical") in [(f.subject, f.severity) for f in findings]
    assert any(
        f.subject == survivor.address and "wsrep_cluster_size is 2" in f.message for f in findings
    )
    seen_from_survivor = assess_galera(
        survivor.wsrep_status(), expected_size=3, node=survivor.address, expected_members=members
    )
    assert {f.subject for f in seen_from_survivor} == {survivor.address, killed.address}
    assert any(f.subject == killed.address and "not in the cluster" in f.message
               for f in seen_from_survivor)  # fmt: skip

    galera_cluster.restart(killed)
    assert assess_galera_cluster(galera_cluster.statuses(), expected_size=3) == []


def test_galera_single_node_desynced_is_critical(galera):
    rows = galera.root_sql("SHOW GLOBAL STATUS LIKE 'wsrep_%'").splitlines()[1:]
    status = dict(row.split("\t", 1) for row in rows)
    assert assess_galera(status, expected_size=1, node="db1") == []
    assert [f.message for f in assess_galera(status, expected_size=3, node="db1")] == [
        "wsrep_cluster_size is 1 on db1, expected 3"
    ]
    galera.set_desync(True)
    try:
        status["wsrep_local_state_comment"] = galera.wsrep_status("wsrep_local_state_comment")
    finally:
        galera.set_desync(False)
    (finding,) = assess_galera(status, expected_size=1, node="db1")
    assert finding.critical and finding.subject == "db1"
    assert finding.message == "wsrep_local_state_comment is Donor/Desynced on db1, expected Synced"
