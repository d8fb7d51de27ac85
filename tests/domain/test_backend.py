"""One definition of a backend's role: the VIP holder first, then the primary marks, then (in
an inventory) the first backend; the inventory and the backup read it alike."""

from __future__ import annotations

import doctest

import domain.backend
from domain.backend import PRIMARY, SECONDARY, choose_primary, node_role, primary_marks
from domain.inventory import inventory_from_groups


def test_docstring_examples_hold():
    result = doctest.testmod(domain.backend)
    assert (result.failed, result.attempted > 0) == (0, True)


def test_a_node_is_primary_by_the_vip_or_by_its_marks():
    assert node_role(holds_vip=True, metadata={}).role == PRIMARY
    marked = node_role(holds_vip=False, metadata={"backend_role": "primary", "x": "1"})
    assert (marked.role, marked.holds_vip, dict(marked.marks)) == (
        PRIMARY, False, {"backend_role": "primary"},
    )  # fmt: skip
    assert node_role(holds_vip=False, metadata={"backend_role": "secondary"}).role == SECONDARY
    assert node_role(holds_vip=False, metadata={}).role == SECONDARY


def test_marks_are_the_callers_when_given():
    marks = {"galera": "writer"}
    assert primary_marks({"galera": "writer", "backend_role": "primary"}, marks) == marks
    assert node_role(holds_vip=False, metadata={"backend_role": "primary"}, marks=marks).role == (
        SECONDARY
    )


def test_an_inventory_chooses_the_vip_holder_then_the_marked_then_the_first():
    backends = ["b0", "b1", "b2"]
    assert choose_primary(backends, vip_holder="b1", marked=["b2"]) == "b1"
    assert choose_primary(backends, marked=["b2"]) == "b2"
    assert choose_primary(backends) == "b0"
    assert choose_primary([]) is None


def test_the_inventory_applies_the_same_rule():
    groups = {"backend_servers": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]}
    marked = inventory_from_groups(groups, host_vars={"10.0.0.3": {"backend_role": "primary"}})
    assert marked.primary_backend.address == "10.0.0.3"
    assert marked.with_backend_roles().primary_backend.address == "10.0.0.3"
    assert marked.with_backend_roles("10.0.0.2").primary_backend.address == "10.0.0.2"
    assert inventory_from_groups(groups).primary_backend.address == "10.0.0.1"
