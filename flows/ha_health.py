"""The HA control plane's health, every few minutes: ``check-ha-health``.

The story:
1. read the inventory (INI or JSON form) and lint its topology (seeds 002 and 003: clusters
   of at least 3, odd, at most 16; no stateful service on a single node);
2. on every host of the cluster's group, over one verified SSH session each, run the
   read-only checks: crm_mon's XML, Corosync's quorum (`corosync-quorumtool -s`), the Galera
   node's wsrep status, RabbitMQ's cluster status, the host's addresses (each of the group's
   VIPs, `vips` and `galera_vip`, must be on exactly one host), and the record a dead
   backup run left (`tasks.node_record`);
3. judge them (:mod:`domain.ha_health`): a node offline, no quorum, a failed action, a Galera
   node not Synced or a smaller cluster, a RabbitMQ disk node down, an unreachable host...;
4. publish a table artifact (component, node, state, finding) and fail the run when any
   finding is critical, its message naming the first one.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field, field_validator

from blocks.ssh import SshIdentity
from domain.ha_clustercheck import CLUSTERCHECK
from domain.ha_corosync import COROSYNC
from domain.ha_haproxy import HAPROXY
from domain.ha_health import GALERA, PACEMAKER, RABBITMQ, VIP, Finding
from domain.ha_topology import lint_topology
from domain.inventory import GROUPS, load_inventory
from domain.names import artifact_key
from pipeline.errors import InvalidInput, OperationFailed
from pipeline_config.fields import NonEmptyStr
from tasks.ha_gathering import (
    BACKUP,
    DEFAULT_COMMANDS,
    HealthRow,
    assess_gathered,
    backup_record_findings,
    gather_host,
    rows_for,
)
from tasks.node_record import DEFAULT_RECORD_PATH
from tasks.parameters import fill_from_deployment

FLOW_NAME = "check-ha-health"


class UnhealthyControlPlane(OperationFailed):
    """A health run found something critical; the message names the first finding."""


class HealthChecks(BaseModel):
    """Which checks run on the cluster's hosts, with which read-only commands."""

    group: NonEmptyStr = Field(
        default="backend_servers",
        description="Inventory group of the cluster's hosts; every check runs on each of them.",
    )
    pacemaker: bool = Field(default=True, description="Read crm_mon's XML on every host.")
    pacemaker_command: NonEmptyStr = Field(
        default=DEFAULT_COMMANDS[PACEMAKER],
        description="Prints crm_mon's XML (`--output-as=xml` or the older `--as-xml`).",
    )
    corosync: bool = Field(
        default=False,
        description="Read Corosync's quorum on every host (`Quorate: Yes`, every expected "
        "node in the membership).",
    )
    corosync_command: NonEmptyStr = Field(
        default=DEFAULT_COMMANDS[COROSYNC], description="Prints `corosync-quorumtool -s`."
    )
    galera: bool = Field(default=True, description="Read each Galera node's wsrep status.")
    galera_command: NonEmptyStr = Field(
        default=DEFAULT_COMMANDS[GALERA],
        description="Prints `SHOW GLOBAL STATUS LIKE 'wsrep_%'` tab-separated (`--batch`).",
    )
    galera_http: bool = Field(
        default=False,
        description="Ask each Galera node's HTTP check (clustercheck on 9200, what haproxy "
        "asks): anything but 200 is critical.",
    )
    galera_http_command: NonEmptyStr = Field(
        default=DEFAULT_COMMANDS[CLUSTERCHECK],
        description="Prints the check's HTTP answer with its headers (`curl --include`, or "
        "the `clustercheck` script itself).",
    )
    rabbitmq: bool = Field(default=False, description="Read RabbitMQ's cluster status.")
    rabbitmq_command: NonEmptyStr = Field(
        default=DEFAULT_COMMANDS[RABBITMQ],
        description="Prints `rabbitmqctl cluster_status --formatter json`.",
    )
    haproxy: bool = Field(
        default=False,
        description="Read haproxy's backends from its stats socket on every host: a server "
        "DOWN or a backend without a server UP is critical; Galera with several writers at "
        "once a warning.",
    )
    haproxy_command: NonEmptyStr = Field(
        default=DEFAULT_COMMANDS[HAPROXY],
        description="Prints the stats socket's answer to `show stat;show table` (Debian's "
        "socket is `/run/haproxy/admin.sock`; `level user` is enough).",
    )
    haproxy_galera_backends: list[NonEmptyStr] = Field(
        default=["galera"],
        description="haproxy's backends (or listen sections) in front of Galera: writes go to "
        "one server at a time (others `backup`, or a stick table).",
    )
    vip: bool = Field(
        default=True,
        description="Check that each of the group's VIPs (inventory variables `vips`, and "
        "`galera_vip`) is on exactly one host; skipped when the inventory has none.",
    )
    vip_command: NonEmptyStr = Field(
        default=DEFAULT_COMMANDS[VIP], description="Lists the host's addresses (`ip -o addr`)."
    )
    backup_record_path: NonEmptyStr | None = Field(
        default=DEFAULT_RECORD_PATH,
        description="Where a backup run records on a node what it is changing; a record left "
        "by a dead run is critical. None: not checked.",
    )
    command_timeout_seconds: float = Field(
        default=30, gt=0, description="Seconds each command may run on a host."
    )

    @field_validator("group")
    @classmethod
    def _known_group(cls, value: str) -> str:
        if value not in GROUPS:
            raise ValueError(f"unknown group {value!r}; known groups: {', '.join(GROUPS)}")
        return value

    def commands(self) -> dict[str, str]:
        chosen = {
            PACEMAKER: (self.pacemaker, self.pacemaker_command),
            COROSYNC: (self.corosync, self.corosync_command),
            GALERA: (self.galera, self.galera_command),
            CLUSTERCHECK: (self.galera_http, self.galera_http_command),
            RABBITMQ: (self.rabbitmq, self.rabbitmq_command),
            HAPROXY: (self.haproxy, self.haproxy_command),
            VIP: (self.vip, self.vip_command),
        }
        return {check: command for check, (enabled, command) in chosen.items() if enabled}


