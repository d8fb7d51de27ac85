"""The OpenStack fake (tests/fakes/openstack) driven by unmodified openstacksdk."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import openstack
import openstack.config
import openstack.connection
import pytest
from openstack import exceptions

from tests.fakes.openstack import OpenStackFake

# openstacksdk's own deprecation notices (influxdb, _compute_attributes...) are not ours.
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack")

POLL = {"interval": 0.05, "wait": 5}
HEAT_NAME = re.compile(r"^multi-(?P<resource>[a-z_0-9]+)-[a-z0-9]{12}$")

TEMPLATE = """\
heat_template_version: 2015-04-30
description: A backend node with two data volumes
parameters:
  flavor: {type: string, default: m1.large}
  ip: {type: string, default: 192.168.122.111}
  mysql_size: {type: number, default: 10}
resources:
  port:
    type: OS::Neutron::Port
    properties:
      network: management
      fixed_ips: [{ip_address: {get_param: ip}}]
  floating_ip:
    type: OS::Neutron::FloatingIP
    properties:
      floating_network: public
      port_id: {get_resource: port}
  server:
    type: OS::Nova::Server
    properties:
      image: ubuntu-22.04
      flavor: {get_param: flavor}
      networks: [{port: {get_resource: port}}]
      metadata: {role: backend}
      user_data: {get_file: cloud-init.sh}
  mysql_data:
    type: OS::Cinder::Volume
    properties: {size: {get_param: mysql_size}}
  mongodb_data:
    type: OS::Cinder::Volume
    properties: {size: 5}
  mysql_attachment:
    type: OS::Cinder::VolumeAttachment
    properties:
      instance_uuid: {get_resource: server}
      volume_id: {get_resource: mysql_data}
      mountpoint: /dev/vdb
  mongodb_attachment:
    type: OS::Cinder::VolumeAttachment
    properties:
      instance_uuid: {get_resource: server}
      volume_id: {get_resource: mongodb_data}
      mountpoint: /dev/vdc
outputs:
  server_ip: {value: {get_attr: [server, first_address]}}
  networks: {value: {get_attr: [server, networks]}}
  public_ip: {value: {get_attr: [floating_ip, floating_ip_address]}}
  mysql_volume: {value: {get_resource: mysql_data}}
  flavor: {value: {get_param: flavor}}
