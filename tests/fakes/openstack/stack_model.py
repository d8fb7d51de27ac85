"""The data model of the fake's Heat: stacks, their resources, and the resource-type base.

:mod:`.stacks` (the engine) drives the lifecycles; :mod:`.resources` implements the
resource types that create real fake servers and volumes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..heat_template import Template
from .records import ApiError, new_id, short_id, timestamp
from .state import CloudState


class NestedStacks(Protocol):
    """What template resources need from the stack engine."""

    def create_nested(self, ctx: BuildContext, res: StackResource, template_key: str) -> None:
        """Create a nested stack from ``files[template_key]`` with ``res.properties`` as its
        parameters; set ``res.physical_id`` to its id and ``res.attributes`` to its outputs."""

    def delete_nested(self, res: StackResource) -> None:
        """Delete the nested stack of ``res``."""


@dataclass
class StackResource:
    """One resource of a stack, as Heat's resource API shows it."""

    name: str
    type: str
    physical_id: str = ""
    action: str = "INIT"
    status: str = "COMPLETE"
    reason: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    updated_at: str = field(default_factory=timestamp)

    @property
    def resource_status(self) -> str:
        return f"{self.action}_{self.status}"


@dataclass
class BuildContext:
    """What a resource type needs from the stack it belongs to."""

    state: CloudState
    stack_name: str
    stack_id: str
    resources: dict[str, StackResource]
    #: The stack's ``files`` map (nested templates, ``get_file`` contents).
    files: dict[str, str] = field(default_factory=dict)
    #: Creates and deletes nested stacks for template resources (the stack engine).
    nested: NestedStacks | None = None

    def physical_name(self, resource_name: str) -> str:
        return f"{self.stack_name}-{resource_name}-{short_id()}"

    def by_physical_id(self, physical_id: Any) -> StackResource | None:
        return next((r for r in self.resources.values() if r.physical_id == physical_id), None)

    def used_addresses(self) -> set[str]:
        used = {
            entry["addr"]
            for server in self.state.servers.values()
            for entries in server.addresses.values()
            for entry in entries
        }
        for stack in self.state.stacks.values():
            for res in stack.resources.values():
                used.update(
                    str(res.attributes.get(key))
                    for key in ("ip_address", "floating_ip_address")
                    if res.attributes.get(key)
                )
        return used

    def allocate(self, network: ipaddress.IPv4Network) -> str:
        used = self.used_addresses()
        return next(str(ip) for ip in list(network.hosts())[9:] if str(ip) not in used)


class ResourceType:
    """A generic resource: a made-up physical id; attributes come from ``res.attributes``.

    Subclasses create, update and delete real objects in the :class:`~.state.CloudState`."""

    def create(self, ctx: BuildContext, res: StackResource) -> None:
        res.physical_id = new_id()

    def update(self, ctx: BuildContext, res: StackResource, old: dict[str, Any]) -> None:
        """Apply changed properties (``res.properties`` is new); default: replace."""
        new = res.properties
        res.properties = old
        self.delete(ctx, res)
        res.properties = new
        self.create(ctx, res)

    def delete(self, ctx: BuildContext, res: StackResource) -> None:
        """Delete the underlying object (generic resources have none)."""

    def attribute(self, ctx: BuildContext, res: StackResource, name: str) -> Any:
        return res.attributes.get(name)


class TemplateResourceType(ResourceType):
    """A nested template (a type found in ``files``): a nested stack; attributes = outputs."""

    def __init__(self, key: str) -> None:
        self.key = key

    def create(self, ctx: BuildContext, res: StackResource) -> None:
        if ctx.nested is None:
            raise ApiError(400, f"Nested template {self.key} is not supported here")
        ctx.nested.create_nested(ctx, res, self.key)

    def delete(self, ctx: BuildContext, res: StackResource) -> None:
        if ctx.nested is not None and res.physical_id:
            ctx.nested.delete_nested(res)


@dataclass
class StackFailure:
    """A queued failure: ``resource`` fails (those before it are done); None: fail at once."""

    reason: str
    resource: str | None = None


@dataclass
class Operation:
    """Work scheduled for a stack: run at ``due`` (a ``time.monotonic()`` value)."""

    action: str
    due: float = 0.0
    template: Template | None = None
    given: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    failure: StackFailure | None = None


@dataclass
class Stack:
    """A stack: its current template and parameters, resources, events and pending work.

    ``given`` holds the parameters as the user sent them, ``params`` the resolved values."""

    id: str
    name: str
    template: Template
    given: dict[str, Any]
    environment: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    action: str = "CREATE"
    status: str = "IN_PROGRESS"
    reason: str = ""
    resources: dict[str, StackResource] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = field(default_factory=timestamp)
    updated_at: str | None = None
    deleted_at: str | None = None
    timeout_mins: int | None = None
    tags: list[str] = field(default_factory=list)
    parent: str | None = None
    pending: Operation | None = None

    @property
    def stack_status(self) -> str:
        return f"{self.action}_{self.status}"

    @property
    def deleted(self) -> bool:
        return self.stack_status == "DELETE_COMPLETE"
