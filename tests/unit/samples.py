"""Stack data shaped as :func:`tasks.heat.gather_stack_data` returns it.

Modelled on what the OpenStack fake returns for the templates in heat-templates/hot/ (the slow
tests check the real thing): Heat-style server names, Nova's address format, metadata values
as the JSON strings Nova stores. Each call returns fresh dicts, so tests may change them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

NET = "f3b0c5d2-0000-4000-8000-00000000a001"

#: Server ids: readable, but in the UUID shape Nova uses.
IDS = {
    "deploy": "5e1f0000-0000-4000-8000-000000000100",
    "backend0": "5e1f0000-0000-4000-8000-000000000111",
    "backend1": "5e1f0000-0000-4000-8000-000000000112",
    "backend2": "5e1f0000-0000-4000-8000-000000000113",
    "app0": "5e1f0000-0000-4000-8000-000000000130",
    "app1": "5e1f0000-0000-4000-8000-000000000131",
    "analytics": "5e1f0000-0000-4000-8000-000000000120",
}

BACKENDS = ["192.168.122.111", "192.168.122.112", "192.168.122.113"]
APPS = ["192.168.122.130", "192.168.122.131"]

#: The seed's analytics.ini, byte for byte (seed 000: "a static inventory file").
SEED_ANALYTICS_INI = """\
[analytics_servers]
192.168.122.120

[backend_servers]
192.168.122.111
192.168.122.112
192.168.122.113
"""


def heat_name(stack: str, resource: str) -> str:
    """Heat's ``<stack>-<resource>-<12 random characters>`` (derived, not random, here)."""
    suffix = hashlib.sha1(f"{stack}/{resource}".encode()).hexdigest()[:12]
    return f"{stack}-{resource}-{suffix}"


def _server(name: str, fixed: str, floating: str | None = None, **metadata: Any) -> dict:
    entries = [{"addr": fixed, "version": 4, "OS-EXT-IPS:type": "fixed"}]
    if floating:
        entries.append({"addr": floating, "version": 4, "OS-EXT-IPS:type": "floating"})
    return {
        "name": name,
        "addresses": {NET: entries},
        "metadata": {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()},
    }


def _resource(kind: str, physical_id: str) -> dict[str, str]:
    return {"type": kind, "physical_id": physical_id, "status": "CREATE_COMPLETE"}


def multi_node_stack() -> dict[str, Any]:
    """A complete edx-multi-node stack named ``multi``."""
    servers = {
        IDS["deploy"]: _server(
            heat_name("multi", "deploy"),
            "192.168.122.100",
            "203.0.113.10",
            backend_servers=BACKENDS,
            app_servers=APPS,
            app_master=APPS[:1],
            galera_vip="192.168.122.110",
        ),
        **{
            IDS[f"backend{n}"]: _server(heat_name("multi", f"backend{n}"), address)
            for n, address in enumerate(BACKENDS)
        },
        **{
            IDS[f"app{n}"]: _server(heat_name("multi", f"app{n}"), address)
            for n, address in enumerate(APPS)
        },
    }
    resources = {
        "management_net": _resource("OS::Neutron::Net", NET),
        "server_security_group": _resource(
            "OS::Neutron::SecurityGroup", "5ec90000-0000-4000-8000-000000000001"
        ),
        **{
            name: _resource("OS::Nova::Server", server_id)
            for name, server_id in IDS.items()
            if name != "analytics"
        },
        "backend0_mysql_data": _resource(
            "OS::Cinder::Volume", "7a1a0000-0000-4000-8000-000000000001"
        ),
    }
    return {
        "name": "multi",
        "id": "57ac0000-0000-4000-8000-000000000001",
        "status": "CREATE_COMPLETE",
        "outputs": {
            "deploy_ip": "203.0.113.10",
            "app_ip": "203.0.113.11",
            "app_master_id": IDS["app0"],
        },
        "resources": resources,
        "servers": servers,
    }


def analytics_stack() -> dict[str, Any]:
    """A complete edx-analytics-server stack named ``analytics`` (server name ``analytics``)."""
    return {
        "name": "analytics",
        "id": "57ac0000-0000-4000-8000-000000000002",
        "status": "CREATE_COMPLETE",
        "outputs": {"server_ip": "192.168.122.120", "public_ip": "203.0.113.12"},
        "resources": {
            "port": _resource("OS::Neutron::Port", "90e70000-0000-4000-8000-000000000001"),
            "server": _resource("OS::Nova::Server", IDS["analytics"]),
        },
        "servers": {
            IDS["analytics"]: _server("analytics", "192.168.122.120", "203.0.113.12"),
        },
    }
