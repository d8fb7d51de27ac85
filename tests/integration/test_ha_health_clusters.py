"""The RabbitMQ and Galera assessments on the output of real clusters on loopback.

A 3-node RabbitMQ cluster (`tests/bed/rabbitmq.py`) and a 3-node Galera cluster run as an
unprivileged user (`tests/bed/galera_cluster.py`), each started once for this module; the
tests run in file order, from healthy to a member stopped or killed (and, for Galera,
restarted). Start-up times are printed (`-s`) and recorded with the bed's.

check-ha-health also runs against the RabbitMQ cluster: three sshd hosts on 127.0.0.11-13
(one port, as real hosts share 22), each session's environment pointing
`rabbitmqctl cluster_status --formatter json` at that host's node, and a Prefect test server
started only for those tests.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from blocks.ssh import SshIdentity
from domain.ha_health import assess_galera, assess_galera_cluster, assess_rabbitmq
from domain.polling import wait_until
from flows.ha_health import HealthChecks, check_ha_health
from tests.bed.fixtures import _STARTUP_TIMES, service_running, ssh_hosts_sharing_a_port
from tests.bed.galera_cluster import GaleraCluster, missing_galera_cluster_programs
from tests.bed.programs import require_programs
from tests.bed.rabbitmq import RABBITMQ_BIN, RabbitCluster, missing_rabbitmq_programs
from tests.bed.sshd import SshHost, known_hosts_text

pytestmark = pytest.mark.slow


def _timeout(what: str):
    def raise_timeout():
        raise AssertionError(f"timed out waiting for {what}")

    return raise_timeout


# -- RabbitMQ ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory) -> Iterator[RabbitCluster]:
    require_programs(missing_rabbitmq_programs(), "RabbitMQ")
    cluster = RabbitCluster(tmp_path_factory.mktemp("rabbitmq"))
    yield from service_running(cluster, "rabbitmq_cluster", "RabbitMQ 3-node cluster")


def test_rabbitmq_healthy_cluster_has_no_finding(rabbit):
    output = rabbit.nodes[0].cluster_status_json()
    assert sorted(json.loads(output)["running_nodes"]) == [n.name for n in rabbit.nodes]
    assert assess_rabbitmq(output, expected_nodes=3) == []
    # RabbitMQ 4.1.0-4.1.3 print running_nodes as one string: the same cluster, so healthy.
    as_string = json.loads(output)
    as_string["running_nodes"] = ", ".join(as_string["running_nodes"])
    assert assess_rabbitmq(json.dumps(as_string), expected_nodes=3) == []


@pytest.fixture(scope="module")
def rabbit_hosts(rabbit, tmp_path_factory) -> Iterator[list[SshHost]]:
    """An sshd per RabbitMQ node, on 127.0.0.11-13 and one port, its sessions talking to it."""
    environments = []
    for node in rabbit.nodes:
        env = node.env()
        environment = {name: env[name] for name in ("ERL_EPMD_PORT", "RABBITMQ_USE_LONGNAME")}
        # sshd sets HOME itself, and the node is not rabbit@<hostname>: the command takes the
        # cookie's directory and the host's node name from these.
        environment["BED_RABBITMQ_HOME"] = env["HOME"]
        environment["BED_RABBITMQ_NODE"] = node.name
        environments.append(environment)
    yield from ssh_hosts_sharing_a_port(
        tmp_path_factory, environments, "ssh_hosts for rabbitmq (module)"
    )


@pytest.fixture(scope="module")
def rabbit_site(rabbit_hosts, tmp_path_factory) -> Iterator[dict]:
    """A Prefect test server (this module only), the SSH block and the inventory of 3 hosts."""
    started = time.perf_counter()
    with (
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        prefect_test_harness(server_startup_timeout=60),
    ):
        _STARTUP_TIMES.record("prefect_test_harness (rabbitmq)", time.perf_counter() - started)
        block = f"rabbit-ssh-{uuid.uuid4().hex[:8]}"
        first = rabbit_hosts[0]
        SshIdentity(
            username=first.user, private_key=first.client_key.read_text(),
            known_hosts=known_hosts_text(rabbit_hosts), port=first.port, connect_timeout=5,
        ).save(block)  # fmt: skip
        inventory = tmp_path_factory.mktemp("rabbit-inventory") / "inventory.json"
        inventory.write_text(json.dumps({"backend_servers": [h.address for h in rabbit_hosts]}))
        yield {"block": block, "inventory": str(inventory)}


def run_rabbitmq_health(site):
    """check-ha-health with only the RabbitMQ check, on the three hosts; its final state."""
    only_rabbitmq = HealthChecks(
        pacemaker=False, galera=False, vip=False, rabbitmq=True, backup_record_path=None,
        # The bed's rabbitmqctl (Debian's /usr/sbin one switches to the rabbitmq user and its
        # cookie), asking the host's own node as a real host's rabbitmqctl does.
        rabbitmq_command=f'HOME="$BED_RABBITMQ_HOME" {RABBITMQ_BIN}/rabbitmqctl '
        '--node "$BED_RABBITMQ_NODE" cluster_status --formatter json',
    )  # fmt: skip
    return check_ha_health(
        site["inventory"], ssh_block=site["block"], checks=only_rabbitmq, lint=False,
        return_state=True,
    )  # fmt: skip


def table_rows(flow_run_id) -> list[dict]:
    async def read():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )

    (artifact,) = [a for a in asyncio.run(read()) if a.type == "table"]
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def test_check_ha_health_reads_each_rabbitmq_node_over_ssh(rabbit, rabbit_hosts, rabbit_site):
    state = run_rabbitmq_health(rabbit_site)
    assert state.is_completed(), state.message
    assert table_rows(state.state_details.flow_run_id) == [
        {"component": "rabbitmq", "node": host.address, "state": "ok", "finding": ""}
        for host in rabbit_hosts
    ]


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


def test_check_ha_health_names_the_stopped_rabbitmq_node_and_fails(
    rabbit, rabbit_hosts, rabbit_site
):
    stopped = rabbit.nodes[2]  # stopped by the test above
    state = run_rabbitmq_health(rabbit_site)
    assert state.is_failed()
    assert f"first: rabbitmq {stopped.name}: disk node {stopped.name} is not running" in (
        state.message
    )
    rows = table_rows(state.state_details.flow_run_id)
    assert rows[:2] == [
        {"component": "rabbitmq", "node": host.address, "state": "critical",
         "finding": f"{stopped.name}: disk node {stopped.name} is not running"}
        for host in rabbit_hosts[:2]
    ]  # fmt: skip
    # The stopped node's own host cannot answer: rabbitmqctl's error, critical on that host.
    assert rows[2]["node"] == rabbit_hosts[2].address and rows[2]["state"] == "critical"
    assert rows[2]["finding"].startswith("cluster_status: ")


# -- Galera ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def galera_cluster() -> Iterator[GaleraCluster]:
    require_programs(missing_galera_cluster_programs(), "Galera cluster")
    yield from service_running(GaleraCluster(size=3), "galera_cluster", "Galera 3-node cluster")


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
