"""The inventory as data: hosts, their groups and roles, and its two file forms.

One model (:class:`Inventory` of :class:`Host`) serves every flow. It is built from Heat stacks
(:mod:`domain.heat_inventory`; :func:`tasks.heat.inventory_from_openstack` reads them) or from
a file (:func:`load_inventory`), and written in the two forms operators know: the static INI of
the seed's ``analytics.ini`` (:func:`render_ini`) and the JSON a dynamic inventory prints for
``--list`` (:func:`render_json`). Both parse back. ``python -m domain.inventory`` converts
between them (:func:`main`).

Groups (:data:`GROUPS`): ``deploy``, ``backend_servers``, ``app_servers``, ``app_master``,
``analytics_servers``. Hosts are identified by their management address, as operators type
them (``--limit 192.168.122.112``); ``name`` is the Nova server name where one is known. Host
variables: ``backend_role`` (``primary``/``secondary``, decided as :mod:`domain.backend` says),
``server_id``, ``public_ip``. Group variables (JSON form only): ``galera_vip`` (the Galera
VIP), ``vips`` (several VIPs by name, ``{"rabbitmq": "192.168.122.140"}`` or a list of IPs;
:meth:`Inventory.vips` merges both, ``galera_vip`` as ``galera``), ``ha_services`` (what a
group runs, for :mod:`domain.ha_topology`).

Example:
    ```python
    from domain.inventory import ANALYTICS_INI_GROUPS, load_inventory, render_ini

    inventory = load_inventory("deployments/example-inventory.json")
    inventory.primary_backend.address          # '192.168.122.111'
    [h.address for h in inventory.secondary_backends]  # backup targets
    print(render_ini(inventory, ANALYTICS_INI_GROUPS))  # the seed's analytics.ini
    ```
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from domain.backend import PRIMARY, ROLE_VAR, ROLES, SECONDARY, choose_primary
from pipeline.errors import InvalidInput, NotFound

#: Every group an inventory may have, in the order they are written.
GROUPS = ("deploy", "backend_servers", "app_servers", "app_master", "analytics_servers")
#: The groups of the seed's hand-written ``analytics.ini``, in its order.
ANALYTICS_INI_GROUPS = ("analytics_servers", "backend_servers")
#: Host variable that carries a host's name in the JSON form (hosts are keyed by address).
NAME_VAR = "server_name"

_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_INLINE_COMMENT = re.compile(r"\s#")


class InventoryError(InvalidInput):
    """An inventory that cannot be used; the message names the input and the bad value."""


class UnknownGroup(InventoryError, NotFound):
    """A group that is not one of :data:`GROUPS`."""


class HostNotFound(InventoryError, NotFound):
    """No host of the inventory has this address or name."""


class DuplicateHost(InventoryError):
    """The same host listed twice in a group, or two hosts sharing an address or a name."""


class BadAddress(InventoryError):
    """Neither an IP address nor a valid DNS host name."""


def check_address(value: Any, where: str) -> str:
    """Return ``value`` if it is an IP address or a DNS host name, else raise :class:`BadAddress`.

    Dotted numbers must form a valid IPv4 address (so ``192.168.122.300`` is refused rather
    than taken for a host name).

    Example:
        >>> check_address("192.168.122.111", "analytics.ini line 5")
        '192.168.122.111'
    """
    if not isinstance(value, str) or not value:
        raise BadAddress(f"{where}: bad address {value!r}: expected an IP address or host name")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    if all(label.isdigit() for label in labels) or len(value) > 253:
        raise BadAddress(f"{where}: bad address {value!r}: not a valid IP address")
    if not all(_HOST_LABEL.match(label) for label in labels):
        raise BadAddress(f"{where}: bad address {value!r}: expected an IP address or host name")
    return value


#: The group variable listing a group's virtual IPs (``{"name": "IP", ...}`` or ``["IP", ...]``).
VIPS_VAR = "vips"
#: The older variable of the one Galera VIP; still read, as the VIP named ``galera``.
GALERA_VIP_VAR = "galera_vip"


def group_vips(values: Mapping[str, Any], where: str) -> dict[str, str]:
    """A group's virtual IPs by name, from its variables; raises InventoryError naming the bad one.

    ``vips`` maps names to IP addresses (a list of addresses names each by itself), and the
    older ``galera_vip`` is the VIP named ``galera``: inventories written before ``vips``
    existed keep working unchanged. Each must be an IP address, each address listed once.

    Example:
        >>> group_vips({"galera_vip": "192.168.122.110",
        ...             "vips": {"rabbitmq": "192.168.122.120"}}, "backend_servers")
        {'galera': '192.168.122.110', 'rabbitmq': '192.168.122.120'}
    """
    listed: dict[str, Any] = {}
    if values.get(GALERA_VIP_VAR) not in (None, ""):
        listed["galera"] = values[GALERA_VIP_VAR]
    declared = values.get(VIPS_VAR) or {}
    if isinstance(declared, list):
        # A list names each address by itself: a repeat would vanish as a dict key unseen.
        repeated = next((a for i, a in enumerate(declared) if a in declared[:i]), None)
        if repeated is not None:
            raise InventoryError(f"{where}: VIP {repeated} is listed twice in {VIPS_VAR}")
        declared = {str(address): address for address in declared}
    if not isinstance(declared, Mapping):
        raise InventoryError(
            f"{where}: {VIPS_VAR} must map names to IP addresses (or list them), got {declared!r}"
        )
    vips: dict[str, str] = {}
    for name, address in {**listed, **declared}.items():
        try:
            if not isinstance(address, str):
                raise ValueError(address)
            vip = str(ipaddress.ip_address(address))
        except ValueError:
            raise InventoryError(f"{where}: VIP {name}: {address!r} is not an IP address") from None
        if name in listed and name in declared and str(listed[name]) != str(declared[name]):
            raise InventoryError(
                f"{where}: VIP {name} is {listed[name]} in {GALERA_VIP_VAR} but "
                f"{declared[name]} in {VIPS_VAR}"
            )
        if vip in vips.values() and vips.get(name) != vip:
            raise InventoryError(f"{where}: VIP {vip} is listed twice in {VIPS_VAR}")
        vips[str(name)] = vip
    return vips


def _check_group(name: Any, where: str) -> str:
    if name not in GROUPS:
        raise UnknownGroup(f"{where}: unknown group {name!r}; known groups: {', '.join(GROUPS)}")
    return name


def _check_vars(values: Any, where: str) -> dict[str, Any]:
    """Variables must be a mapping of Ansible-style names to JSON values."""
    if not isinstance(values, Mapping):
        raise InventoryError(f"{where}: variables must be a mapping, got {values!r}")
    for key, value in values.items():
        if not isinstance(key, str) or not _VAR_NAME.match(key):
            raise InventoryError(f"{where}: bad variable name {key!r}")
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise InventoryError(f"{where}: variable {key}: not a JSON value: {value!r}") from None
    return dict(values)


@dataclass(frozen=True)
class Host:
    """One machine: its management address, the groups it is in, its variables.

    Example:
        >>> Host("192.168.122.111", groups=("backend_servers",), name="multi-backend0-x",
        ...      vars={"backend_role": "primary"}).role
        'primary'
    """

    address: str
    groups: tuple[str, ...] = field(default=(), kw_only=True)
    #: The Nova server name when known; the address otherwise.
    name: str = field(default="", kw_only=True)
    vars: Mapping[str, Any] = field(default_factory=dict, kw_only=True)

    def __post_init__(self) -> None:
        where = f"host {self.name or self.address}"
        object.__setattr__(self, "address", check_address(self.address, where))
        object.__setattr__(self, "name", self.name or self.address)
        groups = [_check_group(group, where) for group in self.groups]
        if len(set(groups)) != len(groups):
            raise DuplicateHost(f"{where}: listed twice in the same group: {groups}")
        # Canonical group order, so equal hosts compare equal whatever order they came in.
        object.__setattr__(self, "groups", tuple(g for g in GROUPS if g in groups))
        object.__setattr__(self, "vars", _check_vars(self.vars, where))
        role = self.vars.get(ROLE_VAR)
        if role is not None:
            if "backend_servers" not in self.groups:
                raise InventoryError(f"{where}: {ROLE_VAR} is set but it is not a backend")
            if role not in ROLES:
                raise InventoryError(
                    f"{where}: {ROLE_VAR} {role!r}: expected {PRIMARY!r} or {SECONDARY!r}"
                )

    @property
    def role(self) -> str | None:
        """``primary``/``secondary`` for backends with a role, else None."""
        return self.vars.get(ROLE_VAR)

    def hostvars(self) -> dict[str, Any]:
        """Variables as the JSON form writes them (the name included when it is not the address)."""
        extra = {NAME_VAR: self.name} if self.name != self.address else {}
        return {**extra, **self.vars}


@dataclass(frozen=True)
class Inventory:
    """Hosts (in a stable order) and per-group variables (``galera_vip`` of the backends).

    Example:
        >>> inventory = inventory_from_groups(
        ...     {"backend_servers": ["192.168.122.111", "192.168.122.112"]}
        ... )
        >>> inventory.primary_backend.address, inventory.addresses("backend_servers")
        ('192.168.122.111', ['192.168.122.111', '192.168.122.112'])
    """

    hosts: tuple[Host, ...] = ()
    group_vars: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        hosts = tuple(self.hosts)
        object.__setattr__(self, "hosts", hosts)
        by_address: dict[str, Host] = {}
        by_name: dict[str, Host] = {}
        for host in hosts:
            if host.address in by_address:
                raise DuplicateHost(
                    f"duplicate host {host.address}: {by_address[host.address].name} and "
                    f"{host.name} share that address"
                )
            if host.name in by_name:
                raise DuplicateHost(
                    f"duplicate host name {host.name}: {by_name[host.name].address} and "
                    f"{host.address}"
                )
            by_address[host.address] = by_name[host.name] = host
        group_vars = {}
        for group, values in self.group_vars.items():
            if group != "all":
                _check_group(group, "group variables")
            group_vars[group] = _check_vars(values, f"variables of group {group}")
            group_vips(group_vars[group], f"variables of group {group}")
        object.__setattr__(self, "group_vars", group_vars)
        primaries = [h.address for h in self.group("backend_servers") if h.role == PRIMARY]
        if len(primaries) > 1:
            raise InventoryError(f"more than one primary backend: {', '.join(primaries)}")

    def group(self, name: str) -> tuple[Host, ...]:
        """The hosts of group ``name``, in inventory order; raises UnknownGroup for bad names."""
        _check_group(name, "inventory")
        return tuple(host for host in self.hosts if name in host.groups)

    def addresses(self, group: str) -> list[str]:
        return [host.address for host in self.group(group)]

    def vips(self, group: str) -> dict[str, str]:
        """The group's virtual IPs by name (``vips``, and ``galera_vip`` as ``galera``)."""
        _check_group(group, "inventory")
        return group_vips(self.group_vars.get(group, {}), f"variables of group {group}")

    def host(self, key: str) -> Host:
        """The host with this address or name."""
        for host in self.hosts:
            if key in (host.address, host.name):
                return host
        raise HostNotFound(f"no host {key!r} in the inventory")

    @property
    def primary_backend(self) -> Host | None:
        """The backend holding the Galera VIP: the one marked primary, else the first."""
        backends = self.group("backend_servers")
        return choose_primary(backends, marked=[host for host in backends if host.role == PRIMARY])

    @property
    def secondary_backends(self) -> tuple[Host, ...]:
        """Every backend but the primary: the safe targets of disruptive steps (backups)."""
        primary = self.primary_backend
        return tuple(host for host in self.group("backend_servers") if host is not primary)

    def with_backend_roles(self, vip_holder: str | None = None) -> Inventory:
        """Mark ``vip_holder`` (an address or name; default: the backend marked primary, else
        the first) primary and the other backends secondary."""
        backends = self.group("backend_servers")
        if not backends:
            return self
        primary = self.primary_backend if vip_holder is None else self.host(vip_holder)
        if primary not in backends:
            raise InventoryError(f"VIP holder {vip_holder}: not one of the backend_servers")
        hosts = tuple(
            replace(host, vars={**host.vars, ROLE_VAR: PRIMARY if host is primary else SECONDARY})
            if host in backends
            else host
            for host in self.hosts
        )
        return Inventory(hosts, self.group_vars)

    def merge(self, other: Inventory) -> Inventory:
        """Both inventories' hosts; a host in both (same address) must have the same name and
        gets the union of groups, ``other``'s variables winning (so do its group variables)."""
        hosts = {host.address: host for host in self.hosts}
        for host in other.hosts:
            mine = hosts.get(host.address)
            if mine is None:
                hosts[host.address] = host
                continue
            if mine.name != host.name:
                raise DuplicateHost(
                    f"duplicate host {host.address}: {mine.name} and {host.name} share that address"
                )
            hosts[host.address] = replace(
                mine,
                groups=(*mine.groups, *(g for g in host.groups if g not in mine.groups)),
                vars={**mine.vars, **host.vars},
            )
        group_vars = {g: dict(v) for g, v in self.group_vars.items()}
        for group, values in other.group_vars.items():
            group_vars[group] = {**group_vars.get(group, {}), **values}
        return Inventory(tuple(hosts.values()), group_vars)


