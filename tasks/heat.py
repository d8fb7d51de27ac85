"""Heat stacks as plan-then-apply, Terraform style: `plan_stack`, then `apply_stack_plan`.

`plan_stack` reads what exists (the stack's status, parameters and template) and compares it
with what is wanted (a template file and parameters; parameters left out take the template's
defaults, as a PUT update would): the plan is `create`, `update` (naming each changed
parameter, or the template) or `none`. `apply_stack_plan` carries it out and waits, with its
own deadline; a failure raises `StackFailed` carrying Heat's `stack_status_reason`. A stack
whose *creation* failed is deleted unless the caller keeps it for debugging; a failed update
never deletes anything (the stack held a working server before).

Tasks take an openstacksdk `Connection` (hence NO_CACHE, via `cloud_task`) and return plain data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import yaml
from openstack import exceptions as sdk_exceptions
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.openstack import CloudLookupError, cloud_task

if TYPE_CHECKING:
    from openstack.connection import Connection


class StackFailed(RuntimeError):
    """A stack operation ended `*_FAILED` or timed out; `reason` is Heat's status reason."""

    def __init__(self, message: str, *, stack: str, status: str, reason: str) -> None:
        super().__init__(message)
        self.stack, self.status, self.reason = stack, status, reason


class StackBusy(RuntimeError):
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
        raise ValueError(f"template {path} is not valid YAML: {error}") from None
    if not isinstance(loaded, dict) or "heat_template_version" not in loaded:
        raise ValueError(f"template {path} is not a HOT template (no heat_template_version)")
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
        ValueError: `given` names a parameter the template does not have.
    """
    declared = template.get("parameters") or {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValueError(
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


# -- cloud tasks ----------------------------------------------------------------------------------


def _stack_info(stack: Any) -> StackInfo:
    return StackInfo(
        id=str(stack.id),
        name=str(stack.name),
        status=str(stack.status),
        reason=str(stack.status_reason or ""),
        parameters={
            str(k): heat_value(v)
            for k, v in (stack.parameters or {}).items()
            if not str(k).startswith("OS::")
        },
        outputs={o["output_key"]: o.get("output_value") for o in stack.outputs or []},
    )


def get_stack(conn: Connection, name_or_id: str) -> StackInfo | None:
    """The live stack, or None when there is none (deleted stacks count as none)."""
    heat = conn.orchestration
    found = heat.find_stack(name_or_id, ignore_missing=True)
    if found is None:
        return None
    stack = heat.get_stack(found.id)
    if stack is None or str(stack.status) == "DELETE_COMPLETE":
        return None
    return _stack_info(stack)


@cloud_task(name="stack-resource-ids", task_run_name="stack-resource-ids {stack_name}")
def stack_resource_ids(conn: Connection, stack_name: str, names: list[str]) -> dict[str, str]:
    """Physical ids of the named resources of a stack (e.g. `management_net`).

    Raises:
        CloudLookupError: no such stack, or a resource is missing or has no physical id.
    """
    heat = conn.orchestration
    stack = heat.find_stack(stack_name, ignore_missing=True)
    if stack is None:
        raise CloudLookupError(f"there is no stack {stack_name!r}")
    found = {str(r.name): str(r.physical_resource_id or "") for r in heat.resources(stack)}
    missing = [n for n in names if not found.get(n)]
    if missing:
        raise CloudLookupError(
            f"stack {stack_name} has no (created) resource {', '.join(missing)}; it has "
            f"{sorted(found) or 'none'}"
        )
    return {name: found[name] for name in names}


@cloud_task(name="plan-stack", task_run_name="plan-stack {stack_name}")
def plan_stack(
    conn: Connection, stack_name: str, template_file: str, parameters: dict[str, Any]
) -> StackPlan:
    """Compare the stack (if any) with the template file and parameters; change nothing."""
    template = load_template(template_file)
    current = get_stack(conn, stack_name)
    current_template = None
    if current is not None:
        stored = conn.orchestration.get_stack_template(current.id)
        current_template = stored.to_dict() if hasattr(stored, "to_dict") else dict(stored)
    plan = diff_stack(stack_name, current, template, parameters, current_template)
    get_run_logger().info("plan: %s", plan.summary())
    return plan


@task(
    name="apply-stack-plan",
    task_run_name="apply-stack-plan {plan.stack_name}",
    cache_policy=NO_CACHE,
)
def apply_stack_plan(
    conn: Connection,
    plan: StackPlan,
    template_file: str,
    parameters: dict[str, Any],
    timeout: float,
    *,
    keep_failed: bool = False,
    poll_interval: float = 5,
) -> StackInfo:
    """Carry out `plan` and wait (at most `timeout` seconds) for `*_COMPLETE`.

    Not retried as a whole: a second create after a lost answer would collide with the first.

    Raises:
        StackFailed: the operation ended `*_FAILED` or timed out. The message carries Heat's
            status reason; a failed create was deleted (unless `keep_failed`), and says so.
    """
    logger = get_run_logger()
    heat = conn.orchestration
    if plan.action == "none":
        assert plan.current is not None
        logger.info("stack %s is up to date; nothing to do", plan.stack_name)
        return plan.current
    attrs = heat.read_env_and_templates(template_file=template_file)
    timeout_mins = max(1, int(-(-timeout // 60)))  # Heat's own limit, rounded up
    if plan.action == "create":
        created = heat.create_stack(
            name=plan.stack_name, parameters=dict(parameters), timeout_mins=timeout_mins, **attrs
        )
        stack_id, action = str(created.id), "CREATE"
        logger.info("creating stack %s (%s)", plan.stack_name, stack_id)
    else:
        assert plan.current is not None
        stack_id, action = plan.current.id, "UPDATE"
        heat.update_stack(stack_id, parameters=dict(parameters), timeout_mins=timeout_mins, **attrs)
        logger.info("updating stack %s (%s): %s", plan.stack_name, stack_id, plan.summary())
    final = wait_for_stack(conn, stack_id, action, timeout, poll_interval)
    if final.status == f"{action}_COMPLETE":
        logger.info("stack %s: %s", plan.stack_name, final.status)
        return final
    reason = final.reason or "(Heat gave no reason)"
    message = f"stack {plan.stack_name} {action.lower()} ended {final.status}: {reason}"
    if action == "CREATE":
        if keep_failed:
            message += (
                ". The stack was kept for debugging (keep_failed): delete it with "
                f"`openstack stack delete {plan.stack_name}` before running again."
            )
        else:
            try:
                delete_stack(conn, stack_id, timeout, poll_interval)
                message += ". The half-created stack was deleted."
            except Exception as error:  # the original failure stays the headline
                message += (
                    f". Deleting the half-created stack failed too ({type(error).__name__}: "
                    f"{error}): delete it by hand."
                )
    else:
        message += ". Nothing was deleted: the stack keeps its resources; fix and run again."
    logger.error(message)
    raise StackFailed(message, stack=plan.stack_name, status=final.status, reason=reason)


def wait_for_stack(
    conn: Connection, stack_id: str, action: str, timeout: float, poll_interval: float
) -> StackInfo:
    """Poll until the stack leaves `<action>_IN_PROGRESS`; on timeout a `<action>_TIMEOUT`
    StackInfo (the reason says how long) rather than an exception, so the caller cleans up."""
    deadline = time.monotonic() + timeout
    last: StackInfo | None = None
    while True:
        stack = conn.orchestration.get_stack(stack_id)
        last = _stack_info(stack)
        if last.status.startswith(action) and not last.status.endswith("_IN_PROGRESS"):
            return last
        if time.monotonic() >= deadline:
            return StackInfo(
                last.id, last.name, f"{action}_TIMEOUT",
                f"still {last.status} after {timeout:g}s ({last.reason})",
                last.parameters, last.outputs,
            )  # fmt: skip
        time.sleep(min(poll_interval, max(deadline - time.monotonic(), 0.01)))


def delete_stack(conn: Connection, stack_id: str, timeout: float, poll_interval: float) -> None:
    """Delete a stack and wait until it is gone (`DELETE_COMPLETE` or not found)."""
    heat = conn.orchestration
    heat.delete_stack(stack_id, ignore_missing=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            stack = heat.get_stack(stack_id)
        except sdk_exceptions.NotFoundException:
            return
        status = str(stack.status)
        if status == "DELETE_COMPLETE":
            return
        if status == "DELETE_FAILED":
            raise StackFailed(
                f"deleting stack {stack.name} failed: {stack.status_reason}",
                stack=str(stack.name), status=status, reason=str(stack.status_reason or ""),
            )  # fmt: skip
        if time.monotonic() >= deadline:
            raise StackFailed(
                f"stack {stack.name} still {status} {timeout:g}s after its deletion",
                stack=str(stack.name), status=status, reason=str(stack.status_reason or ""),
            )  # fmt: skip
        time.sleep(poll_interval)
