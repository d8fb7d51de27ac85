"""The Heat engine of the fake: stack records and their create/update/delete lifecycles.

A request validates at once (bad templates or parameters are a 400, as in Heat), puts the
stack in ``<ACTION>_IN_PROGRESS`` and schedules the work :attr:`HeatEngine.delay` seconds
later. When :meth:`~.state.CloudState.advance` finds the work due, the engine walks the
resources in dependency order, creating, updating or deleting the fake objects (see
:mod:`.resources`), and ends in ``<ACTION>_COMPLETE`` or ``<ACTION>_FAILED``. A test can queue
failures for the next create/update operations (:meth:`HeatEngine.fail_next`). Rollback is
not simulated (as with ``disable_rollback``, Heat's API default).
"""

from __future__ import annotations

import re
import time
from collections import deque
from typing import Any

import yaml

from ..heat_template import Template, TemplateError, load_template
from .records import ApiError, new_id, timestamp
from .resources import resource_type
from .stack_model import BuildContext, Operation, Stack, StackFailure, StackResource
from .state import CloudState

_STACK_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,254}$")


def _load_environment(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        raw = yaml.safe_load(raw) if raw.strip() else {}
    if raw is not None and not isinstance(raw, dict):
        raise ApiError(400, "The environment is not a valid YAML mapping.", "InvalidEnvironment")
    return dict(raw or {})


class _Resolver:
    """The :class:`~tests.fakes.heat_template.StackContext` of one stack."""

    def __init__(self, engine: HeatEngine, stack: Stack) -> None:
        self.engine, self.stack = engine, stack
        self.ctx = engine.context(stack)

    def resource_id(self, name: str) -> Any:
        res = self.stack.resources.get(name)
        return (res.physical_id or None) if res else None

    def resource_attribute(self, name: str, attribute: str) -> Any:
        res = self.stack.resources.get(name)
        if res is None or not res.physical_id:
            return None
        return self.engine.type_of(self.stack, res).attribute(self.ctx, res, attribute)


class HeatEngine:
    """Stacks of one :class:`~.state.CloudState` (stored in ``state.stacks``)."""

    def __init__(self, state: CloudState) -> None:
        self.state = state
        #: Seconds every create, update or delete stays ``*_IN_PROGRESS``.
        self.delay = 0.2
        self.failures: deque[StackFailure] = deque()
        state.advance_hooks.append(self.advance)

    # -- lookups ----------------------------------------------------------------------------

    def find(self, name_or_id: str) -> Stack:
        """A live stack by name, or any stack (deleted ones included) by id."""
        stacks = self.state.stacks
        if name_or_id in stacks:
            return stacks[name_or_id]
        for stack in stacks.values():
            if stack.name == name_or_id and not stack.deleted:
                return stack
        raise ApiError(404, f"The Stack ({name_or_id}) could not be found.", "EntityNotFound")

    def listed(self) -> list[Stack]:
        """Top-level stacks that are not deleted, newest first (Heat's default order)."""
        stacks = [s for s in self.state.stacks.values() if not s.deleted and s.parent is None]
        return list(reversed(stacks))

    def context(self, stack: Stack) -> BuildContext:
        return BuildContext(
            self.state, stack.name, stack.id, stack.resources, stack.template.files, self
        )

    def type_of(self, stack: Stack, res: StackResource) -> Any:
        registry = stack.environment.get("resource_registry") or {}
        return resource_type(str(registry.get(res.type, res.type)), stack.template.files)

    # -- requests ---------------------------------------------------------------------------

    def _template(self, body: dict[str, Any], files: dict[str, str]) -> Template:
        if "template" not in body:
            raise ApiError(400, "Need more arguments: 'template' is required.", "HTTPBadRequest")
        try:
            return Template(load_template(body["template"]), files)
        except TemplateError as exc:
            raise ApiError(400, exc.message, exc.error_type) from None

    def _parameters(self, stack: Stack, template: Template, given: dict, env: dict) -> dict:
        pseudo = {
            "OS::stack_name": stack.name,
            "OS::stack_id": stack.id,
            "OS::project_id": self.state.identity.project_id,
        }
        try:
            return template.resolve_parameters(given, env, pseudo)
        except TemplateError as exc:
            raise ApiError(400, exc.message, exc.error_type) from None

    def create(self, body: dict[str, Any]) -> Stack:
        """Validate a ``POST /stacks`` body and start creating the stack."""
        name = str(body.get("stack_name") or "")
        if not _STACK_NAME.match(name):
            raise ApiError(400, f'Invalid stack name "{name}".', "StackValidationFailed")
        if any(s.name == name and not s.deleted for s in self.state.stacks.values()):
            raise ApiError(409, f"The Stack ({name}) already exists.", "StackExists")
        environment = _load_environment(body.get("environment"))
        template = self._template(body, dict(body.get("files") or {}))
        given = dict(body.get("parameters") or {})
        stack = Stack(new_id(), name, template, given, environment)
        stack.params = self._parameters(stack, template, given, environment)
        stack.timeout_mins = body.get("timeout_mins")
        tags = body.get("tags") or []
        stack.tags = tags.split(",") if isinstance(tags, str) else list(tags)
        stack.resources = {n: StackResource(n, d["type"]) for n, d in template.resources.items()}
        self.state.stacks[stack.id] = stack
        self._start(stack, Operation("CREATE", failure=self._pop_failure()))
        return stack

    def update(self, stack: Stack, body: dict[str, Any], patch: bool) -> None:
        """Validate a PUT (or PATCH: existing template and parameters as defaults) and start."""
        if stack.deleted:
            raise ApiError(404, f"The Stack ({stack.name}) could not be found.", "EntityNotFound")
        if stack.status == "IN_PROGRESS":
            raise ApiError(
                409,
                f"Stack {stack.name} already has an action ({stack.action}) in progress.",
                "ActionInProgress",
            )
        files = dict(body.get("files") or {})
        if patch:
            files = {**stack.template.files, **files}
        if patch and "template" not in body:
            template = Template(stack.template.body, files)
        else:
            template = self._template(body, files)
        environment = _load_environment(body.get("environment"))
        given = dict(body.get("parameters") or {})
        if patch:
            environment = {**stack.environment, **environment}
            given = {**stack.given, **given}
            for key in body.get("clear_parameters") or []:
                given.pop(key, None)
        self._parameters(stack, template, given, environment)
        operation = Operation("UPDATE", 0.0, template, given, environment, self._pop_failure())
        self._start(stack, operation)

    def delete(self, stack: Stack) -> None:
        if stack.deleted:
            raise ApiError(404, f"The Stack ({stack.name}) could not be found.", "EntityNotFound")
        if stack.stack_status == "DELETE_IN_PROGRESS":
            raise ApiError(409, f"Stack {stack.name} is already being deleted.", "ActionInProgress")
        self._start(stack, Operation("DELETE"))

    def fail_next(self, reason: str, resource: str | None = None, count: int = 1) -> None:
        self.failures.extend(StackFailure(reason, resource) for _ in range(count))

    def _pop_failure(self) -> StackFailure | None:
        return self.failures.popleft() if self.failures else None

    # -- lifecycle --------------------------------------------------------------------------

    def _start(self, stack: Stack, operation: Operation) -> None:
        operation.due = time.monotonic() + self.delay
        stack.pending = operation
        self._set(stack, operation.action, "IN_PROGRESS", f"Stack {operation.action} started")

    def _set(self, stack: Stack, action: str, status: str, reason: str) -> None:
        stack.action, stack.status, stack.reason = action, status, reason
        if action != "CREATE" and status == "IN_PROGRESS":
            stack.updated_at = timestamp()
        self._event(stack, stack.name, stack.id, f"{action}_{status}", reason, "OS::Heat::Stack")

    def _event(
        self, stack: Stack, name: str, physical: str, status: str, reason: str, kind: str
    ) -> None:
        stack.events.append(
            {
                "id": new_id(),
                "event_time": timestamp()[:19] + "Z",
                "resource_name": name,
                "logical_resource_id": name,
                "physical_resource_id": physical,
                "resource_status": status,
                "resource_status_reason": reason,
                "resource_type": kind,
            }
        )

    def _mark(
        self, stack: Stack, res: StackResource, action: str, status: str, reason: str
    ) -> None:
        res.action, res.status, res.reason = action, status, reason
        res.updated_at = timestamp()
        self._event(stack, res.name, res.physical_id, res.resource_status, reason, res.type)

    def advance(self, now: float) -> None:
        """Run every scheduled operation that is due (a hook of ``CloudState.advance``)."""
        for stack in list(self.state.stacks.values()):
            operation = stack.pending
            if operation is not None and now >= operation.due:
                stack.pending = None
                self.run(stack, operation)

    def run(self, stack: Stack, operation: Operation) -> None:
        """Do the work of ``operation`` now; failures end in ``<ACTION>_FAILED``."""
        action, failure = operation.action, operation.failure
        template = operation.template or stack.template
        if failure is not None and failure.resource not in template.resources:
            self._set(stack, action, "FAILED", failure.reason)
            return
        try:
            if action == "DELETE":
                self._delete_resources(stack, list(stack.resources))
                stack.deleted_at = timestamp()
            else:
                self._converge(stack, operation)
        except _ResourceFailed as exc:
            self._set(stack, action, "FAILED", exc.reason)
            return
        self._set(stack, action, "COMPLETE", f"Stack {action} completed successfully")

    def _converge(self, stack: Stack, operation: Operation) -> None:
        """Bring the stack's resources in line with the (new) template, in dependency order."""
        if operation.template is not None:
            old_order = stack.template.creation_order()
            stack.template, stack.given = operation.template, operation.given
            stack.environment = operation.environment
            stack.params = self._parameters(stack, stack.template, stack.given, stack.environment)
            gone = [name for name in reversed(old_order) if name not in stack.template.resources]
            self._delete_resources(stack, gone)
            for name in gone:
                del stack.resources[name]
        template, ctx, resolver = stack.template, self.context(stack), _Resolver(self, stack)
        failure = operation.failure
        for name in template.creation_order():
            definition = template.resources[name]
            res = stack.resources.get(name)
            if res is not None and res.type != definition["type"] and res.physical_id:
                self._delete_resources(stack, [name])
                res = None
            if res is None or not res.physical_id:
                res = stack.resources[name] = StackResource(name, definition["type"])
            action = "CREATE" if not res.physical_id else "UPDATE"
            if failure is not None and failure.resource == name:
                self._mark(stack, res, action, "FAILED", failure.reason)
                raise _ResourceFailed(failure.reason)
            try:
                props = template.resolve(definition.get("properties") or {}, stack.params, resolver)
                if action == "UPDATE" and props == res.properties:
                    continue
                self._mark(stack, res, action, "IN_PROGRESS", "state changed")
                old, res.properties = res.properties, props
                kind = self.type_of(stack, res)
                if action == "CREATE":
                    kind.create(ctx, res)
                else:
                    kind.update(ctx, res, old)
            except (ApiError, TemplateError, KeyError, TypeError, ValueError) as exc:
                message = getattr(exc, "message", str(exc))
                reason = f"{type(exc).__name__}: resources.{name}: {message}"
                self._mark(stack, res, action, "FAILED", reason)
                raise _ResourceFailed(f"Resource {action} failed: {reason}") from None
            self._mark(stack, res, action, "COMPLETE", "state changed")
        stack.resources = {name: stack.resources[name] for name in template.resources}

    def _delete_resources(self, stack: Stack, names: list[str]) -> None:
        """Delete resources in reverse dependency order (of the current template)."""
        order = [n for n in reversed(stack.template.creation_order()) if n in names]
        order += [n for n in names if n not in order]
        ctx = self.context(stack)
        for name in order:
            res = stack.resources[name]
            if not res.physical_id or res.resource_status == "DELETE_COMPLETE":
                continue
            self._mark(stack, res, "DELETE", "IN_PROGRESS", "state changed")
            try:
                self.type_of(stack, res).delete(ctx, res)
            except ApiError as exc:
                reason = f"{type(exc).__name__}: resources.{name}: {exc.message}"
                self._mark(stack, res, "DELETE", "FAILED", reason)
                raise _ResourceFailed(f"Resource DELETE failed: {reason}") from None
            self._mark(stack, res, "DELETE", "COMPLETE", "state changed")

    # -- nested stacks (template resources) -------------------------------------------------

    def create_nested(self, ctx: BuildContext, res: StackResource, template_key: str) -> None:
        try:
            template = Template(load_template(ctx.files[template_key]), ctx.files)
        except TemplateError as exc:
            raise ApiError(400, exc.message, exc.error_type) from None
        child = Stack(new_id(), ctx.physical_name(res.name), template, dict(res.properties), {})
        child.parent, res.physical_id = ctx.stack_id, child.id
        child.params = self._parameters(child, template, child.given, {})
        child.resources = {n: StackResource(n, d["type"]) for n, d in template.resources.items()}
        self.state.stacks[child.id] = child
        self.run(child, Operation("CREATE"))
        if child.status == "FAILED":
            raise ApiError(400, child.reason)
        res.attributes = {o["output_key"]: o.get("output_value") for o in self.outputs(child)}

    def delete_nested(self, res: StackResource) -> None:
        child = self.state.stacks.get(res.physical_id)
        if child is not None and not child.deleted:
            self.run(child, Operation("DELETE"))
            if child.status == "FAILED":
                raise ApiError(400, child.reason)

    # -- views ------------------------------------------------------------------------------

    def outputs(self, stack: Stack) -> list[dict[str, Any]]:
        """Resolved outputs; a failing one carries ``output_error`` as in Heat."""
        resolver = _Resolver(self, stack)
        result = []
        for key, definition in stack.template.outputs.items():
            item: dict[str, Any] = {
                "output_key": key,
                "description": (definition or {}).get("description", "No description given"),
            }
            try:
                value = (definition or {}).get("value")
                item["output_value"] = stack.template.resolve(value, stack.params, resolver)
            except (ApiError, TemplateError) as exc:
                item["output_value"], item["output_error"] = None, exc.message
            result.append(item)
        return result


class _ResourceFailed(Exception):
    """Stops an operation; ``reason`` becomes the stack's status reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
