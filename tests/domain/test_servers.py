"""Nova's `addresses` read once: (network, address, type), fixed by default."""

from __future__ import annotations

import doctest

import domain.servers
from domain.servers import addresses_of_kind, nova_addresses

ADDRESSES = {
    "management": [
        {"addr": "192.168.122.111", "OS-EXT-IPS:type": "fixed"},
        {"addr": "203.0.113.11", "OS-EXT-IPS:type": "floating"},
    ],
    "storage": [{"addr": "10.1.0.5"}, {"OS-EXT-IPS:type": "fixed"}],
}


def test_docstring_examples_hold():
    result = doctest.testmod(domain.servers)
    assert (result.failed, result.attempted > 0) == (0, True)


def test_every_entry_keeps_its_network_and_an_untyped_one_is_fixed():
    assert nova_addresses(ADDRESSES) == (
        ("management", "192.168.122.111", "fixed"),
        ("management", "203.0.113.11", "floating"),
        ("storage", "10.1.0.5", "fixed"),
        ("storage", "", "fixed"),
    )
    assert nova_addresses(None) == ()


def test_addresses_of_a_kind_leave_out_empty_ones():
    assert addresses_of_kind(ADDRESSES, "fixed") == ["192.168.122.111", "10.1.0.5"]
    assert addresses_of_kind(ADDRESSES, "floating") == ["203.0.113.11"]
