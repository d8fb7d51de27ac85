"""Heat stacks as plan-then-apply, Terraform style: the plan, computed without a cloud.

`diff_stack` compares what exists (the stack's status, parameters and template, as plain data)
with what is wanted (a template and parameters; parameters left out take the template's
defaults, as a PUT update would): the plan is `create`, `update` (naming each changed parameter,
or the template) or `none`. `tasks.heat` reads the stack and carries the plan out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from pipeline.errors import InvalidInput, Refused


class StackBusy(Refused):
    """The stack has an operation in progress: planning against it would be a guess."""


@dataclass(frozen=True)
class StackInfo:
    """A Heat stack as plain data (parameters as Heat shows them: strings)."""

    id: str
    name: str
    status: str
    reason: str
    parameters: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ParameterChange:
    name: str
    current: str | None
    wanted: str


@dataclass(frozen=True)
class StackPlan:
    """What `apply_stack_plan` will do to `stack_name`, and why."""

    stack_name: str
    action: Literal["create", "update", "none"]
    changes: tuple[ParameterChange, ...] = ()
    template_changed: bool = False
    current: StackInfo | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.action != "create" and self.current is None:
            raise InvalidInput(
                f"plan for stack {self.stack_name}: {self.action!r} needs the current stack"
            )

    @property
    def existing(self) -> StackInfo:
        """The stack an `update` or `none` plan acts on (a `create` plan has none)."""
        if self.current is None:
            raise InvalidInput(f"plan for stack {self.stack_name}: no current stack to act on")
        return self.current

    def table(self) -> list[dict[str, str]]:
        """One row per change, for a table artifact (a `none` plan has one row saying so)."""
        rows = [
            {
                "change": "parameter",
                "name": c.name,
                "current": _shown(c.current),
                "wanted": c.wanted,
            }
            for c in self.changes
        ]
        if self.template_changed:
            rows.append({"change": "template", "name": "-", "current": "differs", "wanted": "-"})
        if self.action == "create":
            rows = [{"change": "create", "name": self.stack_name, "current": "-", "wanted": "-"}]
        if not rows:
            rows = [{"change": "none", "name": self.stack_name, "current": "-", "wanted": "-"}]
        return rows

    def summary(self) -> str:
        if self.action == "create":
            return f"create stack {self.stack_name}"
        if self.action == "none":
            return f"stack {self.stack_name} is up to date: no changes"
        what = [f"{c.name}: {_shown(c.current)} -> {c.wanted}" for c in self.changes]
        if self.template_changed:
            what.append("template changed")
        extra = f" ({self.reason})" if self.reason else ""
        return f"update stack {self.stack_name}{extra}: " + "; ".join(what or ["retry"])


def _shown(value: str | None) -> str:
    return "(unset)" if value is None else value


# -- pure comparison ------------------------------------------------------------------------------


def load_template(path: str) -> dict[str, Any]:
    """The template file as a mapping (YAML; dates such as the HOT version stay strings)."""
    with open(path) as handle:
        text = handle.read()
    try:
        loaded = yaml.load(text, Loader=_NoDatesLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise InvalidInput(f"template {path} is not valid YAML: {error}") from None
    if not isinstance(loaded, dict) or "heat_template_version" not in loaded:
        raise InvalidInput(f"template {path} is not a HOT template (no heat_template_version)")
    return loaded


class _NoDatesLoader(yaml.SafeLoader):
    """SafeLoader that reads `2015-04-30` as a string, as Heat does."""


_NoDatesLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def heat_value(value: Any) -> str:
    """A parameter value as Heat shows it (strings; lists comma-joined; maps as JSON)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(heat_value(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _same(current: str | None, wanted: str) -> bool:
    if current == wanted:
        return True
    try:  # "10" and "10.0" are the same number parameter
        return current is not None and float(current) == float(wanted)
    except ValueError:
        return False


def wanted_parameters(template: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, str]:
    """Every template parameter's value after an update with `given` (defaults for the rest).

    Raises:
        InvalidInput: `given` names a parameter the template does not have.
    """
    declared = template.get("parameters") or {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise InvalidInput(
            f"parameters {unknown} are not in the template (it has {sorted(declared)})"
        )
    wanted = {}
    for name, definition in declared.items():
        if name in given and given[name] is not None:
            wanted[name] = heat_value(given[name])
        elif "default" in (definition or {}):
            wanted[name] = heat_value(definition["default"])
    return wanted


def diff_stack(
    stack_name: str,
    current: StackInfo | None,
    template: Mapping[str, Any],
    given: Mapping[str, Any],
    current_template: Mapping[str, Any] | None = None,
) -> StackPlan:
    """The plan that brings `current` (None: no such stack) to `template` with `given`."""
    wanted = wanted_parameters(template, given)
    if current is None:
        return StackPlan(stack_name, "create")
    if current.status.endswith("_IN_PROGRESS"):
        raise StackBusy(
            f"stack {stack_name} is {current.status}: wait until it finishes, then run again"
        )
    changes = tuple(
        ParameterChange(name, current.parameters.get(name), value)
        for name, value in wanted.items()
        if not _same(current.parameters.get(name), value)
    )
    template_changed = current_template is not None and _canonical(current_template) != _canonical(
        template
    )
    reason = ""
    if current.status.endswith("_FAILED"):
        reason = f"it is {current.status}: {current.reason}"
    if changes or template_changed or reason:
        return StackPlan(stack_name, "update", changes, template_changed, current, reason)
    return StackPlan(stack_name, "none", current=current)


def _canonical(template: Mapping[str, Any]) -> str:
    keep = {k: v for k, v in template.items() if k not in ("id", "name", "location")}
    keep = {k: v for k, v in keep.items() if v not in (None, {}, [])}
    return json.dumps(keep, sort_keys=True, default=str)
