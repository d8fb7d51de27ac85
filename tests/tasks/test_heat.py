"""What tasks.heat reads from Heat for an inventory, on the OpenStack fake."""

from __future__ import annotations

import json

import pytest

from domain.inventory import ANALYTICS_INI_GROUPS, parse_json, render_ini, render_json
from tasks.heat import gather_stack_data, inventory_from_openstack
from tests.unit import samples

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack")


@pytest.mark.slow
def test_inventory_from_the_fake_stacks_matches_the_seed(openstack_conn, fake_stacks):
    multi = gather_stack_data(openstack_conn, "multi")
    assert multi["status"] == "CREATE_COMPLETE"
    assert json.dumps(multi)  # plain data only: no SDK objects
    inventory = inventory_from_openstack(openstack_conn, "multi", "analytics")
    assert render_ini(inventory, ANALYTICS_INI_GROUPS) == samples.SEED_ANALYTICS_INI

    servers = {s.name: s for s in openstack_conn.compute.servers()}
    analytics = inventory.host("analytics")
    assert analytics.vars["server_id"] == servers["analytics"].id
    outputs = {o["output_key"]: o["output_value"] for o in fake_stacks.analytics.outputs}
    assert analytics.vars["public_ip"] == outputs["public_ip"]
    deploy = inventory.group("deploy")[0]
    assert deploy.address == "192.168.122.100"
    assert deploy.vars["server_id"] == servers[deploy.name].id
    app_master = inventory.group("app_master")[0]
    assert app_master.vars["server_id"] == multi["outputs"]["app_master_id"]
    assert len(inventory.group("app_servers")) == 2
    assert parse_json(render_json(inventory)) == inventory
