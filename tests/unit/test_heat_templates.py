"""The HOT templates in heat-templates/hot/: structure, the documented interface, and stacks
built from them on the OpenStack fake."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from openstack import exceptions

from tests.fakes.heat_template import load_template
from tests.unit.conftest import HOT, create_stack
from tests.unit.heat_checks import template_problems

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack")

TEMPLATES = sorted(HOT.glob("*.yaml"))
REQUIRED = object()

#: The interface operators and flows rely on (operations.md, "OpenStack stacks").
EXPECTED = {
    "edx-analytics-server.yaml": {
        "parameters": {
            "name": "analytics",
            "image": REQUIRED,
            "flavor": "m1.large",
            "ip": "192.168.122.120",
            "network": REQUIRED,
            "security_group": REQUIRED,
            "public_net_id": REQUIRED,
            "key_name": REQUIRED,
            "timeout": 900,
            "hadoop_size": 10,
        },
        "resources": {
            "port": "OS::Neutron::Port",
            "floating_ip": "OS::Neutron::FloatingIP",
            "hadoop_data": "OS::Cinder::Volume",
            "hadoop_data_attachment": "OS::Cinder::VolumeAttachment",
            "server": "OS::Nova::Server",
            "wait_handle": "OS::Heat::WaitConditionHandle",
            "wait_condition": "OS::Heat::WaitCondition",
        },
        "outputs": {"server_ip", "public_ip"},
    },
    "edx-multi-node.yaml": {
        "parameters": {
            "image": REQUIRED,
            "key_name": REQUIRED,
            "public_net_id": REQUIRED,
            "deploy_flavor": "m1.small",
            "backend_flavor": "m1.large",
            "app_flavor": "m1.large",
            "mysql_size": 10,
            "mongodb_size": 10,
            "dns_nameservers": "8.8.8.8,8.8.4.4",
            "timeout": 1800,
        },
        "resources": {
            # Looked up by name from the analytics stack's flow: keep these names.
            "management_net": "OS::Neutron::Net",
            "server_security_group": "OS::Neutron::SecurityGroup",
            "deploy": "OS::Nova::Server",
            "galera_vip_port": "OS::Neutron::Port",
            "app0": "OS::Nova::Server",
            "app_lb": "OS::Octavia::LoadBalancer",
            **{f"backend{n}": "OS::Nova::Server" for n in range(3)},
            **{f"backend{n}_mysql_data": "OS::Cinder::Volume" for n in range(3)},
            **{f"backend{n}_mongodb_data": "OS::Cinder::Volume" for n in range(3)},
        },
        "outputs": {"deploy_ip", "app_ip", "app_master_id"},
    },
}


def _body(path: Path) -> dict:
    return load_template(path.read_text())


def test_every_template_has_documented_expectations():
    assert sorted(p.name for p in TEMPLATES) == sorted(EXPECTED)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_structure_is_valid(path: Path):
    assert template_problems(path) == []


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_parameters_resources_and_outputs_are_the_documented_ones(path: Path):
    body, expected = _body(path), EXPECTED[path.name]
    parameters = body["parameters"]
    assert set(parameters) == set(expected["parameters"])
    for name, default in expected["parameters"].items():
        if default is REQUIRED:
            assert "default" not in parameters[name], f"{name} must be required"
        else:
            assert parameters[name].get("default") == default, name
    kinds = {name: d["type"] for name, d in body["resources"].items()}
    assert {name: kinds.get(name) for name in expected["resources"]} == expected["resources"]
    assert set(body["outputs"]) == expected["outputs"]


def test_analytics_volume_is_attached_as_vdb_and_mounted_before_the_signal():
    resources = _body(HOT / "edx-analytics-server.yaml")["resources"]
    attachment = resources["hadoop_data_attachment"]["properties"]
    assert attachment == {
        "instance_uuid": {"get_resource": "server"},
        "volume_id": {"get_resource": "hadoop_data"},
        "mountpoint": "/dev/vdb",
    }
    script = resources["server"]["properties"]["user_data"]["str_replace"]["template"]
    assert script.index("mount_point=/edx/var/hadoop") < script.index("notify SUCCESS")
    assert "mkfs" in script and "blkid" in script  # formats only an empty volume
    assert set(resources["wait_condition"]["depends_on"]) == {"server", "hadoop_data_attachment"}
    port = resources["port"]["properties"]
    assert port["fixed_ips"] == [{"ip_address": {"get_param": "ip"}}]
    assert port["security_groups"] == [{"get_param": "security_group"}]


def test_multi_node_backends_have_fixed_addresses_vip_and_both_volumes():
    resources = _body(HOT / "edx-multi-node.yaml")["resources"]

    def fixed_ip(port: str) -> str:
        return resources[port]["properties"]["fixed_ips"][0]["ip_address"]

    assert fixed_ip("deploy_port") == "192.168.122.100"
    assert fixed_ip("galera_vip_port") == "192.168.122.110"
    for n in range(3):
        assert fixed_ip(f"backend{n}_port") == f"192.168.122.{111 + n}"
        pairs = resources[f"backend{n}_port"]["properties"]["allowed_address_pairs"]
        assert pairs == [
            {"ip_address": {"get_attr": ["galera_vip_port", "fixed_ips", 0, "ip_address"]}}
        ]
        for volume, device in (("mysql_data", "/dev/vdb"), ("mongodb_data", "/dev/vdc")):
            kind = "mysql" if volume == "mysql_data" else "mongodb"
            props = resources[f"backend{n}_{kind}_attachment"]["properties"]
            assert props == {
                "instance_uuid": {"get_resource": f"backend{n}"},
                "volume_id": {"get_resource": f"backend{n}_{volume}"},
                "mountpoint": device,
            }
    subnet = resources["management_subnet"]["properties"]
    network = ipaddress.ip_network(subnet["cidr"])
    pool = subnet["allocation_pools"][0]
    fixed = [ipaddress.ip_address(f"192.168.122.{n}") for n in (100, 110, 111, 112, 113, 120)]
    assert network == ipaddress.ip_network("192.168.122.0/24")
    assert all(ip in network and ip < ipaddress.ip_address(pool["start"]) for ip in fixed)


def test_multi_node_deploy_metadata_lists_the_groups():
    metadata = _body(HOT / "edx-multi-node.yaml")["resources"]["deploy"]["properties"]["metadata"]
    ports = {
        key: [item["get_attr"][0] for item in value]
        for key, value in metadata.items()
        if isinstance(value, list)
    }
    assert ports == {
        "backend_servers": ["backend0_port", "backend1_port", "backend2_port"],
        "app_servers": ["app0_port", "app1_port"],
        "app_master": ["app0_port"],
    }


def _user_data_scripts() -> list[tuple[str, str]]:
    """``(template:resource, script)`` for every server whose user data is a str_replace."""
    scripts = []
    for path in TEMPLATES:
        for name, resource in _body(path)["resources"].items():
            user_data = (resource.get("properties") or {}).get("user_data")
            if isinstance(user_data, dict) and "str_replace" in user_data:
                spec = user_data["str_replace"]
                script = spec["template"]
                for key in spec["params"]:  # as Heat would, with stand-in values
                    script = script.replace(
                        key, "curl -X POST http://heat" if "signal" in key else "v"
                    )
                scripts.append((f"{path.name}:{name}", script))
    return scripts


def test_cloud_init_scripts_are_valid_bash(tmp_path: Path):
    # The fake never boots servers, so this is the scripts' only check short of a real cloud.
    scripts = _user_data_scripts()
    assert {where for where, _ in scripts} == {
        "edx-analytics-server.yaml:server",
        *(f"edx-multi-node.yaml:backend{n}" for n in range(3)),
    }
    for where, script in scripts:
        assert script.startswith("#!/bin/bash\n"), where
        assert "notify SUCCESS" in script and "trap 'notify FAILURE" in script, where
        path = tmp_path / "user-data.sh"
        path.write_text(script)
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{where}: {result.stderr}"


# -- the checker itself: it must catch what it claims to ------------------------------------

BROKEN = """\
heat_template_version: 2015-04-30
description: broken on purpose
parameters:
  size: {type: number, default: 0, description: GB, constraints: [{range: {min: 1}}]}
  ip:
    type: string
    default: 10.0.0.300
    description: address
    constraints: [{allowed_pattern: "[0-9.]+\\\\.[0-9]{1,2}"}]
  unused: {type: string, default: x, description: never referenced}
  flavor: {type: string, description: f, constraints: [{custom_constraint: nova.flavour}]}