def inventory_from_groups(
    groups: Mapping[str, Sequence[str]],
    *,
    names: Mapping[str, str] | None = None,
    host_vars: Mapping[str, Mapping[str, Any]] | None = None,
    group_vars: Mapping[str, Mapping[str, Any]] | None = None,
    source: str = "inventory",
) -> Inventory:
    """Build an inventory from ``{group: [address, ...]}``; every parser ends here.

    Hosts keep the order of their first appearance. Backends get roles: the one ``host_vars``
    mark primary, else the first. Errors name ``source`` and the bad group or address.

    Example:
        >>> inv = inventory_from_groups({"analytics_servers": ["192.168.122.120"]})
        >>> inv.host("192.168.122.120").groups
        ('analytics_servers',)
    """
    # Keys normalised like the addresses (IPv6 has many spellings of one address).
    names = {check_address(k, f"{source}: name of"): v for k, v in (names or {}).items()}
    host_vars = {
        check_address(k, f"{source}: variables of"): v for k, v in (host_vars or {}).items()
    }
    members: dict[str, list[str]] = {}
    for group, addresses in groups.items():
        _check_group(group, source)
        if isinstance(addresses, str) or not isinstance(addresses, Sequence):
            raise InventoryError(f"{source}: group {group}: expected a list of addresses")
        seen: set[str] = set()
        for raw in addresses:
            address = check_address(raw, f"{source}: group {group}")
            if address in seen:
                raise DuplicateHost(f"{source}: host {address} is listed twice in group {group}")
            seen.add(address)
            members.setdefault(address, []).append(group)
    for address in host_vars:
        if address not in members:
            raise InventoryError(f"{source}: variables for host {address}, which is in no group")
    hosts = tuple(
        Host(
            address,
            groups=tuple(in_groups),
            name=names.get(address, ""),
            vars=host_vars.get(address, {}),
        )
        for address, in_groups in members.items()
    )
    return Inventory(hosts, dict(group_vars or {})).with_backend_roles()


