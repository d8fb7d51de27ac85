"""Helpers for the unit tests: the repository's paths and stacks built on the OpenStack fake."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

# re-exported: the unit and integration tests take the paths and create_stack from here
from tests.fakes.stacks import DEPLOYMENTS, HOT, POLL, REPO, create_stack

__all__ = ["DEPLOYMENTS", "HOT", "POLL", "REPO", "create_stack"]


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
