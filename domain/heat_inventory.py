"""Heat stacks to an inventory: which servers of which stack are in which group.

The stacks' plain data (:class:`StackData`, read by :func:`tasks.heat.gather_stack_data`) is
mapped here without a cloud: the multi-node stack's deploy node lists the groups in its server
metadata, as the original dynamic inventory read them; the analytics stack has one server.
Backends marked primary in their server metadata (:mod:`domain.backend`) are primary in the
inventory too, unless a flow names the backend that holds the VIP right now.

Example:
    ```python
    from domain.heat_inventory import inventory_from_stacks
    from tasks.heat import gather_stack_data

    inventory = inventory_from_stacks(
        gather_stack_data(conn, "multi"), gather_stack_data(conn, "analytics")
    )
    ```
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypedDict

from domain.backend import ROLE_VAR, primary_marks
from domain.inventory import Inventory, InventoryError, check_address, inventory_from_groups
from domain.servers import FIXED, FLOATING, addresses_of_kind

#: Deploy-node metadata keys that hold groups (JSON lists of addresses).
METADATA_GROUPS = ("backend_servers", "app_servers", "app_master")
SERVER_TYPE = "OS::Nova::Server"


class ResourceData(TypedDict):
    """A stack resource: ``OS::Nova::Server``, its physical id (the server id), its status."""

    type: str
    physical_id: str
    status: str


class ServerData(TypedDict):
    """A Nova server as the API shows it: ``addresses`` in Nova's format
    (``{"net": [{"addr": ..., "OS-EXT-IPS:type": "fixed"|"floating"}]}``), string metadata."""

    name: str
    addresses: dict[str, list[dict[str, Any]]]
    metadata: dict[str, str]


class StackData(TypedDict):
    """What the inventory needs from one stack, as plain data (see
    :func:`tasks.heat.gather_stack_data`).

    ``outputs`` maps output keys to values, ``resources`` resource names to
    :class:`ResourceData`, ``servers`` the stack's server ids to :class:`ServerData`.
    """

    name: str
    id: str
    status: str
    outputs: dict[str, Any]
    resources: dict[str, ResourceData]
    servers: dict[str, ServerData]


def _addresses(server: Mapping[str, Any], kind: str) -> list[str]:
    return addresses_of_kind(server.get("addresses"), kind)


def _stack_servers(stack: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """``(resource name, server id, server)`` for every server resource that has a server."""
    servers = stack.get("servers") or {}
    return [
        (name, res["physical_id"], servers[res["physical_id"]])
        for name, res in (stack.get("resources") or {}).items()
        if res.get("type") == SERVER_TYPE and res.get("physical_id") in servers
    ]


def _check_complete(stack: Mapping[str, Any], where: str) -> None:
    status = str(stack.get("status") or "")
    if status and (not status.endswith("_COMPLETE") or status.startswith("DELETE")):
        raise InventoryError(f"{where} is {status}; an inventory needs a complete stack")


def _metadata_list(value: Any, where: str) -> list[str]:
    """A group from server metadata: Heat stores lists as JSON strings (Nova keeps strings)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InventoryError(f"{where}: expected a JSON list of addresses")
    return value


