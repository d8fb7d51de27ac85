"""check-ha-health against a real host: sshd on loopback, crm_mon on CIBs Pacemaker's tools put
in each state, a real single-node Galera; the table artifact and the run's final state."""

from __future__ import annotations

import asyncio
import json
import shlex
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.states import Completed, Running

from blocks.ssh import SshIdentity
from flows.ha_health import HealthChecks, check_ha_health
from tasks.ha_gathering import galera_http_command, haproxy_command
from tasks.node_record import NodeChange
from tests.bed import pacemaker
from tests.bed.corosync import Corosync, missing_corosync_programs
from tests.bed.fixtures import (
    _STARTUP_TIMES,
    _Stopwatch,
    service_running,
    ssh_hosts_sharing_a_port,
)
from tests.bed.haproxy import Haproxy, TcpListener, dead_port, missing_haproxy_programs
from tests.bed.programs import require_programs
from tests.bed.sshd import known_hosts_text

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cibs(tmp_path_factory):
    return pacemaker.cluster_states(tmp_path_factory.mktemp("ha-flow-cibs"))


@pytest.fixture
def site(ssh_host, galera, tmp_path):
    """The SSH block, and an inventory whose one backend is the test host."""
    block = f"ha-ssh-{uuid.uuid4().hex[:8]}"
    SshIdentity(
        username=ssh_host.user, private_key=ssh_host.client_key.read_text(),
        known_hosts=ssh_host.known_hosts_line, port=ssh_host.port, connect_timeout=5,
    ).save(block)  # fmt: skip
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"backend_servers": [ssh_host.address]}))
    galera_command = (
        f"mariadb --no-defaults --socket={shlex.quote(str(galera.socket))} -uroot --batch "
        "--skip-column-names -e \"SHOW GLOBAL STATUS LIKE 'wsrep_%'\""
    )
    return {"block": block, "inventory": str(inventory), "host": ssh_host,
            "galera_command": galera_command,
            "record_path": str(tmp_path / "node-record" / "backup-state.json")}  # fmt: skip


def checks(site, cib) -> HealthChecks:
    return HealthChecks(
        pacemaker_command=f"CIB_file={shlex.quote(str(cib))} crm_mon --one-shot --inactive "
        "--output-as=xml",
        galera_command=site["galera_command"],
        backup_record_path=site["record_path"],
    )


def run(site, cib, inventory=None, lint=False):
    """One check-ha-health run on the site's host; its final state."""
    return check_ha_health(
        str(inventory or site["inventory"]), ssh_block=site["block"], checks=checks(site, cib),
        lint=lint, return_state=True,
    )  # fmt: skip


def artifact_rows(flow_run_id) -> list[dict]:
    async def read():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )

    artifacts = asyncio.run(read())
    (artifact,) = [a for a in artifacts if a.type == "table"]
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


def test_healthy_cluster_completes_with_ok_rows(site, cibs):
    state = run(site, cibs["healthy"])
    assert state.is_completed(), state.message
    host = site["host"].address
    expected = [
        {"component": "pacemaker", "node": host, "state": "ok", "finding": ""},
        {"component": "galera", "node": host, "state": "ok", "finding": ""},
        {"component": "backup", "node": host, "state": "ok", "finding": ""},
    ]
    assert state.result() == expected
    assert artifact_rows(state.state_details.flow_run_id) == expected


def test_a_node_down_fails_the_run_naming_it(site, cibs):
    state = run(site, cibs["node_down"])
    assert state.is_failed()
    assert "first: pacemaker node3: node node3 is offline" in state.message
    rows = artifact_rows(state.state_details.flow_run_id)
    assert {"component": "pacemaker", "node": site["host"].address, "state": "critical",
            "finding": "node3: node node3 is offline"} in rows  # fmt: skip
    assert {"component": "galera", "node": site["host"].address, "state": "ok",
            "finding": ""} in rows  # fmt: skip


