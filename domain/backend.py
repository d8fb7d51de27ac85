"""Which backend node is the primary: one definition, for the inventory and the backup alike.

keepalived keeps the Galera VIP on one backend, the primary: the applications write through it,
so locking or stopping its database cuts them off. What makes a backend the primary, strongest
first:

1. it holds the VIP (asked on the node, or a flow found out where it is): keepalived may have
   moved it since the stacks were built, so this beats everything written down;
2. it is marked primary: server metadata (or an inventory variable) ``backend_role: primary``;
3. among an inventory's backends, failing both, the first one (the stacks give it the VIP).

A single node (the backup's target) is primary by 1 or 2; an inventory, which needs exactly one
primary among its backends, falls back on 3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

#: The host variable, and server metadata key, that carries a backend's role.
ROLE_VAR = "backend_role"
PRIMARY, SECONDARY = "primary", "secondary"
ROLES = (PRIMARY, SECONDARY)
#: Server metadata that marks a primary backend (what the backup refuses by default).
PRIMARY_MARKS: Mapping[str, str] = {ROLE_VAR: PRIMARY}

H = TypeVar("H")


def primary_marks(metadata: Mapping[str, Any], marks: Mapping[str, str] = PRIMARY_MARKS) -> dict:
    """The entries of `marks` that `metadata` carries: empty when it is not marked primary.

    Example:
        >>> primary_marks({"backend_role": "primary", "other": "x"})
        {'backend_role': 'primary'}
    """
    return {key: value for key, value in marks.items() if metadata.get(key) == value}


@dataclass(frozen=True)
class NodeRole:
    """What makes one node primary: it holds the VIP, or carries primary `marks` (either is
    enough); otherwise it is a secondary."""

    holds_vip: bool = False
    marks: Mapping[str, str] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return PRIMARY if self.holds_vip or self.marks else SECONDARY


def node_role(
    *, holds_vip: bool, metadata: Mapping[str, Any], marks: Mapping[str, str] = PRIMARY_MARKS
) -> NodeRole:
    """The role of one node from where the VIP is and from its server metadata.

    Example:
        >>> node_role(holds_vip=False, metadata={"backend_role": "secondary"}).role
        'secondary'
    """
    return NodeRole(holds_vip, primary_marks(metadata, marks))


def choose_primary(
    backends: Sequence[H], *, vip_holder: H | None = None, marked: Sequence[H] = ()
) -> H | None:
    """The primary among an inventory's `backends`: the VIP holder when known, else the first
    one marked primary, else the first backend (None when there are no backends).

    Example:
        >>> choose_primary(["b0", "b1", "b2"], marked=["b2"]), choose_primary(["b0", "b1"])
        ('b2', 'b0')
    """
    if vip_holder is not None:
        return vip_holder
    if marked:
        return marked[0]
    return backends[0] if backends else None