resources:
  volume:
    type: OS::Cinder::Volume
    properties: {size: {get_param: sise}, flavor: {get_param: flavor}}
  server:
    type: OS::Nova::Server
    depends_on: [volum]
    properties:
      networks: [{port: {get_resource: port}}]
      user_data:
        str_replace:
          template: "ip=__ip__ id=__volume__"
          params: {__ip__: {get_param: ip}, __vol__: {get_resource: volume}}
outputs:
  ip: {value: {get_attr: [server, first_adress]}, description: the address}
  size: {value: {get_param: size}, description: the size}
  port: {value: {get_resource: port}}
"""


def test_the_checker_reports_each_kind_of_mistake(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    text = "\n".join(template_problems(path))
    for expected in (
        "parameter size: default 0 is outside",
        "parameter ip: default '10.0.0.300' does not match",
        "parameter unused is never used",
        "unknown custom_constraint 'nova.flavour'",
        "get_param 'sise' is not a declared parameter",
        "unknown property 'flavor' of OS::Cinder::Volume",
        "depends_on 'volum' is not a resource",
        "get_resource 'port' is not a resource",
        "str_replace param '__vol__' is not used",
        "placeholder __volume__ has no param",
        "get_attr server.first_adress: no such attribute",
        "output port: no description",
    ):
        assert expected in text
    yaml.safe_load(BROKEN)  # the mistakes are HOT-level: the YAML itself is fine


# -- on the OpenStack fake -------------------------------------------------------------------

FLOATING = ipaddress.ip_network("172.24.4.0/24")  # the fake's floating range


def _heat_name(stack: str, resource: str) -> re.Pattern:
    return re.compile(rf"^{stack}-{resource}-[a-z0-9]{{12}}$")


@pytest.mark.slow
def test_both_stacks_create_on_the_fake(openstack_fake, openstack_conn, fake_stacks):
    multi = {o["output_key"]: o["output_value"] for o in fake_stacks.multi.outputs}
    assert fake_stacks.multi.status == "CREATE_COMPLETE"
    assert ipaddress.ip_address(multi["deploy_ip"]) in FLOATING
    assert ipaddress.ip_address(multi["app_ip"]) in FLOATING
    servers = {s.id: s for s in openstack_conn.compute.servers()}
    assert _heat_name("multi", "app0").match(servers[multi["app_master_id"]].name)

    by_resource = {}
    for server in servers.values():
        match = re.match(r"^multi-(\w+)-[a-z0-9]{12}$", server.name)
        if match:
            by_resource[match[1]] = server
    assert set(by_resource) == {"deploy", "backend0", "backend1", "backend2", "app0", "app1"}
    deploy = by_resource["deploy"]
    assert json.loads(deploy.metadata["backend_servers"]) == [
        "192.168.122.111",
        "192.168.122.112",
        "192.168.122.113",
    ]
    app_servers = json.loads(deploy.metadata["app_servers"])
    assert json.loads(deploy.metadata["app_master"]) == app_servers[:1]
    assert deploy.metadata["galera_vip"] == "192.168.122.110"

    # Volumes: Heat-style names carrying mysql_data/mongodb_data, attached vdb/vdc in-use.
    volumes = list(openstack_conn.block_storage.volumes(details=True))
    for n in range(3):
        backend = by_resource[f"backend{n}"]
        attached = {
            v.name: v.attachments[0]["device"]
            for v in volumes
            if v.attachments and v.attachments[0]["server_id"] == backend.id
        }
        assert sorted(attached.values()) == ["/dev/vdb", "/dev/vdc"]
        for name, device in attached.items():
            kind = "mysql_data" if device == "/dev/vdb" else "mongodb_data"
            assert _heat_name("multi", f"backend{n}_{kind}").match(name), name
            assert kind in name
    assert sum("mysql_data" in v.name for v in volumes) == 3
    assert sum("mongodb_data" in v.name for v in volumes) == 3
    sizes = {v.size for v in volumes if v.name.startswith("multi-")}
    assert sizes == {20}  # from deployments/example-multi-node.env.yaml

    # The analytics stack, joined to the multi-node stack's network.
    analytics = {o["output_key"]: o["output_value"] for o in fake_stacks.analytics.outputs}
    assert fake_stacks.analytics.status == "CREATE_COMPLETE"
    assert analytics["server_ip"] == "192.168.122.120"
    assert ipaddress.ip_address(analytics["public_ip"]) in FLOATING
    node = openstack_conn.compute.find_server("analytics", ignore_missing=False)
    network = fake_stacks.multi_resources["management_net"].physical_resource_id
    assert {a["addr"] for a in node.addresses[network]} == {
        "192.168.122.120",
        analytics["public_ip"],
    }
    (hadoop,) = [v for v in volumes if "hadoop_data" in v.name]
    assert _heat_name("analytics", "hadoop_data").match(hadoop.name)
    assert (hadoop.status, hadoop.size) == ("in-use", 50)
    assert [(a["server_id"], a["device"]) for a in hadoop.attachments] == [(node.id, "/dev/vdb")]
    assert openstack_fake.internal_errors == []


@pytest.mark.slow
def test_the_fake_refuses_an_analytics_stack_without_its_required_parameters(openstack_conn):
    with pytest.raises(exceptions.BadRequestException, match="network"):
        create_stack(
            openstack_conn, "edx-analytics-server.yaml", "analytics", "example-analytics.env.yaml"
        )
