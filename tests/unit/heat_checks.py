"""A static checker for HOT templates: what Heat's validation would reject, and more.

:func:`template_problems` returns every problem found (an empty list: the template is fine):
the version and sections, parameter types, defaults against their constraints, parameter
groups, resource types and their property and attribute names (a table of the types our
templates use, from the Heat resource reference), references (``get_param``,
``get_resource``, ``get_attr``, ``depends_on``, ``get_file``), ``str_replace`` placeholders,
unused parameters and dependency cycles.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.fakes.heat_template import PSEUDO_PARAMETERS, Template, TemplateError, load_template

VERSION = "2015-04-30"
SECTIONS = {"heat_template_version", "description", "parameter_groups", "parameters"}
SECTIONS |= {"resources", "outputs"}
PARAMETER_TYPES = {"string", "number", "json", "comma_delimited_list", "boolean"}
#: Custom constraints Heat ships (those our templates may use).
CUSTOM_CONSTRAINTS = {"glance.image", "nova.flavor", "nova.keypair", "neutron.network"}
CUSTOM_CONSTRAINTS |= {"neutron.port", "neutron.subnet", "neutron.router", "cinder.volume"}
#: Intrinsic functions of HOT 2015-04-30.
FUNCTIONS = {"get_param", "get_resource", "get_attr", "get_file", "str_replace", "list_join"}
FUNCTIONS |= {"repeat", "digest", "resource_facade", "str_split", "Fn::Select"}
_FUNCTION_LIKE = re.compile(r"^(get_|str_|list_|Fn::)")

_COMMON = {"name", "description", "value_specs", "tags", "admin_state_up"}
#: Resource types: (properties, attributes). "show" is an attribute of every resource.
TYPES: dict[str, tuple[set[str], set[str]]] = {
    "OS::Neutron::Net": (
        _COMMON | {"shared", "port_security_enabled", "dns_domain", "qos_policy", "tenant_id"},
        {"status", "subnets", "name", "mtu", "admin_state_up", "tenant_id"},
    ),
    "OS::Neutron::Subnet": (
        _COMMON
        | {"network", "cidr", "ip_version", "gateway_ip", "allocation_pools", "dns_nameservers"}
        | {"enable_dhcp", "host_routes", "subnetpool", "prefixlen", "segment", "tenant_id"}
        | {"ipv6_address_mode", "ipv6_ra_mode"},
        {"name", "network_id", "cidr", "gateway_ip", "allocation_pools", "dns_nameservers"},
    ),
    "OS::Neutron::Router": (
        _COMMON | {"external_gateway_info", "l3_agent_ids", "distributed", "ha"},
        {"status", "external_gateway_info", "name", "admin_state_up", "tenant_id"},
    ),
    "OS::Neutron::RouterInterface": ({"router", "subnet", "port"}, set()),
    "OS::Neutron::SecurityGroup": ({"name", "description", "rules", "tags"}, set()),
    "OS::Neutron::Port": (
        _COMMON
        | {"network", "fixed_ips", "security_groups", "allowed_address_pairs", "mac_address"}
        | {"device_id", "device_owner", "port_security_enabled", "qos_policy", "dns_name"}
        | {"binding:vnic_type", "replacement_policy"},
        {"fixed_ips", "mac_address", "network_id", "name", "status", "subnets", "device_id"}
        | {"security_groups", "allowed_address_pairs", "admin_state_up", "tenant_id"},
    ),
    "OS::Neutron::FloatingIP": (
        {"floating_network", "port_id", "fixed_ip_address", "floating_ip_address"}
        | {"value_specs", "dns_name", "dns_domain", "floating_subnet"},
        {"floating_ip_address", "fixed_ip_address", "port_id", "floating_network_id"}
        | {"router_id", "tenant_id"},
    ),
    "OS::Cinder::Volume": (
        {"size", "name", "description", "volume_type", "image", "metadata", "snapshot_id"}
        | {"availability_zone", "source_volid", "backup_id", "read_only", "multiattach"}
        | {"scheduler_hints"},
        {"size", "status", "display_name", "display_description", "attachments"}
        | {"attachments_list", "metadata", "metadata_values", "created_at", "volume_type"},
    ),
    "OS::Cinder::VolumeAttachment": ({"instance_uuid", "volume_id", "mountpoint"}, set()),
    "OS::Nova::Server": (
        {"name", "image", "flavor", "key_name", "networks", "user_data", "user_data_format"}
        | {"metadata", "security_groups", "config_drive", "block_device_mapping"}
        | {"block_device_mapping_v2", "availability_zone", "scheduler_hints", "admin_pass"}
        | {"software_config_transport", "personality", "flavor_update_policy", "tags"}
        | {"image_update_policy", "user_data_update_policy", "reservation_id", "diskConfig"},
        {"first_address", "networks", "name", "addresses", "accessIPv4", "accessIPv6"}
        | {"console_urls", "instance_name", "tags", "os_collect_config"},
    ),
    "OS::Heat::WaitConditionHandle": (set(), {"curl_cli", "endpoint", "token", "signal"}),
    "OS::Heat::WaitCondition": ({"handle", "timeout", "count"}, {"data"}),
    "OS::Octavia::LoadBalancer": (
        {"vip_subnet", "vip_address", "name", "description", "provider", "admin_state_up"}
        | {"flavor", "availability_zone", "tenant_id"},
        {"vip_address", "vip_port_id", "vip_subnet_id", "pools", "listeners", "flavor_id"},
    ),
    "OS::Octavia::Listener": (
        {"protocol", "protocol_port", "loadbalancer", "default_pool", "name", "description"}
        | {"admin_state_up", "connection_limit", "default_tls_container_ref", "allowed_cidrs"}
        | {"sni_container_refs", "tenant_id"},
        {"loadbalancers", "default_pool_id"},
    ),
    "OS::Octavia::Pool": (
        {"lb_algorithm", "protocol", "listener", "loadbalancer", "name", "description"}
        | {"admin_state_up", "session_persistence", "tls_enabled"},
        {"healthmonitor_id", "listeners", "members"},
    ),
    "OS::Octavia::PoolMember": (
        {"pool", "address", "protocol_port", "subnet", "weight", "admin_state_up"}
        | {"monitor_address", "monitor_port"},
        {"address", "pool_id"},
    ),
    "OS::Octavia::HealthMonitor": (
        {"pool", "type", "delay", "timeout", "max_retries", "url_path", "http_method"}
        | {"expected_codes", "admin_state_up", "max_retries_down", "tenant_id"},
        {"pools"},
    ),
}


def walk_functions(value: Any) -> Iterator[tuple[str, Any]]:
    """Every ``{function: argument}`` inside ``value``, nested calls included."""
    if isinstance(value, dict):
        if len(value) == 1:
            (key, arg), *_ = value.items()
            if isinstance(key, str) and _FUNCTION_LIKE.match(key):
                yield key, arg
        for item in value.values():
            yield from walk_functions(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_functions(item)


def default_problems(name: str, schema: dict[str, Any]) -> list[str]:
    """Does the declared default have the declared type and meet every constraint?"""
    if "default" not in schema:
        return []
    kind, default = schema.get("type"), schema["default"]
    where = f"parameter {name}: default {default!r}"
    if kind == "number" and (isinstance(default, bool) or not isinstance(default, int | float)):
        return [f"{where} is not a number"]
    if kind == "string" and not isinstance(default, str):
        return [f"{where} is not a string"]
    if kind == "boolean" and not isinstance(default, bool):
        return [f"{where} is not a boolean"]
    if kind == "comma_delimited_list" and not isinstance(default, str | list):
        return [f"{where} is not a comma delimited list"]
    problems = []
    for constraint in schema.get("constraints") or []:
        if "range" in constraint:
            low, high = constraint["range"].get("min"), constraint["range"].get("max")
            if (low is not None and default < low) or (high is not None and default > high):
                problems.append(f"{where} is outside {constraint['range']}")
        if "length" in constraint:
            low, high = constraint["length"].get("min"), constraint["length"].get("max")
            size = len(default)
            if (low is not None and size < low) or (high is not None and size > high):
                problems.append(f"{where} has a length outside {constraint['length']}")
        if "allowed_values" in constraint and default not in constraint["allowed_values"]:
            problems.append(f"{where} is not one of {constraint['allowed_values']}")
        # Heat matches the whole value against the pattern.
        if "allowed_pattern" in constraint and not re.fullmatch(
            constraint["allowed_pattern"], str(default)
        ):
            problems.append(f"{where} does not match {constraint['allowed_pattern']!r}")
    return problems


def _parameter_problems(body: dict[str, Any]) -> list[str]:
    problems = []
    parameters = body.get("parameters") or {}
    for name, schema in parameters.items():
        if schema.get("type") not in PARAMETER_TYPES:
            problems.append(f"parameter {name}: type {schema.get('type')!r} is not a HOT type")
        if not schema.get("description"):
            problems.append(f"parameter {name}: no description")
        for constraint in schema.get("constraints") or []:
            custom = constraint.get("custom_constraint")
            if custom is not None and custom not in CUSTOM_CONSTRAINTS:
                problems.append(f"parameter {name}: unknown custom_constraint {custom!r}")
        problems += default_problems(name, schema)
    grouped: list[str] = []
    for group in body.get("parameter_groups") or []:
        grouped += group.get("parameters") or []
    for name in grouped:
        if name not in parameters:
            problems.append(f"parameter_groups: {name} is not a declared parameter")
    problems += [
        f"parameter_groups: {n} is in more than one group"
        for n in set(grouped)
        if grouped.count(n) > 1
    ]
    return problems


def _reference_problems(
    body: dict[str, Any], where: str, definition: Any, directory: Path
) -> list[str]:
    problems = []
    parameters = set(body.get("parameters") or {}) | set(PSEUDO_PARAMETERS)
    resources = body.get("resources") or {}
    for function, arg in walk_functions(definition):
        if function not in FUNCTIONS:
            problems.append(f"{where}: {function} is not a HOT {VERSION} function")
        elif function == "get_param":
            name = arg[0] if isinstance(arg, list) else arg
            if name not in parameters:
                problems.append(f"{where}: get_param {name!r} is not a declared parameter")
        elif function == "get_resource" and arg not in resources:
            problems.append(f"{where}: get_resource {arg!r} is not a resource")
        elif function == "get_attr":
            target, attribute = (arg + [None, None])[:2] if isinstance(arg, list) else (arg, None)
            if target not in resources:
                problems.append(f"{where}: get_attr {target!r} is not a resource")
                continue
            kind = resources[target].get("type")
            attributes = TYPES.get(kind, (set(), set()))[1] | {"show"}
            if attribute not in attributes:
                problems.append(f"{where}: get_attr {target}.{attribute}: no such attribute")
        elif function == "get_file" and not (directory / str(arg)).is_file():
            problems.append(f"{where}: get_file {arg!r}: no such file")
        elif function == "str_replace":
            template, params = arg.get("template"), arg.get("params") or {}
            if isinstance(template, str):
                for key in params:
                    if key not in template:
                        problems.append(f"{where}: str_replace param {key!r} is not used")
                for left in set(re.findall(r"__[a-z_]+__", template)) - set(params):
                    problems.append(f"{where}: str_replace placeholder {left} has no param")
    return problems


def template_problems(path: Path) -> list[str]:
    """Everything wrong with the HOT template at ``path`` (empty: nothing found)."""
    body = load_template(path.read_text())
    problems = []
    version = body.get("heat_template_version")
    if version != VERSION:
        problems.append(f"heat_template_version is {version!r}, expected {VERSION}")
    problems += [f"unknown top-level section {key!r}" for key in set(body) - SECTIONS]
    if not body.get("description"):
        problems.append("no description")
    problems += _parameter_problems(body)

    resources = body.get("resources") or {}
    if not resources:
        problems.append("no resources")
    used_parameters: set[str] = set()
    for name, definition in resources.items():
        kind = definition.get("type")
        if kind not in TYPES:
            problems.append(f"resource {name}: type {kind!r} is not in the checker's table")
        else:
            unknown = set(definition.get("properties") or {}) - TYPES[kind][0]
            problems += [f"resource {name}: unknown property {p!r} of {kind}" for p in unknown]
        unknown_keys = set(definition) - {"type", "properties", "depends_on", "metadata"}
        unknown_keys -= {"deletion_policy", "update_policy", "description"}
        problems += [f"resource {name}: unknown key {key!r}" for key in unknown_keys]
        depends_on = definition.get("depends_on") or []
        for dependency in [depends_on] if isinstance(depends_on, str) else depends_on:
            if dependency not in resources or dependency == name:
                problems.append(f"resource {name}: depends_on {dependency!r} is not a resource")
        problems += _reference_problems(body, f"resource {name}", definition, path.parent)
    outputs = body.get("outputs") or {}
    for key, output in outputs.items():
        if "value" not in (output or {}):
            problems.append(f"output {key}: no value")
        if not (output or {}).get("description"):
            problems.append(f"output {key}: no description")
        problems += _reference_problems(body, f"output {key}", output, path.parent)
    for function, arg in walk_functions([resources, outputs]):
        if function == "get_param":
            used_parameters.add(arg[0] if isinstance(arg, list) else arg)
    unused = set(body.get("parameters") or {}) - used_parameters
    problems += [f"parameter {name} is never used" for name in sorted(unused)]
    if not problems:
        try:  # Heat creates resources in dependency order: there must be one.
            Template(body).creation_order()
        except TemplateError as exc:
            problems.append(exc.message)
    return problems
