"""Prefect tasks on Heat stacks, plan-then-apply: `plan_stack`, then `apply_stack_plan`.

`plan_stack` reads what exists (the stack's status, parameters and template) and hands it to
`domain.stack_plan.diff_stack`, which compares it with what is wanted. `apply_stack_plan`
carries the plan out and waits, with its own deadline; a failure raises `StackFailed` carrying
Heat's `stack_status_reason` (`StackTimeout` when the deadline passed). A stack whose *creation*
failed is deleted unless the caller keeps it for debugging; a failed update never deletes
anything (the stack held a working server before). `gather_stack_data` reads the stacks an
inventory is built from (`domain.heat_inventory`).

Tasks take an openstacksdk `Connection` (hence NO_CACHE, via `cloud_task`) and return plain data.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from openstack import exceptions as sdk_exceptions
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from domain.heat_inventory import (
    SERVER_TYPE,
    ResourceData,
    ServerData,
    StackData,
    inventory_from_stacks,
)
from domain.inventory import Inventory
from domain.polling import wait_until
from domain.stack_plan import StackInfo, StackPlan, diff_stack, heat_value, load_template
from pipeline.errors import OperationFailed, OperationTimeout
from tasks.openstack import CloudLookupError, cloud_task

if TYPE_CHECKING:
    from openstack.connection import Connection


class StackFailed(OperationFailed):
    """A stack operation ended `*_FAILED` or timed out; `reason` is Heat's status reason."""

    def __init__(self, message: str, *, stack: str, status: str, reason: str) -> None:
        super().__init__(message)
        self.stack, self.status, self.reason = stack, status, reason


class StackTimeout(StackFailed, OperationTimeout):
    """A stack operation (create, update, delete) did not finish before its deadline."""


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
        logger.info("stack %s is up to date; nothing to do", plan.stack_name)
        return plan.existing
    attrs = heat.read_env_and_templates(template_file=template_file)
    timeout_mins = max(1, int(-(-timeout // 60)))  # Heat's own limit, rounded up
    if plan.action == "create":
        created = heat.create_stack(
            name=plan.stack_name, parameters=dict(parameters), timeout_mins=timeout_mins, **attrs
        )
        stack_id, action = str(created.id), "CREATE"
        logger.info("creating stack %s (%s)", plan.stack_name, stack_id)
    else:
        stack_id, action = plan.existing.id, "UPDATE"
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
    failure = StackTimeout if final.status == f"{action}_TIMEOUT" else StackFailed
    raise failure(message, stack=plan.stack_name, status=final.status, reason=reason)


def wait_for_stack(
    conn: Connection, stack_id: str, action: str, timeout: float, poll_interval: float
) -> StackInfo:
    """Poll until the stack leaves `<action>_IN_PROGRESS`; on timeout a `<action>_TIMEOUT`
    StackInfo (the reason says how long) rather than an exception.

    A timed-out create must still be cleaned up (deleted, or kept and said so) and reported
    with the stack's last status and reason, exactly like a failed one: returning the state
    lets `apply_stack_plan` treat both on one path, and raise `StackTimeout` itself after.
    """
    last: list[StackInfo] = []

    def probe() -> StackInfo | None:
        last[:] = [_stack_info(conn.orchestration.get_stack(stack_id))]
        done = last[0].status.startswith(action) and not last[0].status.endswith("_IN_PROGRESS")
        return last[0] if done else None

    def timed_out() -> StackInfo:
        seen = last[0]
        return StackInfo(
            seen.id, seen.name, f"{action}_TIMEOUT",
            f"still {seen.status} after {timeout:g}s ({seen.reason})",
            seen.parameters, seen.outputs,
        )  # fmt: skip

    return wait_until(probe, timeout=timeout, interval=poll_interval, on_timeout=timed_out)


def delete_stack(conn: Connection, stack_id: str, timeout: float, poll_interval: float) -> None:
    """Delete a stack and wait until it is gone (`DELETE_COMPLETE` or not found).

    Raises:
        StackFailed: it went to `DELETE_FAILED`.
        StackTimeout: it was still there after `timeout` seconds.
    """
    heat = conn.orchestration
    heat.delete_stack(stack_id, ignore_missing=True)
    last: list[Any] = []

    def gone() -> bool | None:
        try:
            stack = heat.get_stack(stack_id)
        except sdk_exceptions.NotFoundException:
            return True
        last[:] = [stack]
        status = str(stack.status)
        if status == "DELETE_COMPLETE":
            return True
        if status == "DELETE_FAILED":
            raise StackFailed(
                f"deleting stack {stack.name} failed: {stack.status_reason}",
                stack=str(stack.name), status=status, reason=str(stack.status_reason or ""),
            )  # fmt: skip
        return None

    def timed_out() -> bool:
        stack = last[0]
        status = str(stack.status)
        raise StackTimeout(
            f"stack {stack.name} still {status} {timeout:g}s after its deletion",
            stack=str(stack.name), status=status, reason=str(stack.status_reason or ""),
        )  # fmt: skip

    wait_until(gone, timeout=timeout, interval=poll_interval, on_timeout=timed_out)


# -- what an inventory needs ----------------------------------------------------------------------


def gather_stack_data(conn: Connection, stack_name: str) -> StackData:
    """Read a stack's status, outputs, resources and servers as :class:`StackData`.

    Raises openstacksdk's ``ResourceNotFound`` when there is no such stack.

    Example:
        ```python
        data = gather_stack_data(conn, "multi")
        data["outputs"]["deploy_ip"]
        ```
    """
    heat = conn.orchestration
    stack = heat.get_stack(heat.find_stack(stack_name, ignore_missing=False))
    resources: dict[str, ResourceData] = {
        res.name: {
            "type": str(res.resource_type),
            "physical_id": str(res.physical_resource_id or ""),
            "status": str(res.status or ""),
        }
        for res in heat.resources(stack)
    }
    servers: dict[str, ServerData] = {}
    for res in resources.values():
        if res["type"] == SERVER_TYPE and res["physical_id"]:
            server = conn.compute.get_server(res["physical_id"])
            servers[res["physical_id"]] = {
                "name": str(server.name),
                "addresses": json.loads(json.dumps(server.addresses or {})),
                "metadata": {str(k): str(v) for k, v in (server.metadata or {}).items()},
            }
    return {
        "name": str(stack.name),
        "id": str(stack.id),
        "status": str(stack.status),
        "outputs": {o["output_key"]: o.get("output_value") for o in stack.outputs or []},
        "resources": resources,
        "servers": servers,
    }


def inventory_from_openstack(
    conn: Connection,
    multi_node_stack: str | None = None,
    analytics_stack: str | None = None,
    *,
    vip_holder: str | None = None,
) -> Inventory:
    """:func:`gather_stack_data` for each named stack, then :func:`inventory_from_stacks`."""
    return inventory_from_stacks(
        gather_stack_data(conn, multi_node_stack) if multi_node_stack else None,
        gather_stack_data(conn, analytics_stack) if analytics_stack else None,
        vip_holder=vip_holder,
    )
