"""The quorum assessment on `corosync-quorumtool -s` of a real Corosync on loopback.

`tests/bed/corosync.py` runs Corosync (Debian `corosync`) once per state, for this module: a
quorate single-node cluster, three configured nodes of which one runs (no quorum), and none.
"""

from __future__ import annotations

import pytest

from domain.ha_corosync import assess_corosync_quorum, parse_quorumtool
from tests.bed import corosync
from tests.bed.fixtures import _STARTUP_TIMES
from tests.bed.programs import require_programs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    require_programs(corosync.missing_corosync_programs(), "Corosync")
    results, startup = corosync.quorum_outputs(tmp_path_factory.mktemp("corosync"))
    for state, seconds in startup.items():
        _STARTUP_TIMES.record(f"corosync ({state})", seconds)
        print(f"\ncorosync ({state}) started in {seconds:.2f} s")
    return results


def test_a_quorate_single_node_cluster_is_healthy(outputs):
    done = outputs["healthy"]
    assert done.returncode == 0
    assert parse_quorumtool(done.stdout)["Quorate"] == "Yes"
    assert assess_corosync_quorum(done.stdout, expected_nodes=1, node="db1") == []


def test_fewer_members_than_the_inventory_expects_is_critical(outputs):
    (finding,) = assess_corosync_quorum(outputs["healthy"].stdout, expected_nodes=3, node="db1")
    assert (finding.component, finding.severity, finding.subject) == ("corosync", "critical", "db1")
    assert finding.message == "1 nodes in db1's membership, expected 3"


def test_a_partition_without_quorum_is_critical_whatever_the_exit_status(outputs):
    done = outputs["no_quorum"]
    # Corosync 3.1 exits 2 here (older versions 0): the text decides, not the status.
    assert done.returncode != 0
    findings = assess_corosync_quorum(done.stdout, expected_nodes=3, node="db1")
    assert [(f.severity, f.subject, f.message) for f in findings] == [
        ("critical", "db1", "db1's partition is not quorate (Quorate: No; total votes 1, "
         "expected votes 3, quorum 2 Activity blocked)"),
        ("critical", "db1", "1 nodes in db1's membership, expected 3"),
    ]  # fmt: skip
    assert assess_corosync_quorum(done.stdout)[0].subject == "quorum"


def test_no_corosync_running_is_critical(outputs):
    done = outputs["not_running"]
    assert done.returncode != 0
    (finding,) = assess_corosync_quorum(done.stdout + done.stderr, node="db1")
    assert finding.critical and finding.subject == "db1"
    assert finding.message == (
        "corosync does not run on db1 (corosync-quorumtool: Cannot initialize CMAP service)"
    )


@pytest.mark.parametrize("output", ["", "   \n", "Permission denied\n", "Quorate Yes"])
def test_unusable_output_is_critical_never_an_exception(output):
    (finding,) = assess_corosync_quorum(output, node="db1")
    assert finding.critical and finding.subject == "db1"
