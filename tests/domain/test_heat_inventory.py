"""Heat stacks' plain data to an inventory: groups from the deploy node's metadata, the
analytics stack's server, backend roles, and refusals that name the stack."""

from __future__ import annotations

import pytest

from domain.heat_inventory import inventory_from_stacks
from domain.inventory import BadAddress, DuplicateHost, Inventory, InventoryError
from tests.unit import samples


@pytest.fixture
def inventory() -> Inventory:
    return inventory_from_stacks(samples.multi_node_stack(), samples.analytics_stack())


# -- from stack data ---------------------------------------------------------------------------


def test_groups_come_from_the_deploy_node_metadata_and_the_analytics_stack(inventory):
    assert inventory.addresses("deploy") == ["192.168.122.100"]
    assert inventory.addresses("backend_servers") == samples.BACKENDS
    assert inventory.addresses("app_servers") == samples.APPS
    assert inventory.addresses("app_master") == samples.APPS[:1]
    assert inventory.addresses("analytics_servers") == ["192.168.122.120"]
    assert inventory.group_vars == {"backend_servers": {"galera_vip": "192.168.122.110"}}


def test_hosts_carry_server_names_ids_and_public_addresses(inventory):
    deploy = inventory.host("192.168.122.100")
    assert deploy.name == samples.heat_name("multi", "deploy")
    assert deploy.vars == {"server_id": samples.IDS["deploy"], "public_ip": "203.0.113.10"}
    analytics = inventory.host("analytics")  # by name
    assert analytics.address == "192.168.122.120"
    assert analytics.vars == {"server_id": samples.IDS["analytics"], "public_ip": "203.0.113.12"}
    app0 = inventory.host("192.168.122.130")
    assert app0.groups == ("app_servers", "app_master")


def test_first_backend_is_primary_unless_another_holds_the_vip(inventory):
    assert inventory.primary_backend.address == "192.168.122.111"
    assert [h.address for h in inventory.secondary_backends] == samples.BACKENDS[1:]
    assert [h.role for h in inventory.group("backend_servers")] == [
        "primary",
        "secondary",
        "secondary",
    ]
    moved = inventory_from_stacks(samples.multi_node_stack(), vip_holder="192.168.122.112")
    assert moved.primary_backend.address == "192.168.122.112"
    assert [h.address for h in moved.secondary_backends] == ["192.168.122.111", "192.168.122.113"]
    with pytest.raises(InventoryError, match="192.168.122.100: not one of the backend_servers"):
        inventory_from_stacks(samples.multi_node_stack(), vip_holder="192.168.122.100")


def test_app_master_falls_back_to_the_app_master_id_output():
    stack = samples.multi_node_stack()
    del stack["servers"][samples.IDS["deploy"]]["metadata"]["app_master"]
    assert inventory_from_stacks(stack).addresses("app_master") == ["192.168.122.130"]


@pytest.mark.parametrize("status", ["CREATE_IN_PROGRESS", "UPDATE_FAILED", "DELETE_COMPLETE"])
def test_an_incomplete_stack_is_refused(status):
    stack = samples.multi_node_stack()
    stack["status"] = status
    with pytest.raises(InventoryError, match=f"stack multi is {status}"):
        inventory_from_stacks(stack)


def test_a_stack_without_inventory_metadata_is_refused():
    stack = samples.multi_node_stack()
    stack["servers"][samples.IDS["deploy"]]["metadata"] = {}
    with pytest.raises(InventoryError, match="stack multi: expected one server whose metadata"):
        inventory_from_stacks(stack)


def test_bad_metadata_names_the_key():
    stack = samples.multi_node_stack()
    stack["servers"][samples.IDS["deploy"]]["metadata"]["backend_servers"] = "192.168.122.111"
    with pytest.raises(InventoryError, match="deploy node metadata backend_servers: expected"):
        inventory_from_stacks(stack)
    stack["servers"][samples.IDS["deploy"]]["metadata"]["backend_servers"] = '["10.0.0.300"]'
    with pytest.raises(BadAddress, match="stack multi: group backend_servers: bad address"):
        inventory_from_stacks(stack)


def test_an_analytics_server_at_a_backend_address_is_a_duplicate_host():
    analytics = samples.analytics_stack()
    analytics["outputs"]["server_ip"] = "192.168.122.112"
    with pytest.raises(DuplicateHost, match="duplicate host 192.168.122.112"):
        inventory_from_stacks(samples.multi_node_stack(), analytics)


def test_a_backend_marked_primary_in_its_server_metadata_is_the_primary():
    stack = samples.multi_node_stack()
    stack["servers"][samples.IDS["backend2"]]["metadata"] = {"backend_role": "primary"}
    inventory = inventory_from_stacks(stack)
    assert inventory.primary_backend.address == "192.168.122.113"
    assert [h.role for h in inventory.group("backend_servers")] == [
        "secondary",
        "secondary",
        "primary",
    ]
    # the backend found holding the VIP beats what the metadata says
    moved = inventory_from_stacks(stack, vip_holder="192.168.122.111")
    assert moved.primary_backend.address == "192.168.122.111"
    assert moved.host("192.168.122.113").role == "secondary"