# -- the INI form (the seed's analytics.ini) ----------------------------------------------


def render_ini(inventory: Inventory, groups: Iterable[str] | None = None) -> str:
    """The static INI inventory: a ``[group]`` section per group, one address per line.

    ``groups`` picks the sections and their order (default: every non-empty group in
    :data:`GROUPS` order); :data:`ANALYTICS_INI_GROUPS` gives the seed's ``analytics.ini``.
    Variables are not written: the INI form is the operators' hand-written shape, the JSON form
    keeps everything.

    Example:
        >>> inv = inventory_from_groups({"backend_servers": ["192.168.122.111"],
        ...                              "analytics_servers": ["192.168.122.120"]})
        >>> print(render_ini(inv, ANALYTICS_INI_GROUPS), end="")
        [analytics_servers]
        192.168.122.120
        <BLANKLINE>
        [backend_servers]
        192.168.122.111
    """
    chosen = [g for g in GROUPS if inventory.group(g)] if groups is None else list(groups)
    sections = [
        "\n".join([f"[{_check_group(g, 'render_ini')}]", *inventory.addresses(g)]) for g in chosen
    ]
    return "\n\n".join(sections) + "\n" if sections else ""


def parse_ini(text: str, source: str = "inventory.ini") -> Inventory:
    """Parse the INI form: ``[group]`` headers, one address per line, ``#``/``;`` comments.

    Host or group variables (``addr key=value``, ``[group:vars]``, ``[group:children]``) are
    refused: they belong in the JSON form. Backends get roles in file order (first: primary).
    """
    groups: dict[str, list[str]] = {}
    current: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{source} line {number}"
        line = _INLINE_COMMENT.split(raw, maxsplit=1)[0].strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise InventoryError(f"{where}: malformed section header {raw.strip()!r}")
            name = line[1:-1].strip()
            if ":" in name:
                raise InventoryError(
                    f"{where}: [{name}]: group variables and children are not supported in "
                    "the INI form; use the JSON form"
                )
            current = _check_group(name, where)
            groups.setdefault(current, [])
            continue
        if current is None:
            raise InventoryError(f"{where}: host {line!r} before any [group] header")
        address, *rest = line.split()
        if rest:
            raise InventoryError(
                f"{where}: host variables ({' '.join(rest)}) are not supported in the INI "
                "form; use the JSON form"
            )
        address = check_address(address, where)
        if address in groups[current]:
            raise DuplicateHost(f"{where}: host {address} is already in [{current}]")
        groups[current].append(address)
    return inventory_from_groups(groups, source=source)


