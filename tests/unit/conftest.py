"""Helpers for the unit tests: the repository's paths and stacks built on the OpenStack fake."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HOT = REPO / "heat-templates" / "hot"
DEPLOYMENTS = REPO / "deployments"

#: Polling for the fake (stacks finish after its 0.1 s fixture delay).
POLL = {"interval": 0.05, "wait": 10}


def create_stack(conn, template: str, name: str, environment: str | None = None, **parameters):
    """Create a stack from ``heat-templates/hot/<template>`` the way the CLI does, and wait."""
    heat = conn.orchestration
    attrs = heat.read_env_and_templates(
        template_file=str(HOT / template),
        environment_files=[str(DEPLOYMENTS / environment)] if environment else None,
    )
    stack = heat.create_stack(name=name, parameters=parameters, **attrs)
    heat.wait_for_status(stack, "CREATE_COMPLETE", failures=["CREATE_FAILED"], **POLL)
    return heat.get_stack(stack.id)


@dataclass
class FakeStacks:
    """Both example stacks on the fake: the openstacksdk stacks and their resources by name."""

    multi: Any
    analytics: Any
    multi_resources: dict[str, Any]


@pytest.fixture
def fake_stacks(openstack_conn) -> FakeStacks:
    """``multi`` (edx-multi-node) and ``analytics`` (edx-analytics-server) joined to its network
    and security group, created with the example environments in deployments/."""
    multi = create_stack(
        openstack_conn, "edx-multi-node.yaml", "multi", "example-multi-node.env.yaml"
    )
    resources = {r.name: r for r in openstack_conn.orchestration.resources(multi)}
    analytics = create_stack(
        openstack_conn,
        "edx-analytics-server.yaml",
        "analytics",
        "example-analytics.env.yaml",
        network=resources["management_net"].physical_resource_id,
        security_group=resources["server_security_group"].physical_resource_id,
    )
    return FakeStacks(multi, analytics, resources)
