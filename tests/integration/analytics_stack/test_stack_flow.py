"""deploy-analytics-stack on the OpenStack fake: create, rerun without changes, update, failure.

The multi-node stack is created from heat-templates/hot/edx-multi-node.yaml with the example
environment, as an operator does; the flow joins the analytics stack to its network.
"""

from __future__ import annotations

import uuid

import pytest
from prefect.artifacts import Artifact

from blocks.openstack import OpenStackCloud
from domain.inventory import load_inventory, render_ini
from flows.analytics_stack import AnalyticsServer, deploy_analytics_stack
from pipeline.errors import OperationTimeout
from tasks.heat import StackFailed, StackTimeout
from tasks.openstack import CloudLookupError
from tests.unit import samples
from tests.unit.conftest import create_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),
]

SERVER = AnalyticsServer(image="ubuntu-22.04", key_name="deploy", public_net_id="public")
FAST = {"timeout_seconds": 20, "poll_interval_seconds": 0.05}


@pytest.fixture
def cloud(openstack_fake, openstack_conn):
    """The multi-node stack on the fake and an OpenStack block for it; returns the block name."""
    create_stack(openstack_conn, "edx-multi-node.yaml", "multi", "example-multi-node.env.yaml")
    name = f"cloud-{uuid.uuid4().hex[:8]}"
    OpenStackCloud(**openstack_fake.credentials).save(name)
    return name


def live_stacks(fake, name="analytics"):
    return [s for s in fake.stacks() if s.name == name and not s.deleted]


def test_create_then_rerun_changes_nothing_then_update(cloud, openstack_fake, tmp_path):
    first = deploy_analytics_stack(
        SERVER, openstack_block=cloud, inventory_dir=str(tmp_path), **FAST
    )
    assert first["action"] == "create"
    assert first["status"] == "CREATE_COMPLETE"
    assert first["server_ip"] == "192.168.122.120"
    assert first["public_ip"]
    # the inventory files have the seed's shape
    assert first["analytics_ini"] == samples.SEED_ANALYTICS_INI
    assert (tmp_path / "analytics.ini").read_text() == samples.SEED_ANALYTICS_INI
    assert render_ini(load_inventory(tmp_path / "inventory.json"), ["analytics_servers"]) == (
        "[analytics_servers]\n192.168.122.120\n"
    )
    (stack,) = live_stacks(openstack_fake)
    multi = {r.name: r.physical_id for r in openstack_fake.stack("multi").resources.values()}
    assert stack.given["network"] == multi["management_net"]
    assert stack.given["security_group"] == multi["server_security_group"]
    artifact = Artifact.get("stack-analytics")
    assert "192.168.122.120" in artifact.data and "public_ip" in artifact.data

    openstack_fake.clear_requests()
    again = deploy_analytics_stack(SERVER, openstack_block=cloud, **FAST)
    assert (again["action"], again["changes"]) == ("none", [])
    assert again["stack_id"] == first["stack_id"]
    assert again["public_ip"] == first["public_ip"]
    assert not openstack_fake.requests("PUT", r"/stacks/") + openstack_fake.requests(
        "POST", r"/stacks$"
    )
    plan = Artifact.get("stack-plan-analytics")
    assert "up to date: no changes" in plan.description

    bigger = SERVER.model_copy(update={"hadoop_size": 50})
    updated = deploy_analytics_stack(bigger, openstack_block=cloud, **FAST)
    assert updated["action"] == "update"
    assert updated["status"] == "UPDATE_COMPLETE"
    assert updated["changes"] == ["hadoop_size: 10 -> 50"]
    assert updated["stack_id"] == first["stack_id"]
    (volume,) = [v for v in openstack_fake.volumes() if "hadoop_data" in v.name]
    assert volume.size == 50
    assert deploy_analytics_stack(bigger, openstack_block=cloud, **FAST)["action"] == "none"


def test_failed_create_reports_heat_reason_and_deletes_the_stack(cloud, openstack_fake):
    openstack_fake.fail_next_stack("Quota exceeded for instances", resource="server")
    with pytest.raises(StackFailed, match="CREATE_FAILED: .*Quota exceeded for instances") as info:
        deploy_analytics_stack(SERVER, openstack_block=cloud, **FAST)
    assert "deleted" in str(info.value)
    assert live_stacks(openstack_fake) == []
    # what the failed create made (port, volume...) went with it
    assert not [v for v in openstack_fake.volumes() if "hadoop_data" in v.name]
    # and the next run starts afresh
    assert deploy_analytics_stack(SERVER, openstack_block=cloud, **FAST)["action"] == "create"


def test_failed_create_is_kept_when_asked_then_repaired_by_an_update(cloud, openstack_fake):
    openstack_fake.fail_next_stack("No valid host was found", resource="server")
    with pytest.raises(StackFailed, match="No valid host was found.*kept for debugging"):
        deploy_analytics_stack(SERVER, openstack_block=cloud, keep_failed=True, **FAST)
    (stack,) = live_stacks(openstack_fake)
    assert stack.stack_status == "CREATE_FAILED"
    fixed = deploy_analytics_stack(SERVER, openstack_block=cloud, **FAST)
    assert (fixed["action"], fixed["status"]) == ("update", "UPDATE_COMPLETE")
    assert fixed["server_ip"] == "192.168.122.120"


def test_failed_update_keeps_the_stack_and_names_the_reason(cloud, openstack_fake):
    deploy_analytics_stack(SERVER, openstack_block=cloud, **FAST)
    openstack_fake.fail_next_stack("Volume resize not allowed")
    bigger = SERVER.model_copy(update={"hadoop_size": 20})
    with pytest.raises(StackFailed, match="UPDATE_FAILED: Volume resize not allowed.*Nothing"):
        deploy_analytics_stack(bigger, openstack_block=cloud, **FAST)
    (stack,) = live_stacks(openstack_fake)
    assert stack.stack_status == "UPDATE_FAILED"


def test_missing_multi_node_stack_is_named(cloud):
    with pytest.raises(CloudLookupError, match="no stack 'nope'"):
        deploy_analytics_stack(SERVER, openstack_block=cloud, multi_node_stack="nope", **FAST)


def test_a_slow_create_times_out_and_is_deleted(cloud, openstack_fake):
    openstack_fake.stack_delay = 3
    with pytest.raises(StackFailed, match=r"CREATE_TIMEOUT: still CREATE_IN_PROGRESS after 0.5s"):
        deploy_analytics_stack(
            SERVER, openstack_block=cloud, timeout_seconds=0.5, poll_interval_seconds=0.05
        )
    openstack_fake.stack_delay = 0.05
    stacks = [s for s in openstack_fake.stacks() if s.name == "analytics"]
    assert stacks and all(s.stack_status.startswith("DELETE") for s in stacks)


def test_a_timed_out_create_and_its_timed_out_cleanup_are_stack_timeouts(cloud, openstack_fake):
    openstack_fake.stack_delay = 3
    with pytest.raises(StackTimeout) as info:
        deploy_analytics_stack(
            SERVER, openstack_block=cloud, timeout_seconds=0.5, poll_interval_seconds=0.05
        )
    openstack_fake.stack_delay = 0.05
    assert isinstance(info.value, OperationTimeout)
    assert (info.value.stack, info.value.status) == ("analytics", "CREATE_TIMEOUT")
    assert "Deleting the half-created stack failed too (StackTimeout: stack analytics still " in (
        str(info.value)
    )