@flow(name=FLOW_NAME, timeout_seconds=240)
def check_ha_health(
    inventory_file: NonEmptyStr,
    ssh_block: NonEmptyStr = "backend-ssh",
    checks: HealthChecks = HealthChecks(),  # noqa: B008 - read-only parameter model (UI form)
    lint: bool = True,
) -> list[dict]:
    """Check the HA control plane once; Failed when any finding is critical.

    Args:
        inventory_file: The inventory (JSON form for `.json`, else the INI form) on the worker.
        ssh_block: SSH Identity block whose known_hosts lists every host of the group.
        checks: The group, the checks and their commands.
        lint: Also lint the inventory's topology (cluster sizes, single points of failure).

    Returns:
        The table's rows (component, node, state, finding).

    Raises:
        UnhealthyControlPlane: at least one critical finding (after the artifact is published).
    """
    # a run given `checks` in part keeps the deployment's other switches (corosync: true)
    (checks,) = fill_from_deployment(checks=checks)
    logger = get_run_logger()
    inventory = load_inventory(inventory_file)
    hosts = inventory.addresses(checks.group)
    if not hosts:
        raise InvalidInput(f"{inventory_file}: group {checks.group} has no hosts to check")
    findings: list[Finding] = []
    rows: list[HealthRow] = []
    if lint:
        found = lint_topology(inventory)
        findings += found
        rows += [HealthRow("topology", f.subject, f.severity, f.message) for f in found]
        if not found:
            rows.append(HealthRow("topology", checks.group, "ok", ""))
    commands = checks.commands()
    identity = SshIdentity.load(ssh_block)
    vips = inventory.vips(checks.group)
    if VIP in commands and not vips:
        logger.info("no VIP for %s in %s: VIP check skipped", checks.group, inventory_file)
        del commands[VIP]
    gathered = []
    if commands:
        futures = [
            gather_host.submit(identity, host, commands, checks.command_timeout_seconds)
            for host in hosts
        ]
        gathered = [future.result() for future in futures]
        found, checked = assess_gathered(
            gathered, checks=commands, expected_nodes=len(hosts), vips=vips,
            galera_backends=checks.haproxy_galera_backends,
        )  # fmt: skip
        findings += found
        rows += checked
    if checks.backup_record_path is not None:
        unreachable = {g.host for g in gathered if g.unreachable is not None}
        for host in hosts:
            if host in unreachable:
                continue
            found = backup_record_findings(
                identity, host, checks.backup_record_path, checks.command_timeout_seconds
            )
            findings += found
            rows += rows_for(BACKUP, host, found)
    table = [row.as_row() for row in rows]
    create_table_artifact(
        key=artifact_key(f"ha-health-{checks.group}", "ha-health"),
        table=table,
        description=f"HA health of {checks.group} ({len(hosts)} hosts): "
        f"{sum(f.critical for f in findings)} critical, "
        f"{sum(not f.critical for f in findings)} warnings",
    )
    critical = [f for f in findings if f.critical]
    for finding in findings:
        logger.log(40 if finding.critical else 30, "%s %s: %s", finding.component,
                   finding.subject, finding.message)  # fmt: skip
    if critical:
        first = critical[0]
        raise UnhealthyControlPlane(
            f"{len(critical)} critical findings; first: {first.component} {first.subject}: "
            f"{first.message}"
        )
    logger.info("HA control plane healthy: %s hosts of %s", len(hosts), checks.group)
    return table