"""


@pytest.fixture
def template_file(tmp_path: Path) -> Path:
    (tmp_path / "cloud-init.sh").write_text("#!/bin/sh\nmkdir -p /var/lib/mysql\n")
    path = tmp_path / "backend.yaml"
    path.write_text(TEMPLATE)
    return path


def _seed_backend(fake: OpenStackFake) -> tuple[str, dict[str, str]]:
    server = fake.add_server(
        "backend0",
        addresses={"management": ["192.168.122.111"]},
        metadata={"groups": '["backend_servers"]'},
        console_output="line 1\nline 2\nCloud-init finished\n",
    )
    volumes = {
        word: fake.add_volume(f"multi-{word}-0123456789ab", 10, attached_to=server.id).id
        for word in ("mysql_data", "mongodb_data")
    }
    return server.id, volumes


# -- Keystone, Nova, Cinder ---------------------------------------------------------------


def test_auth_returns_token_and_versioned_catalog(openstack_fake, openstack_conn):
    token = openstack_conn.authorize()

    assert token
    project = openstack_fake.project_id
    endpoint = openstack_conn.session.get_endpoint
    assert endpoint(service_type="block-storage", interface="public").endswith(
        f"/volume/v3/{project}"
    )
    assert endpoint(service_type="orchestration").endswith(f"/heat/v1/{project}")
    assert endpoint(service_type="compute").endswith("/compute/v2.1")
    assert [r.status for r in openstack_fake.requests("POST", "/auth/tokens$")] == [201]


def test_clouds_yaml_snippet_connects(openstack_fake, tmp_path: Path):
    path = tmp_path / "clouds.yaml"
    path.write_text(openstack_fake.clouds_yaml("fake"))
    openstack_fake.add_server("backend0")

    config = openstack.config.OpenStackConfig(
        config_files=[str(path)], vendor_files=[], load_envvars=False
    )
    conn = openstack.connection.Connection(config=config.get_one("fake"))

    assert [s.name for s in conn.compute.servers()] == ["backend0"]
    conn.close()


def test_wrong_password_is_refused(openstack_fake):
    conn = openstack_fake.connect(password="wrong")

    with pytest.raises(exceptions.SDKException):
        conn.authorize()
    assert [r.status for r in openstack_fake.requests("POST", "/auth/tokens$")] == [401]


def test_find_server_by_name_and_id(openstack_fake, openstack_conn):
    server_id, _ = _seed_backend(openstack_fake)
    openstack_fake.add_server("backend1")

    by_name = openstack_conn.compute.find_server("backend0", ignore_missing=False)
    by_id = openstack_conn.compute.find_server(server_id, ignore_missing=False)

    assert by_name.id == by_id.id == server_id
    assert by_name.addresses["management"][0]["addr"] == "192.168.122.111"
    assert json.loads(by_id.metadata["groups"]) == ["backend_servers"]
    with pytest.raises(exceptions.NotFoundException):
        openstack_conn.compute.find_server("backend9", ignore_missing=False)
    # the SDK tried the name as an id, got 404, then listed with ?name=
    lookups = openstack_fake.requests("GET", "/servers/backend0$")
    assert [r.status for r in lookups] == [404]
    assert openstack_fake.requests("GET", "/servers/detail$")[0].query == {"name": ["backend0"]}


def test_server_metadata_and_console_output(openstack_fake, openstack_conn):
    server_id, _ = _seed_backend(openstack_fake)

    openstack_conn.compute.set_server_metadata(server_id, backup="nightly")
    metadata = openstack_conn.compute.fetch_server_metadata(server_id).metadata
    output = openstack_conn.compute.get_server_console_output(server_id, length=1)

    assert metadata == {"groups": '["backend_servers"]', "backup": "nightly"}
    assert output == {"output": "Cloud-init finished\n"}


def test_in_use_volumes_attached_to_a_server(openstack_fake, openstack_conn):
    server_id, volumes = _seed_backend(openstack_fake)
    other = openstack_fake.add_server("backend1")
    openstack_fake.add_volume("multi-mysql_data-zzzzzzzzzzzz", 10, attached_to=other.id)
    openstack_fake.add_volume("spare", 1)

    in_use = list(openstack_conn.block_storage.volumes(details=True, status="in-use"))
    mine = [v for v in in_use if any(a["server_id"] == server_id for a in v.attachments)]

    assert len(in_use) == 3
    assert {v.name: v.id for v in mine} == {
        f"multi-{word}-0123456789ab": volume_id for word, volume_id in volumes.items()
    }
    assert {v.status for v in openstack_conn.block_storage.volumes(status="available")} == {
        "available"
    }


def test_snapshot_of_in_use_volume_needs_force_then_becomes_available(
    openstack_fake, openstack_conn
):
    _, volumes = _seed_backend(openstack_fake)
    storage = openstack_conn.block_storage

    with pytest.raises(exceptions.BadRequestException, match="in-use"):
        storage.create_snapshot(volume_id=volumes["mysql_data"], name="no-force")
    snap = storage.create_snapshot(
        volume_id=volumes["mysql_data"], name="mysql_data-x-20261103-010500", force=True
    )
    assert snap.status == "creating"
    done = storage.wait_for_status(snap, "available", failures=["error"], **POLL)

    assert done.status == "available"
    listed = list(storage.snapshots(details=True, volume_id=volumes["mysql_data"]))
    assert [s.name for s in listed] == ["mysql_data-x-20261103-010500"]
    assert list(storage.snapshots(volume_id=volumes["mongodb_data"])) == []
    storage.set_snapshot_metadata(snap, origin="nightly")
    assert storage.fetch_snapshot_metadata(snap).metadata == {"origin": "nightly"}
    storage.delete_snapshot(snap)
    assert openstack_fake.snapshots() == []


def test_snapshot_forced_to_error_raises_resource_failure(openstack_fake, openstack_conn):
    _, volumes = _seed_backend(openstack_fake)
    storage = openstack_conn.block_storage
    openstack_fake.fail_next_snapshots(1)

    failing = storage.create_snapshot(volume_id=volumes["mysql_data"], force=True)
    with pytest.raises(exceptions.ResourceFailure):
        storage.wait_for_status(failing, "available", failures=["error"], **POLL)
    fine = storage.create_snapshot(volume_id=volumes["mongodb_data"], force=True)
    openstack_fake.fail_snapshot(fine.id)
    with pytest.raises(exceptions.ResourceFailure):
        storage.wait_for_status(fine, "available", failures=["error"], **POLL)

    assert {s.status for s in openstack_fake.snapshots()} == {"error"}


def test_stuck_snapshot_times_out(openstack_fake, openstack_conn):
    _, volumes = _seed_backend(openstack_fake)
    openstack_fake.stall_next_snapshots(1)
    storage = openstack_conn.block_storage

    snap = storage.create_snapshot(volume_id=volumes["mysql_data"], force=True)
    with pytest.raises(exceptions.ResourceTimeout):
        storage.wait_for_status(snap, "available", failures=["error"], interval=0.05, wait=0.5)

    assert storage.get_snapshot(snap.id).status == "creating"
    with pytest.raises(exceptions.BadRequestException):
        storage.delete_snapshot(snap)  # Cinder refuses to delete a snapshot being created


def test_injected_503_reaches_the_sdk_and_the_next_call_succeeds(openstack_fake, openstack_conn):
    _seed_backend(openstack_fake)
    openstack_fake.fail_requests("GET", r"/volumes/detail$", status=503, count=1)

    with pytest.raises(exceptions.HttpException) as raised:
        list(openstack_conn.block_storage.volumes(status="in-use"))
    assert raised.value.status_code == 503
    assert len(list(openstack_conn.block_storage.volumes(status="in-use"))) == 2
    statuses = [r.status for r in openstack_fake.requests("GET", r"/volumes/detail$")]
    assert statuses == [503, 200]


def test_latency_injection_delays_only_matching_requests(openstack_fake, openstack_conn):
    _seed_backend(openstack_fake)
    openstack_conn.authorize()
    openstack_fake.add_latency("GET", r"/servers/detail$", 0.3)

    started = time.monotonic()
    list(openstack_conn.compute.servers())
    slow = time.monotonic() - started
    started = time.monotonic()
    list(openstack_conn.block_storage.volumes())
    fast = time.monotonic() - started

    assert slow >= 0.3
    assert fast < 0.3
    assert openstack_fake.requests("GET", r"/servers/detail$")[-1].duration >= 0.3


def test_reset_empties_the_cloud(openstack_fake, openstack_conn):
    _seed_backend(openstack_fake)
    openstack_fake.fail_requests(None, "/servers", count=None)

    openstack_fake.reset()

    assert openstack_fake.servers() == openstack_fake.volumes() == []
    assert list(openstack_conn.compute.servers()) == []


# -- Heat -----------------------------------------------------------------------------------


def _create_stack(conn, template_file: Path, name: str = "multi", **parameters):
    attrs = conn.orchestration.read_env_and_templates(template_file=str(template_file))
    return conn.orchestration.create_stack(name=name, parameters=parameters, **attrs), attrs


def test_heat_stack_create_find_update_delete(openstack_fake, openstack_conn, template_file):
    openstack_fake.stack_delay = 0.3  # long enough to see the IN_PROGRESS states
    heat = openstack_conn.orchestration

    stack, attrs = _create_stack(openstack_conn, template_file, mysql_size=20)
    assert any(key.endswith("cloud-init.sh") for key in attrs["files"])
    assert heat.get_stack(stack.id).status == "CREATE_IN_PROGRESS"
    assert list(openstack_conn.compute.servers()) == []  # nothing built before completion
    heat.wait_for_status(stack, "CREATE_COMPLETE", failures=["CREATE_FAILED"], **POLL)

    found = heat.find_stack("multi", ignore_missing=False)
    assert found.id == stack.id
    outputs = {o["output_key"]: o["output_value"] for o in found.outputs}
    (server,) = openstack_conn.compute.servers()
    assert HEAT_NAME.match(server.name)["resource"] == "server"
    assert server.metadata == {"role": "backend"}
    public_ip = outputs["public_ip"]
    assert outputs["server_ip"] == "192.168.122.111"
    assert outputs["networks"] == {"management": ["192.168.122.111", public_ip]}
    assert {a["addr"]: a["OS-EXT-IPS:type"] for a in server.addresses["management"]} == {
        "192.168.122.111": "fixed",
        public_ip: "floating",
    }
    volumes = {
        HEAT_NAME.match(v.name)["resource"]: v
        for v in openstack_conn.block_storage.volumes(status="in-use")
    }
    assert set(volumes) == {"mysql_data", "mongodb_data"}
    assert (volumes["mysql_data"].size, volumes["mongodb_data"].size) == (20, 5)
    assert [(a["server_id"], a["device"]) for a in volumes["mysql_data"].attachments] == [
        (server.id, "/dev/vdb")
    ]
    assert outputs["mysql_volume"] == volumes["mysql_data"].id
    assert outputs["flavor"] == "m1.large"
    resources = {r.name: r for r in heat.resources(found)}
    assert resources["server"].physical_resource_id == server.id
    assert {r.status for r in resources.values()} == {"CREATE_COMPLETE"}
    events = [e for e in heat.stack_events(found) if e.resource_name == "multi"]
    assert [e.resource_status for e in events] == ["CREATE_IN_PROGRESS", "CREATE_COMPLETE"]

    heat.update_stack(found, parameters={"mysql_size": 30, "flavor": "m1.xlarge"}, **attrs)
    assert heat.get_stack(stack.id).status == "UPDATE_IN_PROGRESS"
    heat.wait_for_status(found, "UPDATE_COMPLETE", failures=["UPDATE_FAILED"], **POLL)
    updated = heat.get_stack(stack.id)
    assert {o["output_key"]: o["output_value"] for o in updated.outputs}["flavor"] == "m1.xlarge"
    assert openstack_conn.block_storage.get_volume(volumes["mysql_data"].id).size == 30
    assert openstack_conn.compute.get_server(server.id).flavor.original_name == "m1.xlarge"

    heat.delete_stack(found)
    heat.wait_for_delete(found, interval=0.05, wait=5)
    assert heat.find_stack("multi") is None
    assert openstack_fake.servers() == openstack_fake.volumes() == []
    assert openstack_fake.stack(stack.id).stack_status == "DELETE_COMPLETE"


def test_injected_stack_failure_is_visible_through_the_sdk(
    openstack_fake, openstack_conn, template_file
):
    openstack_fake.fail_next_stack("Quota exceeded for instances: Requested 1", resource="server")
    heat = openstack_conn.orchestration

    stack, _ = _create_stack(openstack_conn, template_file)
    with pytest.raises(exceptions.ResourceFailure):
        heat.wait_for_status(stack, "CREATE_COMPLETE", failures=["CREATE_FAILED"], **POLL)

    failed = heat.get_stack(stack.id)
    assert failed.status == "CREATE_FAILED"
    assert failed.status_reason == "Quota exceeded for instances: Requested 1"
    statuses = {r.name: r.status for r in heat.resources(failed)}
    assert statuses["server"] == "CREATE_FAILED"
    assert statuses["mysql_data"] == "CREATE_COMPLETE"
    assert statuses["mysql_attachment"] == "INIT_COMPLETE"
    assert list(openstack_conn.compute.servers()) == []


def test_stack_delete_fails_while_a_volume_has_snapshots(
    openstack_fake, openstack_conn, template_file
):
    heat = openstack_conn.orchestration
    stack, _ = _create_stack(openstack_conn, template_file)
    heat.wait_for_status(stack, "CREATE_COMPLETE", failures=["CREATE_FAILED"], **POLL)
    volume = next(v for v in openstack_fake.volumes() if "-mysql_data-" in v.name)
    openstack_fake.add_snapshot(volume.id, "mysql_data-backup")

    heat.delete_stack(stack)
    with pytest.raises(exceptions.ResourceFailure):
        heat.wait_for_status(stack, "DELETE_COMPLETE", failures=["DELETE_FAILED"], **POLL)

    assert "dependent snapshots" in heat.get_stack(stack.id).status_reason
    assert openstack_fake.servers() == []  # deleted before the volumes, in reverse order


def test_invalid_stack_parameters_are_a_bad_request(openstack_conn, template_file):
    with pytest.raises(exceptions.BadRequestException, match="not_a_parameter"):
        _create_stack(openstack_conn, template_file, not_a_parameter=1)


# -- standalone -----------------------------------------------------------------------------


def test_standalone_server_prints_auth_url_and_serves(tmp_path: Path):
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "tests.fakes.openstack", "--port", "0", "--seed", "demo"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any(line.startswith("Ctrl-C") for line in lines):
            line = process.stdout.readline()
            assert line, f"the fake exited early: {lines}"
            lines.append(line)
        auth_url = next(line.split(": ", 1)[1].strip() for line in lines if "auth URL" in line)
        assert "clouds:\n" in "".join(lines)
        conn = openstack.connect(
            auth_url=auth_url,
            username="admin",
            password="secret",
            project_name="demo",
            user_domain_name="Default",
            project_domain_name="Default",
            region_name="RegionOne",
            load_yaml_config=False,
            load_envvars=False,
        )
        names = sorted(s.name for s in conn.compute.servers())
        assert names == ["backend0", "backend1", "deploy"]
        conn.close()
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