# -- the JSON form (a dynamic inventory's --list) ------------------------------------------


def to_ansible_list(inventory: Inventory) -> dict[str, Any]:
    """``{"group": {"hosts": [...], "vars": {...}}, ..., "_meta": {"hostvars": {...}}}``.

    Groups in :data:`GROUPS` order (empty ones left out), hosts keyed by address.
    """
    listing: dict[str, Any] = {}
    for group in GROUPS:
        hosts, values = inventory.addresses(group), dict(inventory.group_vars.get(group, {}))
        if hosts or values:
            listing[group] = {"hosts": hosts, "vars": values}
    if inventory.group_vars.get("all"):
        listing["all"] = {"vars": dict(inventory.group_vars["all"])}
    listing["_meta"] = {"hostvars": {h.address: h.hostvars() for h in inventory.hosts}}
    return listing


def render_json(inventory: Inventory) -> str:
    """:func:`to_ansible_list` as indented JSON text (stable: same inventory, same bytes)."""
    return json.dumps(to_ansible_list(inventory), indent=2) + "\n"


def parse_json(data: str | Mapping[str, Any], source: str = "inventory.json") -> Inventory:
    """Parse the ``--list`` form (text or an already decoded mapping).

    A group may be a list of hosts or ``{"hosts": [...], "vars": {...}}``; ``all`` (variables
    only; its ``children`` are ignored, as ``ansible-inventory --list`` writes them) and an
    empty ``ungrouped`` are accepted. ``server_name`` in ``hostvars`` is the host's name.
    """
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise InventoryError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise InventoryError(f"{source}: expected a JSON object of groups")
    groups: dict[str, list[str]] = {}
    group_vars: dict[str, Mapping[str, Any]] = {}
    for group, entry in data.items():
        if group == "_meta":
            continue
        where = f"{source}: group {group}"
        if isinstance(entry, list):
            entry = {"hosts": entry}
        if not isinstance(entry, Mapping):
            raise InventoryError(f"{where}: expected a list of hosts or an object")
        unknown = set(entry) - {"hosts", "vars", "children"}
        if unknown:
            raise InventoryError(f"{where}: unknown keys {sorted(unknown)}")
        if group in ("all", "ungrouped"):
            if entry.get("hosts"):
                raise InventoryError(f"{where}: hosts must be in one of {', '.join(GROUPS)}")
            if group == "all" and entry.get("vars"):
                group_vars["all"] = entry["vars"]
            continue
        _check_group(group, source)
        if entry.get("children"):
            raise InventoryError(f"{where}: child groups are not supported")
        groups[group] = list(entry.get("hosts") or [])
        if entry.get("vars"):
            group_vars[group] = entry["vars"]
    meta = data.get("_meta") or {}
    hostvars = meta.get("hostvars") or {} if isinstance(meta, Mapping) else None
    if not isinstance(hostvars, Mapping):
        raise InventoryError(f"{source}: _meta.hostvars must be an object")
    names: dict[str, str] = {}
    host_vars: dict[str, dict[str, Any]] = {}
    for address, values in hostvars.items():
        values = _check_vars(values, f"{source}: hostvars of {address}")
        name = values.pop(NAME_VAR, "")
        if name:
            names[address] = str(name)
        if values:
            host_vars[address] = values
    return inventory_from_groups(
        groups, names=names, host_vars=host_vars, group_vars=group_vars, source=source
    )


# -- files ---------------------------------------------------------------------------------


def load_inventory(path: str | Path) -> Inventory:
    """Read an inventory file: JSON when it ends in ``.json``, the INI form otherwise."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if path.suffix == ".json":
        return parse_json(text, str(path))
    return parse_ini(text, str(path))


def write_inventory(
    inventory: Inventory, path: str | Path, groups: Iterable[str] | None = None
) -> Path:
    """Write ``inventory`` to ``path`` (JSON for ``.json``, else INI with ``groups``)."""
    path = Path(path)
    text = render_json(inventory) if path.suffix == ".json" else render_ini(inventory, groups)
    path.write_text(text)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m domain.inventory FILE [--format ini|json] [--groups a,b]``: convert."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("file", help="an inventory file (.json, or the INI form)")
    parser.add_argument("--format", choices=("ini", "json"), default="ini")
    parser.add_argument("--groups", help="INI sections to write, in order (comma separated)")
    args = parser.parse_args(argv)
    try:
        inventory = load_inventory(args.file)
        groups = args.groups.split(",") if args.groups else None
        sys.stdout.write(
            render_json(inventory) if args.format == "json" else render_ini(inventory, groups)
        )
    except InventoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
