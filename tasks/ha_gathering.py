"""Gathering the HA control plane's state over SSH, and turning it into findings and rows.

One task per host (:func:`gather_host`) runs the read-only commands of the checks on one
verified session (`SshIdentity.session`): crm_mon's XML, Corosync's quorum, the Galera
node's wsrep status, RabbitMQ's cluster status. It never raises for what it finds: a host
that cannot be reached, or a command that times out, is recorded as such and becomes a
critical finding naming the host. :func:`assess_gathered` judges everything gathered with
:mod:`domain.ha_health` (and :mod:`domain.ha_corosync`).
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.ssh import SshError, SshIdentity
from domain.ha_clustercheck import CLUSTERCHECK, assess_galera_http
from domain.ha_corosync import COROSYNC, assess_corosync_quorum
from domain.ha_haproxy import HAPROXY, assess_haproxy
from domain.ha_health import (
    CRITICAL,
    GALERA,
    PACEMAKER,
    RABBITMQ,
    VIP,
    WARNING,
    Finding,
    assess_galera_cluster,
    assess_pacemaker,
    assess_rabbitmq,
    assess_vip,
    parse_wsrep_status,
)
from remote.ssh import CommandResult
from tasks.node_record import holder_of, read_change
from tasks.ssh import parse_ip_addresses

BACKUP = "backup"

#: Where Debian's haproxy package puts its stats socket.
HAPROXY_SOCKET = "/run/haproxy/admin.sock"


def haproxy_command(stats_socket: str) -> str:
    """The command asking haproxy's stats socket for ``show stat`` and ``show table``.

    Example:
        >>> haproxy_command("/run/haproxy/admin.sock")
        "echo 'show stat;show table' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock"
    """
    address = shlex.quote(f"UNIX-CONNECT:{stats_socket}")
    return f"echo 'show stat;show table' | socat stdio {address}"


def galera_http_command(url: str = "http://127.0.0.1:9200/") -> str:
    """The command asking a node's Galera HTTP check (clustercheck), answer with headers.

    Example:
        >>> galera_http_command()
        'curl --silent --show-error --include --max-time 10 http://127.0.0.1:9200/'
    """
    return f"curl --silent --show-error --include --max-time 10 {shlex.quote(url)}"


#: Read-only commands per check (a deployment may replace them, e.g. with `sudo -n`).
DEFAULT_COMMANDS = {
    PACEMAKER: "crm_mon --one-shot --inactive --output-as=xml",
    COROSYNC: "corosync-quorumtool -s",
    GALERA: "mariadb --batch --skip-column-names -e \"SHOW GLOBAL STATUS LIKE 'wsrep_%'\"",
    RABBITMQ: "rabbitmqctl cluster_status --formatter json",
    HAPROXY: haproxy_command(HAPROXY_SOCKET),
    CLUSTERCHECK: galera_http_command(),
    VIP: "ip -o addr show",
}


@dataclass(frozen=True)
class Gathered:
    """What one host answered: each check's command result, or why there is none."""

    host: str
    results: Mapping[str, CommandResult] = field(default_factory=dict)
    #: Check -> why its command gave no result (timed out, connection lost).
    errors: Mapping[str, str] = field(default_factory=dict)
    #: Why the host could not be reached at all (then no check ran).
    unreachable: str | None = None


@dataclass(frozen=True)
class HealthRow:
    """One row of the health table: a check on a node and what it found."""

    component: str
    node: str
    state: str
    finding: str

    def as_row(self) -> dict[str, str]:
        return {
            "component": self.component,
            "node": self.node,
            "state": self.state,
            "finding": self.finding,
        }


def rows_for(component: str, node: str, found: Sequence[Finding]) -> list[HealthRow]:
    """The table's rows for one check on one node: a row per finding, or one ``ok`` row."""
    if not found:
        return [HealthRow(component, node, "ok", "")]
    return [HealthRow(component, node, f.severity, f"{f.subject}: {f.message}") for f in found]


@task(
    name="gather-ha-status",
    task_run_name="gather-ha-status {host}",
    cache_policy=NO_CACHE,  # the identity holds a key: never hash or store it
    # No retry: an unreachable host is itself the finding, and the next run is minutes away.
    retries=0,
)
def gather_host(
    identity: SshIdentity, host: str, commands: Mapping[str, str], timeout: float
) -> Gathered:
    """Run each check's command on `host` over one verified SSH session.

    Args:
        identity: The SSH block (login, key, trusted host keys).
        host: Address or name as listed in the block's known_hosts.
        commands: Check name -> read-only command line (logged: no secrets in it).
        timeout: Seconds each command may run.

    Returns:
        The results, the commands that gave none, or why the host was unreachable.
    """
    logger = get_run_logger()
    results: dict[str, CommandResult] = {}
    errors: dict[str, str] = {}
    try:
        with identity.session(host) as session:
            for check, command in commands.items():
                try:
                    results[check] = session.run(command, timeout=timeout, expect_success=False)
                except SshError as exc:
                    errors[check] = str(exc)
                    logger.warning("%s: %s gave no result: %s", host, check, exc)
    except SshError as exc:
        logger.warning("%s: unreachable: %s", host, exc)
        return Gathered(host, results, errors, unreachable=str(exc))
    for check, result in results.items():
        logger.info("%s: %s exited %s", host, check, result.exit_status)
    return Gathered(host, results, errors)


