"""This repository's HOT templates created on the OpenStack fake as `openstack stack create`
does (the template's files and environment inlined by openstacksdk)."""

from __future__ import annotations

from pathlib import Path

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
