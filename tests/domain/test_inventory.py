"""The inventory model: written as the seed's INI and as --list JSON, parsed back, and
refusing bad input with errors that name it."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest

import domain.inventory
from domain.heat_inventory import inventory_from_stacks
from domain.inventory import (
    ANALYTICS_INI_GROUPS,
    BadAddress,
    DuplicateHost,
    Host,
    Inventory,
    InventoryError,
    UnknownGroup,
    inventory_from_groups,
    load_inventory,
    main,
    parse_ini,
    parse_json,
    render_ini,
    render_json,
    to_ansible_list,
    write_inventory,
)
from tests.unit import samples


@pytest.fixture
def inventory() -> Inventory:
    return inventory_from_stacks(samples.multi_node_stack(), samples.analytics_stack())


def test_docstring_examples_hold():
    result = doctest.testmod(domain.inventory)
    assert (result.failed, result.attempted > 0) == (0, True)


# -- the INI form ------------------------------------------------------------------------------


def test_analytics_ini_is_the_seed_file_byte_for_byte(inventory):
    assert render_ini(inventory, ANALYTICS_INI_GROUPS) == samples.SEED_ANALYTICS_INI


def test_full_ini_lists_every_group_in_canonical_order(inventory):
    text = render_ini(inventory)
    headers = [line for line in text.splitlines() if line.startswith("[")]
    assert headers == [
        "[deploy]",
        "[backend_servers]",
        "[app_servers]",
        "[app_master]",
        "[analytics_servers]",
    ]
    assert "[app_master]\n192.168.122.130\n\n[analytics_servers]\n" in text
    assert render_ini(inventory) == text  # stable


def test_seed_ini_parses_back_and_renders_identically():
    parsed = parse_ini(samples.SEED_ANALYTICS_INI, "analytics.ini")
    assert parsed.addresses("backend_servers") == samples.BACKENDS
    assert parsed.primary_backend.address == "192.168.122.111"
    assert render_ini(parsed, ANALYTICS_INI_GROUPS) == samples.SEED_ANALYTICS_INI


def test_ini_round_trip_keeps_groups_and_order(inventory):
    parsed = parse_ini(render_ini(inventory))
    assert [(h.address, h.groups) for h in parsed.hosts] == [
        (h.address, h.groups) for h in inventory.hosts
    ]


def test_ini_comments_and_blank_lines_are_ignored():
    text = "# made by hand\n\n[backend_servers]\n; old node removed\n192.168.122.112  # b1\n"
    assert parse_ini(text).addresses("backend_servers") == ["192.168.122.112"]


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("[backends]\n10.0.0.1\n", UnknownGroup, r"site.ini line 1: unknown group 'backends'"),
        (
            "[backend_servers]\n10.0.0.1\n10.0.0.2\n10.0.0.1\n",
            DuplicateHost,
            r"site.ini line 4: host 10.0.0.1 is already in \[backend_servers\]",
        ),
        (
            "[backend_servers]\n\n192.168.122.300\n",
            BadAddress,
            r"site.ini line 3: bad address '192.168.122.300'",
        ),
        ("[backend_servers]\nbad_host!\n", BadAddress, r"line 2: bad address 'bad_host!'"),
        ("10.0.0.1\n[backend_servers]\n", InventoryError, r"line 1: host '10.0.0.1' before any"),
        ("[backend_servers\n", InventoryError, r"line 1: malformed section header"),
        (
            "[backend_servers]\n10.0.0.1 ansible_user=ubuntu\n",
            InventoryError,
            r"line 2: host variables \(ansible_user=ubuntu\) are not supported",
        ),
        ("[all:vars]\nx=1\n", InventoryError, r"line 1: \[all:vars\]: group variables"),
    ],
)
def test_bad_ini_is_refused_naming_file_and_line(text, error, message):
    with pytest.raises(error, match=message):
        parse_ini(text, "site.ini")


def test_host_names_are_accepted_as_addresses():
    parsed = parse_ini("[backend_servers]\nbackend-0.example.org\n")
    assert parsed.addresses("backend_servers") == ["backend-0.example.org"]


# -- the JSON (--list) form --------------------------------------------------------------------


def test_json_has_the_ansible_list_shape(inventory):
    listing = to_ansible_list(inventory)
    assert list(listing) == [
        "deploy",
        "backend_servers",
        "app_servers",
        "app_master",
        "analytics_servers",
        "_meta",
    ]
    assert listing["backend_servers"] == {
        "hosts": samples.BACKENDS,
        "vars": {"galera_vip": "192.168.122.110"},
    }
    assert listing["analytics_servers"] == {"hosts": ["192.168.122.120"], "vars": {}}
    hostvars = listing["_meta"]["hostvars"]
    assert hostvars["192.168.122.111"] == {
        "server_name": samples.heat_name("multi", "backend0"),
        "server_id": samples.IDS["backend0"],
        "backend_role": "primary",
    }
    assert hostvars["192.168.122.112"]["backend_role"] == "secondary"
    assert json.loads(render_json(inventory)) == listing


def test_json_round_trip_is_exact(inventory):
    assert parse_json(render_json(inventory)) == inventory
    moved = inventory.with_backend_roles("192.168.122.113")
    assert parse_json(render_json(moved)).primary_backend.address == "192.168.122.113"


def test_json_accepts_ansible_inventory_output_and_list_shorthand():
    listing = {
        "all": {"children": ["ungrouped", "backend_servers"], "vars": {"ansible_user": "ubuntu"}},
        "ungrouped": {},
        "backend_servers": ["192.168.122.111", "192.168.122.112"],
        "_meta": {"hostvars": {}},
    }
    parsed = parse_json(listing)
    assert parsed.addresses("backend_servers") == ["192.168.122.111", "192.168.122.112"]
    assert parsed.group_vars == {"all": {"ansible_user": "ubuntu"}}
    assert parsed.primary_backend.address == "192.168.122.111"
    assert parse_json(render_json(parsed)) == parsed


@pytest.mark.parametrize(
    ("listing", "error", "message"),
    [
        (
            {"analytics": {"hosts": ["10.0.0.1"]}},
            UnknownGroup,
            "site.json: unknown group 'analytics'",
        ),
        (
            {"app_servers": ["10.0.0.1", "10.0.0.1"]},
            DuplicateHost,
            "site.json: host 10.0.0.1 is listed twice in group app_servers",
        ),
        ({"deploy": ["10.0.0.256"]}, BadAddress, "site.json: group deploy: bad address"),
        (
            {"deploy": ["10.0.0.1"], "_meta": {"hostvars": {"10.0.0.2": {"a": 1}}}},
            InventoryError,
            "variables for host 10.0.0.2, which is in no group",
        ),
        (
            {"backend_servers": {"hosts": ["10.0.0.1"], "children": ["x"]}},
            InventoryError,
            "group backend_servers: child groups are not supported",
        ),
        (
            {
                "backend_servers": ["10.0.0.1", "10.0.0.2"],
                "_meta": {
                    "hostvars": {
                        "10.0.0.1": {"backend_role": "primary"},
                        "10.0.0.2": {"backend_role": "primary"},
                    }
                },
            },
            InventoryError,
            "more than one primary backend: 10.0.0.1, 10.0.0.2",
        ),
        (
            {
                "deploy": ["10.0.0.1"],
                "_meta": {"hostvars": {"10.0.0.1": {"backend_role": "primary"}}},
            },
            InventoryError,
            "backend_role is set but it is not a backend",
        ),
        ({"all": {"hosts": ["10.0.0.1"]}}, InventoryError, "hosts must be in one of"),
        ("[1, 2", InventoryError, "site.json: not valid JSON"),
    ],
)
def test_bad_json_is_refused_naming_the_input(listing, error, message):
    text = listing if isinstance(listing, str) else json.dumps(listing)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_json(text, "site.json")


# -- the model's own checks --------------------------------------------------------------------


def test_hosts_sharing_an_address_or_name_are_refused():
    with pytest.raises(DuplicateHost, match="duplicate host 10.0.0.1"):
        Inventory((Host("10.0.0.1", groups=("deploy",)), Host("10.0.0.1", groups=("app_servers",))))
    with pytest.raises(DuplicateHost, match="duplicate host name web"):
        Inventory(
            (
                Host("10.0.0.1", groups=("app_servers",), name="web"),
                Host("10.0.0.2", groups=("app_servers",), name="web"),
            )
        )
    with pytest.raises(UnknownGroup, match="host 10.0.0.1: unknown group 'web'"):
        Host("10.0.0.1", groups=("web",))
    with pytest.raises(UnknownGroup, match="unknown group 'frontend'"):
        inventory_from_groups({}).group("frontend")


def test_merge_unites_groups_of_the_same_host():
    left = inventory_from_groups({"app_servers": ["10.0.0.5"]})
    right = inventory_from_groups(
        {"app_master": ["10.0.0.5"], "deploy": ["10.0.0.1"]},
        host_vars={"10.0.0.5": {"x": 1}},
    )
    merged = left.merge(right)
    assert merged.host("10.0.0.5").groups == ("app_servers", "app_master")
    assert merged.host("10.0.0.5").vars == {"x": 1}
    assert [h.address for h in merged.hosts] == ["10.0.0.5", "10.0.0.1"]


# -- files and the command line ----------------------------------------------------------------


def test_files_are_read_and_written_by_suffix(tmp_path: Path, inventory):
    ini = write_inventory(inventory, tmp_path / "analytics.ini", ANALYTICS_INI_GROUPS)
    listing = write_inventory(inventory, tmp_path / "inventory.json")
    assert ini.read_text() == samples.SEED_ANALYTICS_INI
    assert load_inventory(listing) == inventory
    assert load_inventory(ini).addresses("analytics_servers") == ["192.168.122.120"]
    with pytest.raises(InventoryError, match="missing.ini: cannot read"):
        load_inventory(tmp_path / "missing.ini")


def test_command_line_converts_json_to_the_seed_ini(tmp_path: Path, inventory, capsys):
    path = write_inventory(inventory, tmp_path / "inventory.json")
    assert main([str(path), "--groups", "analytics_servers,backend_servers"]) == 0
    assert capsys.readouterr().out == samples.SEED_ANALYTICS_INI
    bad = tmp_path / "bad.ini"
    bad.write_text("[frontends]\n10.0.0.1\n")
    assert main([str(bad), "--format", "json"]) == 2
    assert "unknown group 'frontends'" in capsys.readouterr().err


def test_one_marked_primary_makes_the_other_backends_secondary():
    parsed = parse_json(
        {
            "backend_servers": ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
            "_meta": {"hostvars": {"10.0.0.2": {"backend_role": "primary"}}},
        }
    )
    roles = [h.role for h in parsed.group("backend_servers")]
    assert roles == ["secondary", "primary", "secondary"]


def test_ipv6_addresses_are_normalised_in_groups_and_variables():
    parsed = parse_json(
        {
            "deploy": ["2001:db8:0:0::10"],
            "_meta": {"hostvars": {"2001:DB8::10": {"server_name": "deploy"}}},
        }
    )
    assert parsed.addresses("deploy") == ["2001:db8::10"]
    assert parsed.host("deploy").address == "2001:db8::10"


def test_a_group_lists_several_vips_and_galera_vip_still_counts():
    listing = {"backend_servers": {
        "hosts": ["192.168.122.111"],
        "vars": {"galera_vip": "192.168.122.110",
                 "vips": {"rabbitmq": "192.168.122.120", "api": "fd00::0:10"}},
    }}  # fmt: skip
    inventory = parse_json(json.dumps(listing))
    assert inventory.vips("backend_servers") == {
        "galera": "192.168.122.110", "rabbitmq": "192.168.122.120", "api": "fd00::10"
    }  # fmt: skip
    # the JSON form keeps both variables as they were written
    assert (
        json.loads(render_json(inventory))["backend_servers"]["vars"]
        == listing["backend_servers"]["vars"]
    )
    only_old = parse_json(json.dumps({"backend_servers": {
        "hosts": ["192.168.122.111"], "vars": {"galera_vip": "192.168.122.110"},
    }}))  # fmt: skip
    assert only_old.vips("backend_servers") == {"galera": "192.168.122.110"}
    as_list = {"hosts": ["192.168.122.111"], "vars": {"vips": ["192.168.122.9"]}}
    assert parse_json(json.dumps({"backend_servers": as_list})).vips("backend_servers") == {
        "192.168.122.9": "192.168.122.9"
    }
    assert (
        parse_json(json.dumps({"backend_servers": ["192.168.122.111"]})).vips("backend_servers")
        == {}
    )


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"vips": {"api": "api.example.org"}}, "VIP api: 'api.example.org' is not an IP address"),
        ({"vips": {"api": 10}}, "VIP api: 10 is not an IP address"),
        ({"vips": "192.168.122.9"}, "vips must map names to IP addresses (or list them)"),
        ({"galera_vip": "192.168.122.9", "vips": {"galera": "192.168.122.8"}},
         "VIP galera is 192.168.122.9 in galera_vip but 192.168.122.8 in vips"),
        ({"vips": {"a": "192.168.122.9", "b": "192.168.122.9"}},
         "VIP 192.168.122.9 is listed twice in vips"),
        ({"vips": ["192.168.122.9", "192.168.122.9"]}, "VIP 192.168.122.9 is listed twice in vips"),
    ],
)  # fmt: skip
def test_bad_vips_are_refused_naming_the_group_and_the_vip(variables, message):
    listing = {"backend_servers": {"hosts": ["192.168.122.111"], "vars": variables}}
    with pytest.raises(InventoryError) as caught:
        parse_json(json.dumps(listing), "site.json")
    assert "variables of group backend_servers" in str(caught.value)
    assert message in str(caught.value)