def test_the_topology_lint_runs_with_the_checks(site, cibs):
    state = run(site, cibs["healthy"], lint=True)
    assert state.is_failed()
    assert "first: topology mysql: mysql runs on a single node" in state.message
    rows = artifact_rows(state.state_details.flow_run_id)
    assert [r["node"] for r in rows if r["component"] == "topology"] == [
        "mysql", "mongodb", "load_balancer"
    ]  # fmt: skip


def test_an_unreachable_host_is_critical_and_named(site, cibs):
    site["host"].stop()
    state = run(site, cibs["healthy"])
    assert state.is_failed()
    host = site["host"].address
    assert f"first: ssh {host}:" in state.message
    rows = artifact_rows(state.state_details.flow_run_id)
    assert [(r["component"], r["node"], r["state"]) for r in rows] == [
        ("ssh", host, "critical"), ("galera", host, "critical"),
    ]  # fmt: skip


@pytest.mark.parametrize(("vip", "held"), [("127.0.0.1", True), ("192.0.2.10", False)])
def test_the_vip_must_be_on_exactly_one_host(site, cibs, vip, held, tmp_path):
    inventory = tmp_path / "with-vip.json"
    inventory.write_text(json.dumps({
        "backend_servers": {"hosts": [site["host"].address], "vars": {"galera_vip": vip}}
    }))  # fmt: skip
    state = run(site, cibs["healthy"], inventory=inventory)
    rows = artifact_rows(state.state_details.flow_run_id)
    (row,) = [r for r in rows if r["component"] == "vip"]
    if held:
        assert state.is_completed(), state.message
        assert row == {"component": "vip", "node": site["host"].address, "state": "ok",
                       "finding": ""}  # fmt: skip
    else:
        assert state.is_failed()
        assert row["state"] == "critical"
        assert row["finding"] == f"{vip}: VIP galera ({vip}) is on no node"


def test_each_of_several_vips_must_be_on_exactly_one_host(site, cibs, tmp_path):
    inventory = tmp_path / "with-vips.json"
    inventory.write_text(json.dumps({"backend_servers": {
        "hosts": [site["host"].address],
        "vars": {"galera_vip": "127.0.0.1", "vips": {"rabbitmq": "192.0.2.20", "api": "::1"}},
    }}))  # fmt: skip
    state = run(site, cibs["healthy"], inventory=inventory)
    assert state.is_failed()
    assert "first: vip 192.0.2.20: VIP rabbitmq (192.0.2.20) is on no node" in state.message
    rows = artifact_rows(state.state_details.flow_run_id)
    host = site["host"].address
    assert [(r["node"], r["state"], r["finding"]) for r in rows if r["component"] == "vip"] == [
        (host, "ok", ""),
        ("cluster", "critical", "192.0.2.20: VIP rabbitmq (192.0.2.20) is on no node"),
        (host, "ok", ""),
    ]


def test_a_record_left_by_a_dead_backup_run_is_critical(site, cibs):
    record = Path(site["record_path"])
    record.parent.mkdir()
    dead_run = str(uuid.uuid4())  # a run the Prefect API does not know: dead
    record.write_bytes(NodeChange.now(
        flow_run_id=dead_run, flow_run_name="gone-run", server="backend1", mode="lock",
        changes=("desync", "read_lock"), galera=True, cluster_size=3, lease_id=None,
    ).to_json())  # fmt: skip
    state = run(site, cibs["healthy"])
    assert state.is_failed()
    host = site["host"].address
    assert (
        f"first: backup {host}: backup run gone-run ({dead_run}) (unknown to the Prefect "
        f"API) left {host} desynced (wsrep_desync = ON) and read-locked" in state.message
    )
    rows = artifact_rows(state.state_details.flow_run_id)
    assert [(r["component"], r["state"]) for r in rows] == [
        ("pacemaker", "ok"), ("galera", "ok"), ("backup", "critical"),
    ]  # fmt: skip


