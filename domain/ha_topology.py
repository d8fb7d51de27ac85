"""Topology lint of an inventory: the HA rules of seeds 002 and 003, offline (Prefect-free).

Rules (operations reference, "HA control plane"):

- A clustered service (one that keeps a quorum: MySQL/Galera, RabbitMQ, MongoDB,
  Elasticsearch) runs on at least :data:`MIN_MEMBERS` nodes, an odd number, at most
  :data:`MAX_MEMBERS` (corosync's limit).
- No stateful service of seed 002's list (load balancers, RabbitMQ, MongoDB, MySQL,
  Elasticsearch, memcached) on a single node: that node would be a single point of failure.
- A single app server is a warning: the app tier is stateless, but one node still carries it.

Which service runs where: the ``ha_services`` variable of a group (JSON form:
``"backend_servers": {"vars": {"ha_services": ["mysql", "mongodb", "rabbitmq"]}}``); without
it, :data:`DEFAULT_SERVICES` (what the multi-node stack's template puts on its backends). The
INI form has no variables, so the defaults apply to it.

Example:
    ```python
    from domain.ha_topology import lint_topology
    from domain.inventory import load_inventory

    for finding in lint_topology(load_inventory("deployments/example-inventory.json")):
        print(finding.severity, finding.subject, finding.message)
    ```

``python -m domain.ha_topology FILE`` prints the findings; its exit status is 1 when one is
critical, 2 for an unusable inventory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from domain.ha_health import CRITICAL, WARNING, Finding
from domain.inventory import GROUPS, Inventory, InventoryError, load_inventory

COMPONENT = "topology"
#: Smallest, and largest, number of members of a clustered service.
MIN_MEMBERS = 3
MAX_MEMBERS = 16
#: Services that keep a quorum: the size rules (at least 3, odd, at most 16) apply.
CLUSTERED_SERVICES = frozenset({"mysql", "rabbitmq", "mongodb", "elasticsearch"})
#: Seed 002's stateful services: never on a single node.
STATEFUL_SERVICES = CLUSTERED_SERVICES | {"memcached", "load_balancer"}
#: The variable of a group naming the services its hosts run.
SERVICES_VAR = "ha_services"
#: Services per group when the inventory does not say: the multi-node stack's backends run
#: MariaDB/Galera and MongoDB, with keepalived moving the Galera VIP between them.
DEFAULT_SERVICES: Mapping[str, tuple[str, ...]] = {
    "backend_servers": ("mysql", "mongodb", "load_balancer"),
}


class UnknownService(InventoryError):
    """An ``ha_services`` entry that is not one of :data:`STATEFUL_SERVICES`."""


def services_by_group(inventory: Inventory) -> dict[str, tuple[str, ...]]:
    """Which HA services each group's hosts run: ``ha_services`` or :data:`DEFAULT_SERVICES`."""
    placement: dict[str, tuple[str, ...]] = {}
    for group in GROUPS:
        values = inventory.group_vars.get(group, {})
        if SERVICES_VAR not in values:
            if group in DEFAULT_SERVICES:
                placement[group] = DEFAULT_SERVICES[group]
            continue
        declared = values[SERVICES_VAR]
        if isinstance(declared, str) or not isinstance(declared, Sequence):
            raise InventoryError(
                f"variables of group {group}: {SERVICES_VAR} must be a list of service names, "
                f"got {declared!r}"
            )
        unknown = [name for name in declared if name not in STATEFUL_SERVICES]
        if unknown:
            raise UnknownService(
                f"variables of group {group}: {SERVICES_VAR}: unknown services {unknown}; "
                f"known: {', '.join(sorted(STATEFUL_SERVICES))}"
            )
        placement[group] = tuple(declared)
    return placement


def lint_topology(inventory: Inventory) -> list[Finding]:
    """The HA rules checked on ``inventory``; empty when it satisfies them.

    Raises:
        InventoryError: ``ha_services`` is not a list of known service names.
    """
    findings: list[Finding] = []

    def critical(service: str, message: str) -> None:
        findings.append(Finding(COMPONENT, CRITICAL, service, message))

    for group, services in services_by_group(inventory).items():
        hosts = inventory.addresses(group)
        where = f"{group} ({', '.join(hosts)})"
        count = len(hosts)
        for service in services:
            if count == 0:
                critical(service, f"{service} is placed on {group}, which has no hosts")
            elif count == 1:
                critical(
                    service,
                    f"{service} runs on a single node, {hosts[0]} ({group}): "
                    "a single point of failure",
                )
            elif service in CLUSTERED_SERVICES:
                size = f"{service} cluster of {count} nodes on {where}"
                if count < MIN_MEMBERS:
                    critical(
                        service,
                        f"{size}: at least {MIN_MEMBERS} are needed to keep a quorum "
                        "when one fails",
                    )
                if count > MAX_MEMBERS:
                    critical(service, f"{size}: at most {MAX_MEMBERS}")
                if count % 2 == 0:
                    critical(
                        service,
                        f"{size}: an even number, a split into halves leaves no quorum; "
                        "use an odd number",
                    )
    apps = inventory.addresses("app_servers")
    if len(apps) == 1:
        findings.append(
            Finding(
                COMPONENT,
                WARNING,
                "app_servers",
                f"a single app server ({apps[0]}): "
                "the stateless tier has no second node to fail over to",
            )
        )
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m domain.ha_topology FILE``: print the findings of an inventory file."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("file", help="an inventory file (.json, or the INI form)")
    args = parser.parse_args(argv)
    try:
        findings = lint_topology(load_inventory(args.file))
    except InventoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for finding in findings:
        print(f"{finding.severity}\t{finding.subject}\t{finding.message}")
    if not findings:
        print(f"{args.file}: no finding")
    return 1 if any(finding.critical for finding in findings) else 0


if __name__ == "__main__":
    raise SystemExit(main())