def inventory_from_multi_node(stack: Mapping[str, Any]) -> Inventory:
    """``deploy``, ``backend_servers``, ``app_servers`` and ``app_master`` of a multi-node stack.

    The groups come from the deploy node's server metadata (JSON lists of addresses), as the
    original dynamic inventory read them; the deploy node is the server carrying them. Hosts that
    are servers of the stack get their server name, ``server_id`` and ``public_ip`` (floating
    IP); the ``galera_vip`` metadata becomes a variable of ``backend_servers``. A backend whose
    server metadata marks it primary (:func:`domain.backend.primary_marks`) is the primary.
    """
    where = f"stack {stack.get('name') or stack.get('id') or '?'}"
    _check_complete(stack, where)
    servers = _stack_servers(stack)
    carriers = [
        s for s in servers if any(k in (s[2].get("metadata") or {}) for k in METADATA_GROUPS)
    ]
    if len(carriers) != 1:
        found = ", ".join(name for name, _, _ in carriers) or "none"
        raise InventoryError(
            f"{where}: expected one server whose metadata lists the groups "
            f"({', '.join(METADATA_GROUPS)}), found {found}; is this a multi-node stack?"
        )
    resource, _, deploy = carriers[0]
    fixed = _addresses(deploy, FIXED)
    if not fixed:
        raise InventoryError(f"{where}: the deploy node ({resource}) has no fixed address")
    metadata = deploy.get("metadata") or {}
    groups: dict[str, list[str]] = {"deploy": [fixed[0]]}
    for key in METADATA_GROUPS:
        if key in metadata:
            groups[key] = _metadata_list(metadata[key], f"{where}: deploy node metadata {key}")
    by_id = {server_id: server for _, server_id, server in servers}
    master_id = (stack.get("outputs") or {}).get("app_master_id")
    if "app_master" not in groups and master_id in by_id:
        groups["app_master"] = _addresses(by_id[master_id], FIXED)[:1]

    names: dict[str, str] = {}
    host_vars: dict[str, dict[str, Any]] = {}
    backends = set(groups.get("backend_servers", ()))
    for _, server_id, server in servers:
        for address in _addresses(server, FIXED):
            names[address] = str(server.get("name") or "")
            host_vars[address] = {"server_id": server_id}
            floating = _addresses(server, FLOATING)
            if floating:
                host_vars[address]["public_ip"] = floating[0]
            marks = primary_marks(server.get("metadata") or {})
            if address in backends and marks:
                host_vars[address][ROLE_VAR] = marks[ROLE_VAR]
    deploy_ip = (stack.get("outputs") or {}).get("deploy_ip")
    if deploy_ip and "public_ip" not in host_vars.get(fixed[0], {}):
        host_vars.setdefault(fixed[0], {})["public_ip"] = deploy_ip
    listed = {address for members in groups.values() for address in members}
    host_vars = {address: values for address, values in host_vars.items() if address in listed}
    group_vars = {}
    if metadata.get("galera_vip"):
        vip = check_address(metadata["galera_vip"], f"{where}: deploy node metadata galera_vip")
        group_vars["backend_servers"] = {"galera_vip": vip}
    return inventory_from_groups(
        groups, names=names, host_vars=host_vars, group_vars=group_vars, source=where
    )


def inventory_from_analytics_stack(stack: Mapping[str, Any]) -> Inventory:
    """The ``analytics_servers`` group of an analytics stack: its one server, at the
    ``server_ip`` output (else the server's fixed address), with ``public_ip`` when known."""
    where = f"stack {stack.get('name') or stack.get('id') or '?'}"
    _check_complete(stack, where)
    servers = _stack_servers(stack)
    if len(servers) != 1:
        raise InventoryError(f"{where}: expected one server, found {len(servers)}")
    _, server_id, server = servers[0]
    outputs = stack.get("outputs") or {}
    fixed = _addresses(server, FIXED)
    address = outputs.get("server_ip") or (fixed[0] if fixed else None)
    if not address:
        raise InventoryError(f"{where}: no server_ip output and no fixed address")
    host_vars: dict[str, Any] = {"server_id": server_id}
    public = outputs.get("public_ip") or next(iter(_addresses(server, FLOATING)), None)
    if public:
        host_vars["public_ip"] = check_address(public, f"{where}: public_ip")
    return inventory_from_groups(
        {"analytics_servers": [address]},
        names={address: str(server.get("name") or "")},
        host_vars={address: host_vars},
        source=where,
    )


def inventory_from_stacks(
    multi_node: Mapping[str, Any] | None = None,
    analytics: Mapping[str, Any] | None = None,
    *,
    vip_holder: str | None = None,
) -> Inventory:
    """The whole inventory from a multi-node stack and/or an analytics stack (:class:`StackData`).

    ``vip_holder`` (an address or name) is the backend that holds the Galera VIP right now, if
    a flow found out (keepalived may have moved it); by default the backend marked primary, else
    the first (:func:`domain.backend.choose_primary`).
    """
    inventory = Inventory()
    if multi_node is not None:
        inventory = inventory.merge(inventory_from_multi_node(multi_node))
    if analytics is not None:
        inventory = inventory.merge(inventory_from_analytics_stack(analytics))
    return inventory.with_backend_roles(vip_holder)
