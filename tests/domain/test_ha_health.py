"""The HA assessments on real command output.

Pacemaker: crm_mon XML rendered by Pacemaker's own tools from CIBs that `cibadmin`,
`crm_simulate` and `crm_attribute` put in each state (`tests/bed/pacemaker.py`), once per
session. RabbitMQ and Galera outputs of real clusters are assessed in
`tests/integration/test_ha_health_clusters.py`; here only what the parsers must survive.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from domain.ha_health import (
    Finding,
    any_critical,
    assess_galera,
    assess_galera_cluster,
    assess_pacemaker,
    assess_rabbitmq,
    assess_vip,
    parse_wsrep_status,
)
from pipeline.errors import InvalidInput
from tasks.ssh import parse_ip_addresses
from tests.bed import pacemaker
from tests.bed.pacemaker import NODES, VIP


@pytest.fixture(scope="session")
def crm_mon_outputs(tmp_path_factory) -> dict[str, dict[str, str]]:
    """`{state: {"xml": <--output-as=xml>, "legacy": <--as-xml>}}` for every cluster state."""
    started = time.perf_counter()
    states = pacemaker.cluster_states(tmp_path_factory.mktemp("pacemaker"))
    outputs = {
        state: {"xml": pacemaker.crm_mon(cib), "legacy": pacemaker.crm_mon(cib, legacy=True)}
        for state, cib in states.items()
    }
    print(f"\nPacemaker CIBs and crm_mon outputs: {time.perf_counter() - started:.2f} s")
    return outputs


FORMS = ["xml", "legacy"]


def subjects(findings: list[Finding]) -> set[str]:
    return {finding.subject for finding in findings}


@pytest.mark.parametrize("form", FORMS)
def test_the_outputs_have_the_root_of_their_form(crm_mon_outputs, form):
    root = "<pacemaker-result" if form == "xml" else "<crm_mon"
    assert crm_mon_outputs["healthy"][form].lstrip().startswith(root)


@pytest.mark.parametrize("form", FORMS)
def test_a_healthy_cluster_has_no_finding(crm_mon_outputs, form):
    assert assess_pacemaker(crm_mon_outputs["healthy"][form], expected_nodes=3) == []


@pytest.mark.parametrize("form", FORMS)
def test_a_node_down_is_critical_and_named(crm_mon_outputs, form):
    findings = assess_pacemaker(crm_mon_outputs["node_down"][form], expected_nodes=3)
    assert any_critical(findings)
    down = [f for f in findings if f.subject == NODES[2]]
    assert down and "offline" in down[0].message
    # Its Galera instance stopped with it, and the cluster is one node short.
    assert any("galera-clone" in f.message and "not running" in f.message for f in findings)
    assert any(f.subject == "cluster" and "2 of 3" in f.message for f in findings)


@pytest.mark.parametrize("form", FORMS)
def test_no_quorum_is_critical(crm_mon_outputs, form):
    findings = assess_pacemaker(crm_mon_outputs["no_quorum"][form])
    assert [(f.severity, f.subject) for f in findings] == [("critical", "cluster")]
    assert "no quorum" in findings[0].message and NODES[0] in findings[0].message


@pytest.mark.parametrize("form", FORMS)
def test_a_failed_action_is_critical_with_its_values(crm_mon_outputs, form):
    findings = assess_pacemaker(crm_mon_outputs["failed_action"][form])
    assert subjects(findings) == {f"{VIP}_monitor_10000"}
    (finding,) = findings
    assert finding.critical
    assert NODES[0] in finding.message and "not running" in finding.message
    assert "exit code 7" in finding.message


@pytest.mark.parametrize("form", FORMS)
def test_a_blocked_resource_is_critical(crm_mon_outputs, form):
    findings = assess_pacemaker(crm_mon_outputs["blocked"][form])
    messages = [f.message for f in findings if f.subject == VIP]
    assert any("failed" in m for m in messages)
    assert any("blocked" in m for m in messages)
    assert any("unmanaged" in m for m in messages)
    assert f"{VIP}_stop_0" in subjects(findings)


@pytest.mark.parametrize("form", FORMS)
def test_a_node_in_standby_or_maintenance_is_critical(crm_mon_outputs, form):
    findings = assess_pacemaker(crm_mon_outputs["standby"][form], expected_nodes=3)
    assert [(f.subject, f.message) for f in findings if f.subject == NODES[1]] == [
        (NODES[1], f"node {NODES[1]} is in standby")
    ]
    findings = assess_pacemaker(crm_mon_outputs["maintenance"][form], expected_nodes=3)
    assert (NODES[1], f"node {NODES[1]} is in maintenance") in [
        (f.subject, f.message) for f in findings
    ]


@pytest.mark.parametrize("form", FORMS)
def test_a_vip_on_two_nodes_is_critical(crm_mon_outputs, form):
    findings = assess_pacemaker(crm_mon_outputs["vip_twice"][form])
    vip = [f for f in findings if f.subject == VIP]
    assert len(vip) == 1 and vip[0].critical
    assert "2 nodes" in vip[0].message and NODES[0] in vip[0].message and NODES[1] in vip[0].message


def test_fewer_nodes_than_expected_is_critical(crm_mon_outputs):
    findings = assess_pacemaker(crm_mon_outputs["healthy"]["xml"], expected_nodes=5)
    assert [(f.subject, f.message) for f in findings] == [
        ("cluster", "3 cluster nodes configured, expected 5")
    ]


def test_a_galera_clone_not_promoted_everywhere_is_critical(crm_mon_outputs):
    # crm_mon's own output, with one instance's role as Pacemaker prints an unpromoted one.
    text = crm_mon_outputs["healthy"]["xml"].replace('role="Promoted"', 'role="Unpromoted"', 1)
    findings = assess_pacemaker(text)
    assert [(f.subject, f.message) for f in findings] == [
        (NODES[0], f"Galera clone galera-clone is Unpromoted on {NODES[0]}, expected Promoted")
    ]
    # Pacemaker <= 2.0 calls a promoted instance Master.
    assert assess_pacemaker(crm_mon_outputs["healthy"]["xml"].replace("Promoted", "Master")) == []


def test_crm_mon_not_connected_is_a_critical_finding():
    status, output = pacemaker.crm_mon_not_connected()
    assert status == 102
    (finding,) = assess_pacemaker(output)
    assert finding.critical and finding.subject == "crm_mon"
    assert "code 102" in finding.message and "Not connected" in finding.message


@pytest.mark.parametrize(
    ("output", "words"),
    [
        ("", "empty output"),
        ("   \n", "empty output"),
        ("crm_mon: Error: cluster is not available on this node\n", "not XML"),
        ("<pacemaker-result><summary>", "not XML"),
        ("<cib/>", "unexpected XML root <cib>"),
        ('<crm_mon version="2.1.5"/>', "no <summary>"),
    ],
)
def test_unusable_crm_mon_output_is_a_critical_finding(output, words):
    (finding,) = assess_pacemaker(output)
    assert finding.critical and finding.component == "pacemaker"
    assert words in finding.message


# -- what the RabbitMQ and Galera parsers must survive (real outputs: integration tests) -----


@pytest.mark.parametrize(
    ("output", "words"),
    [
        ("", "empty output"),
        ("Error: unable to perform an operation on node 'rabbit@x'.", "not JSON"),
        ('{"alarms": []}', "no running_nodes"),
        ("[1, 2]", "no running_nodes"),
    ],
)
def test_unusable_rabbitmq_output_is_a_critical_finding(output, words):
    (finding,) = assess_rabbitmq(output)
    assert finding.critical and finding.component == "rabbitmq" and words in finding.message


def test_rabbitmq_running_nodes_may_be_one_string():
    status = {"disk_nodes": ["rabbit@a", "rabbit@b"], "running_nodes": "rabbit@a", "alarms": [],
              "partitions": {}}  # fmt: skip
    findings = assess_rabbitmq(json.dumps(status))
    assert [(f.subject, f.message) for f in findings] == [
        ("rabbit@b", "disk node rabbit@b is not running")
    ]
    status["running_nodes"] = "rabbit@a, rabbit@b"
    assert assess_rabbitmq(json.dumps(status), expected_nodes=2) == []


def test_galera_without_status_is_critical():
    (finding,) = assess_galera({}, expected_size=3, node="db1")
    assert finding.critical and finding.subject == "db1"
    (finding,) = assess_galera({"wsrep_on": "OFF"}, expected_size=3, node="db1")
    assert "wsrep is off" in finding.message


def test_galera_nodes_that_do_not_answer_are_named():
    findings = assess_galera_cluster({"db1": None, "db2": "connection refused"}, expected_size=3)
    assert [(f.subject, f.message) for f in findings] == [
        ("db1", "node db1 did not answer"),
        ("db2", "node db2 did not answer: connection refused"),
        ("cluster", "2 nodes to check, expected 3"),
    ]


def test_a_finding_has_one_of_two_severities():
    with pytest.raises(InvalidInput, match="severity 'info'"):
        Finding("galera", "info", "db1", "fine")
    finding = Finding("galera", "warning", "db1", "slow")
    assert not finding.critical and not any_critical([finding])
    assert finding.as_row() == {
        "component": "galera", "severity": "warning", "subject": "db1", "message": "slow"
    }  # fmt: skip


def test_wsrep_status_text_with_or_without_its_header():
    text = "Variable_name\tValue\nwsrep_ready\tON\nwsrep_cluster_size\t3\n"
    assert parse_wsrep_status(text) == {"wsrep_ready": "ON", "wsrep_cluster_size": "3"}
    assert parse_wsrep_status("wsrep_ready\tOFF\n") == {"wsrep_ready": "OFF"}
    assert parse_wsrep_status("ERROR 2002 (HY000): Can't connect") == {}


def test_a_vip_on_two_nodes_or_on_none_is_critical():
    # This machine's own `ip -o addr show`, as two nodes would print it.
    listed = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True,
                            check=True).stdout  # fmt: skip
    addresses = parse_ip_addresses(listed)
    assert "127.0.0.1" in addresses
    assert assess_vip("127.0.0.1", {"db1": addresses, "db2": ("10.9.9.9",)}) == []
    (finding,) = assess_vip("127.0.0.1", {"db1": addresses, "db2": addresses})
    assert (finding.severity, finding.subject) == ("critical", "127.0.0.1")
    assert finding.message == "VIP 127.0.0.1 is on 2 nodes: db1, db2"
    (finding,) = assess_vip("192.0.2.10", {"db1": addresses, "db2": "connection refused"})
    assert finding.message == "VIP 192.0.2.10 is on no node (db2 could not be asked)"
    (finding,) = assess_vip("127.0.0.1", {"db1": addresses, "db2": addresses}, name="rabbitmq")
    assert (finding.subject, finding.message) == (
        "127.0.0.1", "VIP rabbitmq (127.0.0.1) is on 2 nodes: db1, db2"
    )  # fmt: skip