@task(
    name="check-backup-record",
    task_run_name="check-backup-record {host}",
    cache_policy=NO_CACHE,  # the identity holds a key
    retries=0,
)
def backup_record_findings(
    identity: SshIdentity, host: str, path: str, timeout: float
) -> list[Finding]:
    """The record a backup run leaves on a node while it changes it (`tasks.node_record`).

    A record whose run is dead (crashed, killed, unknown to the API) means the node may still
    be desynced, read-locked or stopped: critical. A live run's record is a backup at work: a
    warning. An unreadable record is critical too (a person must look).
    """
    try:
        change = read_change.fn(identity, host, path, timeout)
    except SshError as exc:
        return [Finding(BACKUP, CRITICAL, host, str(exc))]
    if change is None:
        return []
    holder = holder_of(change, current_run_id=None)
    run = f"backup run {change.run_label()} ({holder.state})"
    if holder.alive:
        return [Finding(BACKUP, WARNING, host, f"{run} is at work: {change.describe()}")]
    return [
        Finding(
            BACKUP,
            CRITICAL,
            host,
            f"{run} left {host} {change.describe()}; the next backup of this node repairs it "
            f"first (or repair by hand and remove {path})",
        )
    ]


def assess_gathered(
    gathered: Sequence[Gathered],
    *,
    checks: Collection[str],
    expected_nodes: int,
    vip: str | None = None,
    galera_backends: Collection[str] = ("galera",),
    vips: Mapping[str, str] | None = None,
) -> tuple[list[Finding], list[HealthRow]]:
    """Findings of every check on every host, and the table's rows (an ``ok`` row for each
    check on a host that found nothing).

    Args:
        gathered: One entry per host of the cluster.
        checks: The checks that were asked for (a host that could not run them still counts).
        expected_nodes: The cluster's size in the inventory (Pacemaker nodes, Galera size,
            RabbitMQ disk nodes).
        vip: The virtual IP the ``vip`` check looks for on every host (exactly one must hold it).
        galera_backends: haproxy's backends in front of Galera (one writer at a time).
        vips: Several virtual IPs by name (the inventory's ``vips``), each on exactly one host;
            ``vip`` is one more, named by its address.
    """
    findings: list[Finding] = []
    rows: list[HealthRow] = []

    def record(component: str, node: str, found: list[Finding]) -> None:
        findings.extend(found)
        rows.extend(rows_for(component, node, found))

    galera: dict[str, Mapping[str, str] | str | None] = {}
    vip_addresses: dict[str, tuple[str, ...] | str] = {}
    for entry in gathered:
        if entry.unreachable is not None:
            record("ssh", entry.host, [Finding("ssh", CRITICAL, entry.host, entry.unreachable)])
            galera[entry.host] = vip_addresses[entry.host] = entry.unreachable
            continue
        for check, why in entry.errors.items():
            record(check, entry.host, [Finding(check, CRITICAL, entry.host, why)])
            if check == GALERA:
                galera[entry.host] = why
            elif check == VIP:
                vip_addresses[entry.host] = why
        for check, result in entry.results.items():
            output = result.stdout if result.stdout.strip() else result.stderr
            if check == PACEMAKER:
                record(check, entry.host, assess_pacemaker(output, expected_nodes=expected_nodes))
            elif check == COROSYNC:
                found = assess_corosync_quorum(
                    result.stdout + result.stderr, expected_nodes=expected_nodes, node=entry.host
                )
                record(check, entry.host, found)
            elif check == CLUSTERCHECK:
                found = assess_galera_http(result.stdout + result.stderr, node=entry.host)
                record(check, entry.host, found)
            elif check == HAPROXY:
                found = assess_haproxy(
                    result.stdout + result.stderr, galera_backends=galera_backends, node=entry.host
                )
                record(check, entry.host, found)
            elif check == RABBITMQ:
                record(check, entry.host, assess_rabbitmq(output, expected_nodes=expected_nodes))
            elif check == VIP:
                vip_addresses[entry.host] = (
                    parse_ip_addresses(result.stdout)
                    if result.exit_status == 0
                    else f"exit status {result.exit_status}"
                )
            elif check == GALERA:
                status = parse_wsrep_status(result.stdout) if result.exit_status == 0 else {}
                galera[entry.host] = status or (
                    f"exit status {result.exit_status}: {result.stderr.strip()[:200]}"
                )
    if GALERA in checks:
        found = assess_galera_cluster(galera, expected_size=expected_nodes)
        by_node: dict[str, list[Finding]] = {host: [] for host in galera}
        for finding in found:
            node = finding.subject if finding.subject in galera else "cluster"
            by_node.setdefault(node, []).append(finding)
        for node, node_findings in by_node.items():
            record(GALERA, node, node_findings)
    wanted = dict(vips or {})
    if vip is not None:
        wanted.setdefault(vip, vip)
    for name, address in wanted.items() if VIP in checks else ():
        found = assess_vip(address, vip_addresses, name=name)
        holders = [h for h, a in vip_addresses.items() if not isinstance(a, str) and address in a]
        record(VIP, "cluster" if found else holders[0], found)
    return findings, rows
