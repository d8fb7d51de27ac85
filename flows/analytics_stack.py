"""The analytics node's Heat stack as a Prefect flow: ``deploy-analytics-stack``.

The story: look up the multi-node stack's management network and security group (resources
``management_net`` and ``server_security_group``), plan the analytics stack from
``heat-templates/hot/edx-analytics-server.yaml`` against what exists (create, update with the
changed parameters, or nothing), publish the plan, apply it and wait, then publish the outputs
(``server_ip``, ``public_ip``) and the inventory (the seed's ``analytics.ini`` and the
``--list`` JSON, built by ``domain.inventory`` from what ``tasks.heat`` reads).

A failed create is deleted unless ``keep_failed``; the error carries Heat's status reason.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, Field, field_validator

from blocks.openstack import OpenStackCloud
from domain.inventory import ANALYTICS_INI_GROUPS, render_ini, render_json, write_inventory
from domain.names import artifact_key
from pipeline_config.fields import NonEmptyStr
from tasks.heat import apply_stack_plan, inventory_from_openstack, plan_stack, stack_resource_ids
from tasks.parameters import fill_from_deployment

FLOW_NAME = "deploy-analytics-stack"
TEMPLATE = Path(__file__).resolve().parents[1] / "heat-templates" / "hot" / (
    "edx-analytics-server.yaml"
)  # fmt: skip
#: Resources of the multi-node stack the analytics node joins.
NETWORK_RESOURCE, SECURITY_GROUP_RESOURCE = "management_net", "server_security_group"


class AnalyticsServer(BaseModel):
    """Parameters of edx-analytics-server.yaml (network and security group are looked up)."""

    name: NonEmptyStr = Field(default="analytics", description="Nova server name.")
    image: NonEmptyStr = Field(..., description="Glance image, name or id.")
    flavor: NonEmptyStr = Field(default="m1.large", description="Nova flavor.")
    key_name: NonEmptyStr = Field(..., description="Nova key pair of the default user.")
    public_net_id: NonEmptyStr = Field(..., description="External network for the FIP.")
    ip: NonEmptyStr = Field(default="192.168.122.120", description="Fixed management address.")
    hadoop_size: int = Field(default=10, ge=1, description="Hadoop data volume, GB.")
    boot_timeout: int = Field(
        default=900, ge=60, le=7200, description="Seconds the node has to signal it is ready."
    )

    @field_validator("ip")
    @classmethod
    def _ipv4(cls, value: str) -> str:
        import ipaddress

        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError(f"ip {value!r} is not an IPv4 address") from None
        return value

    def heat_parameters(self, network: str, security_group: str) -> dict[str, object]:
        return {
            "name": self.name,
            "image": self.image,
            "flavor": self.flavor,
            "key_name": self.key_name,
            "public_net_id": self.public_net_id,
            "ip": self.ip,
            "hadoop_size": self.hadoop_size,
            "timeout": self.boot_timeout,
            "network": network,
            "security_group": security_group,
        }


@flow(name=FLOW_NAME)
def deploy_analytics_stack(
    server: AnalyticsServer,
    stack_name: NonEmptyStr = "analytics",
    multi_node_stack: NonEmptyStr = "multi",
    openstack_block: NonEmptyStr = "openstack",
    timeout_seconds: float = 1800,
    poll_interval_seconds: float = 5,
    keep_failed: bool = False,
    template_file: NonEmptyStr | None = None,
    inventory_dir: NonEmptyStr | None = None,
) -> dict:
    """Create, update or leave the analytics stack; return its outputs.

    Args:
        server: The analytics server's parameters (image, flavor, key pair, address...).
        stack_name: Name of the analytics Heat stack.
        multi_node_stack: The existing multi-node stack whose management network and security
            group the node joins.
        openstack_block: Name of the OpenStack Cloud block.
        timeout_seconds: How long the create or update may take (Heat gets it too).
        poll_interval_seconds: Pause between status polls.
        keep_failed: Keep a stack whose creation failed, for debugging (default: delete it).
        template_file: Another HOT file (default: heat-templates/hot/edx-analytics-server.yaml).
        inventory_dir: Also write ``analytics.ini`` and ``inventory.json`` into this directory
            (on the worker).

    Returns:
        ``action`` (create/update/none), ``stack_id``, ``status``, ``server_ip``, ``public_ip``,
        ``changes`` and the inventory as ``analytics_ini`` and ``inventory_json``.
    """
    (server,) = fill_from_deployment(server=server)
    logger = get_run_logger()
    template = str(template_file or TEMPLATE)
    conn = OpenStackCloud.load(openstack_block).get_client()
    try:
        ids = stack_resource_ids(
            conn, multi_node_stack, [NETWORK_RESOURCE, SECURITY_GROUP_RESOURCE]
        )
        parameters = server.heat_parameters(ids[NETWORK_RESOURCE], ids[SECURITY_GROUP_RESOURCE])
        plan = plan_stack(conn, stack_name, template, parameters)
        create_table_artifact(
            key=f"stack-plan-{artifact_key(stack_name, 'stack')}",
            table=plan.table(),
            description=f"**{FLOW_NAME}** plan: {plan.summary()}",
        )
        stack = apply_stack_plan(
            conn, plan, template, parameters, timeout_seconds,
            keep_failed=keep_failed, poll_interval=poll_interval_seconds,
        )  # fmt: skip
        inventory = inventory_from_openstack(conn, multi_node_stack, stack_name)
    finally:
        conn.close()
    result = {
        "action": plan.action,
        "stack_id": stack.id,
        "status": stack.status,
        "server_ip": stack.outputs.get("server_ip"),
        "public_ip": stack.outputs.get("public_ip"),
        "changes": [f"{c.name}: {c.current} -> {c.wanted}" for c in plan.changes]
        + (["template"] if plan.template_changed else []),
        "analytics_ini": render_ini(inventory, ANALYTICS_INI_GROUPS),
        "inventory_json": render_json(inventory),
    }
    if inventory_dir:
        directory = Path(inventory_dir)
        directory.mkdir(parents=True, exist_ok=True)
        write_inventory(inventory, directory / "analytics.ini", ANALYTICS_INI_GROUPS)
        write_inventory(inventory, directory / "inventory.json")
        logger.info("wrote analytics.ini and inventory.json in %s", directory)
    create_markdown_artifact(
        key=f"stack-{artifact_key(stack_name, 'stack')}",
        markdown=(
            f"## Stack {stack_name}: {stack.status} ({plan.action})\n\n"
            f"| output | value |\n|---|---|\n| server_ip | {result['server_ip']} |\n"
            f"| public_ip | {result['public_ip']} |\n\n"
            f"### analytics.ini\n\n```ini\n{result['analytics_ini']}```\n"
        ),
        description=f"{FLOW_NAME}: outputs of {stack_name}",
    )
    logger.info(
        "stack %s %s: server_ip %s, public_ip %s", stack_name, stack.status,
        result["server_ip"], result["public_ip"],
    )  # fmt: skip
    return result
