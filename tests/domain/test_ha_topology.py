"""Topology lint on inventories in their INI and JSON forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domain.ha_topology import UnknownService, lint_topology, main
from domain.inventory import InventoryError, load_inventory, parse_ini, parse_json

REPO = Path(__file__).resolve().parents[2]


def backends_ini(count: int, apps: int = 2) -> str:
    lines = ["[backend_servers]", *(f"10.0.0.{10 + i}" for i in range(count))]
    if apps:
        lines += ["", "[app_servers]", *(f"10.0.1.{10 + i}" for i in range(apps))]
    return "\n".join(lines) + "\n"


def with_services(groups: dict[str, list[str]], services: dict[str, object]) -> str:
    listing = {
        group: {"hosts": hosts, "vars": {"ha_services": services[group]}}
        if group in services
        else hosts
        for group, hosts in groups.items()
    }
    return json.dumps(listing)


def messages(findings) -> list[tuple[str, str, str]]:
    return [(f.severity, f.subject, f.message) for f in findings]


@pytest.mark.parametrize(
    "name", ["example-inventory.json", "example-analytics.ini"], ids=["json", "ini"]
)
def test_the_example_inventories_pass(name):
    assert lint_topology(load_inventory(REPO / "deployments" / name)) == []


def test_a_single_backend_is_a_single_point_of_failure_for_each_service():
    findings = lint_topology(parse_ini(backends_ini(1)))
    assert messages(findings) == [
        ("critical", service, f"{service} runs on a single node, 10.0.0.10 (backend_servers): "
         "a single point of failure")
        for service in ("mysql", "mongodb", "load_balancer")
    ]  # fmt: skip


def test_two_backends_are_too_few_and_even_for_clustered_services():
    findings = lint_topology(parse_ini(backends_ini(2)))
    assert {f.subject for f in findings} == {"mysql", "mongodb"}  # the load balancer has two
    mysql = [f.message for f in findings if f.subject == "mysql"]
    assert mysql == [
        "mysql cluster of 2 nodes on backend_servers (10.0.0.10, 10.0.0.11): at least 3 are "
        "needed to keep a quorum when one fails",
        "mysql cluster of 2 nodes on backend_servers (10.0.0.10, 10.0.0.11): an even number, "
        "a split into halves leaves no quorum; use an odd number",
    ]
    assert all(f.critical for f in findings)


@pytest.mark.parametrize(
    ("count", "words"),
    [(4, ["an even number"]), (5, []), (16, ["an even number"]), (17, ["at most 16"])],
)
def test_cluster_sizes(count, words):
    findings = [f for f in lint_topology(parse_ini(backends_ini(count))) if f.subject == "mysql"]
    assert len(findings) == len(words)
    for finding, word in zip(findings, words, strict=True):
        assert word in finding.message and f"of {count} nodes" in finding.message


def test_services_declared_per_group_in_the_json_form():
    text = with_services(
        {"backend_servers": ["10.0.0.10", "10.0.0.11", "10.0.0.12"],
         "app_servers": ["10.0.1.10", "10.0.1.11"]},
        {"backend_servers": ["mysql"], "app_servers": ["rabbitmq", "memcached"]},
    )  # fmt: skip
    findings = lint_topology(parse_json(text))
    assert {(f.subject, f.severity) for f in findings} == {("rabbitmq", "critical")}
    assert len(findings) == 2 and all("app_servers (10.0.1.10, 10.0.1.11)" in f.message
                                      for f in findings)  # fmt: skip


def test_a_service_placed_on_an_empty_group_is_critical():
    text = with_services({"backend_servers": [], "app_servers": ["10.0.1.10", "10.0.1.11"]},
                         {"backend_servers": ["rabbitmq"]})  # fmt: skip
    assert messages(lint_topology(parse_json(text))) == [
        ("critical", "rabbitmq", "rabbitmq is placed on backend_servers, which has no hosts")
    ]


def test_no_ha_services_declared_means_no_service_rules():
    text = with_services({"backend_servers": ["10.0.0.10"]}, {"backend_servers": []})
    assert lint_topology(parse_json(text)) == []


def test_a_single_app_server_is_a_warning():
    (finding,) = lint_topology(parse_ini(backends_ini(3, apps=1)))
    assert (finding.severity, finding.subject) == ("warning", "app_servers")
    assert "10.0.1.10" in finding.message


def test_bad_service_declarations_name_the_group():
    text = with_services({"backend_servers": ["10.0.0.10"]}, {"backend_servers": ["redis"]})
    with pytest.raises(UnknownService, match=r"group backend_servers: ha_services: .*'redis'"):
        lint_topology(parse_json(text))
    text = with_services({"backend_servers": ["10.0.0.10"]}, {"backend_servers": "mysql"})
    with pytest.raises(InventoryError, match="must be a list of service names, got 'mysql'"):
        lint_topology(parse_json(text))


def test_command_line_exit_status(tmp_path, capsys):
    good = REPO / "deployments" / "example-inventory.json"
    assert main([str(good)]) == 0
    assert "no finding" in capsys.readouterr().out
    bad = tmp_path / "one.ini"
    bad.write_text(backends_ini(1))
    assert main([str(bad)]) == 1
    assert "critical\tmysql\tmysql runs on a single node" in capsys.readouterr().out
    broken = tmp_path / "broken.ini"
    broken.write_text("[nonsense]\n10.0.0.1\n")
    assert main([str(broken)]) == 2
    assert "unknown group 'nonsense'" in capsys.readouterr().err