def test_a_record_of_a_backup_at_work_is_a_warning(site, cibs):
    with get_client(sync_client=True) as client:
        running = client.create_flow_run(check_ha_health, state=Running())  # any live run
    record = Path(site["record_path"])
    record.parent.mkdir()
    # Written by this (live) process for a run the API shows Running: a backup at work.
    record.write_bytes(NodeChange.now(
        flow_run_id=str(running.id), flow_run_name=running.name, server="backend1",
        mode="lock", changes=("desync",), galera=True, cluster_size=3, lease_id=None,
    ).to_json())  # fmt: skip
    try:
        state = run(site, cibs["healthy"])
    finally:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(running.id, Completed(), force=True)
    assert state.is_completed(), state.message
    rows = artifact_rows(state.state_details.flow_run_id)
    (backup,) = [r for r in rows if r["component"] == "backup"]
    assert backup["state"] == "warning"
    words = f"backup run {running.name} ({running.id}) (Running) is at work: desynced"
    assert words in backup["finding"]


class CorosyncBed:
    """One real Corosync at a time for this module, restarted when another node count is asked."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.running: Corosync | None = None

    def with_nodes(self, nodes: int) -> Corosync:
        if self.running is not None and self.running.nodes == nodes:
            return self.running
        self.stop()
        self.running = Corosync(self.base_dir / f"nodes{nodes}", nodes=nodes)
        fixture = f"corosync ({nodes} configured)"
        with _Stopwatch(fixture):
            self.running.start()
        print(f"\n{fixture} started in {_STARTUP_TIMES.last(fixture):.2f} s")
        return self.running

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None


@pytest.fixture(scope="module")
def corosync_bed(tmp_path_factory):
    require_programs(missing_corosync_programs(), "Corosync")
    bed = CorosyncBed(tmp_path_factory.mktemp("corosync"))
    try:
        yield bed
    finally:
        bed.stop()


def run_with_corosync(site, cibs):
    with_quorum = checks(site, cibs["healthy"]).model_copy(update={"corosync": True})
    return check_ha_health(
        site["inventory"], ssh_block=site["block"], checks=with_quorum, lint=False,
        return_state=True,
    )  # fmt: skip


def test_corosync_quorum_is_read_over_ssh_through_the_flow(site, cibs, corosync_bed):
    corosync_bed.with_nodes(1)
    state = run_with_corosync(site, cibs)
    assert state.is_completed(), state.message
    host = site["host"].address
    assert [r["component"] for r in state.result()] == [
        "pacemaker", "corosync", "galera", "backup"
    ]  # fmt: skip
    assert {"component": "corosync", "node": host, "state": "ok", "finding": ""} in state.result()


def test_a_partition_without_quorum_fails_the_run_naming_the_host(site, cibs, corosync_bed):
    corosync_bed.with_nodes(3)  # three configured, this one alone: no quorum
    state = run_with_corosync(site, cibs)
    assert state.is_failed()
    host = site["host"].address
    assert (
        f"first: corosync {host}: {host}'s partition is not quorate (Quorate: No; total votes 1"
        in state.message
    )
    rows = artifact_rows(state.state_details.flow_run_id)
    assert [r["finding"] for r in rows if r["component"] == "corosync"] == [
        f"{host}: {host}'s partition is not quorate (Quorate: No; total votes 1, expected votes 3, "
        "quorum 2 Activity blocked)",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory):
    """A real haproxy whose Galera backend has db1 UP (listening) and db2 DOWN (refused)."""
    require_programs(missing_haproxy_programs(), "haproxy")
    listener = TcpListener()
    sections = (
        "backend galera\n"
        f"  server db1 127.0.0.1:{listener.port}\n"
        f"  server db2 127.0.0.1:{dead_port()} backup\n"
    )
    try:
        proxy = Haproxy(tmp_path_factory.mktemp("haproxy"), sections)
        yield from service_running(proxy, "haproxy (module)", "haproxy")
    finally:
        listener.close()


def test_a_haproxy_server_down_fails_the_run_naming_backend_and_server(site, cibs, haproxy):
    with_haproxy = checks(site, cibs["healthy"]).model_copy(update={
        "haproxy": True, "haproxy_command": haproxy_command(str(haproxy.stats_socket)),
    })  # fmt: skip
    state = check_ha_health(
        site["inventory"], ssh_block=site["block"], checks=with_haproxy, lint=False,
        return_state=True,
    )  # fmt: skip
    assert state.is_failed()
    host = site["host"].address
    assert f"first: haproxy galera/db2: server galera/db2 is DOWN on {host} (L4CON" in (
        state.message
    )
    rows = artifact_rows(state.state_details.flow_run_id)
    (row,) = [r for r in rows if r["component"] == "haproxy"]
    assert (row["node"], row["state"]) == (host, "critical")
    assert row["finding"].startswith(f"galera/db2: server galera/db2 is DOWN on {host}")


def test_the_galera_http_check_is_asked_over_ssh_through_the_flow(site, cibs, galera, clustercheck):
    clustercheck.point_at(galera.port)
    with_http = checks(site, cibs["healthy"]).model_copy(update={
        "galera_http": True, "galera_http_command": galera_http_command(clustercheck.url),
    })  # fmt: skip
    host = site["host"].address

    def run_http():
        return check_ha_health(
            site["inventory"], ssh_block=site["block"], checks=with_http, lint=False,
            return_state=True,
        )  # fmt: skip

    state = run_http()
    assert state.is_completed(), state.message
    assert {"component": "clustercheck", "node": host, "state": "ok", "finding": ""} in (
        state.result()
    )
    galera.stop()  # the check answers 503; the wsrep status cannot be read either
    state = run_http()
    assert state.is_failed()
    rows = artifact_rows(state.state_details.flow_run_id)
    (row,) = [r for r in rows if r["component"] == "clustercheck"]
    assert (row["node"], row["state"]) == (host, "critical")
    assert row["finding"].startswith(f"{host}: the Galera check on {host} answered 503")


@pytest.fixture
def three_hosts(tmp_path_factory):
    """Three sshd hosts on 127.0.0.11-13 sharing one port, one client key."""
    yield from ssh_hosts_sharing_a_port(tmp_path_factory, [{}, {}, {}], "ssh_hosts (3, one port)")


def test_a_vip_on_several_hosts_is_critical_naming_them(three_hosts, tmp_path):
    # Every host of the bed is this machine: 127.0.0.1 (loopback) is on all three.
    block = f"ha-ssh-{uuid.uuid4().hex[:8]}"
    first = three_hosts[0]
    SshIdentity(
        username=first.user, private_key=first.client_key.read_text(),
        known_hosts=known_hosts_text(three_hosts), port=first.port, connect_timeout=5,
    ).save(block)  # fmt: skip
    inventory = tmp_path / "three.json"
    inventory.write_text(json.dumps({"backend_servers": {
        "hosts": [h.address for h in three_hosts], "vars": {"vips": {"galera": "127.0.0.1"}},
    }}))  # fmt: skip
    only_vips = HealthChecks(pacemaker=False, galera=False, backup_record_path=None)
    state = check_ha_health(
        str(inventory), ssh_block=block, checks=only_vips, lint=False, return_state=True
    )
    assert state.is_failed()
    holders = ", ".join(h.address for h in three_hosts)
    assert f"first: vip 127.0.0.1: VIP galera (127.0.0.1) is on 3 nodes: {holders}" in (
        state.message
    )
    rows = artifact_rows(state.state_details.flow_run_id)
    assert rows == [
        {"component": "vip", "node": "cluster", "state": "critical",
         "finding": f"127.0.0.1: VIP galera (127.0.0.1) is on 3 nodes: {holders}"},
    ]  # fmt: skip
