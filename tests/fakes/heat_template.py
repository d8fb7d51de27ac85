"""Heat Orchestration Template (HOT) handling for the OpenStack fake.

This module knows nothing about servers or volumes: it parses a template, resolves the
stack parameters, works out the order in which resources must be created and evaluates
the intrinsic functions (``get_param``, ``get_resource``, ``get_attr``, ``get_file``,
``str_replace``, ``list_join``, ``str_split``).  Whatever a function needs from the
running stack (a resource's physical id, an attribute value) it asks a
:class:`StackContext`, which the fake in :mod:`tests.fakes.openstack` implements.

Errors are raised as :class:`TemplateError`, carrying the Heat exception type name so
the HTTP layer can answer the way Heat does (400 with ``error.type``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

__all__ = [
    "PSEUDO_PARAMETERS",
    "StackContext",
    "Template",
    "TemplateError",
    "load_template",
]

#: Parameters every stack has without declaring them.
PSEUDO_PARAMETERS = ("OS::stack_name", "OS::stack_id", "OS::project_id")

_FUNCTIONS = frozenset(
    {"get_param", "get_resource", "get_attr", "get_file", "str_replace", "list_join", "str_split"}
)
_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})


class TemplateError(Exception):
    """A template or its parameters are invalid (Heat answers 400).

    ``error_type`` is the Heat exception class name reported in ``error.type``.
    """

    def __init__(self, message: str, error_type: str = "StackValidationFailed") -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type


class StackContext(Protocol):
    """What intrinsic functions need from the stack being built."""

    def resource_id(self, name: str) -> Any:
        """Physical id of resource ``name`` (``get_resource``); None if not created."""

    def resource_attribute(self, name: str, attribute: str) -> Any:
        """Value of attribute ``attribute`` of resource ``name`` (``get_attr``)."""


class _HotLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as strings, as Heat does.

    Without this, ``heat_template_version: 2015-04-30`` becomes a ``datetime.date``.
    """


_HotLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_template(source: str | Mapping[str, Any]) -> dict[str, Any]:
    """Parse a template given as YAML/JSON text or as an already parsed mapping."""
    if isinstance(source, str):
        try:
            parsed = yaml.load(source, Loader=_HotLoader)  # noqa: S506 - SafeLoader subclass
        except yaml.YAMLError as exc:
            raise TemplateError(f"Error parsing template: {exc}") from exc
    else:
        parsed = dict(source)
    if not isinstance(parsed, dict):
        raise TemplateError("The template is not a JSON object or YAML mapping.")
    return parsed


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise TemplateError(f"Parameter '{name}' is invalid: Unrecognized value \"{value}\"")


def _as_number(value: Any, name: str) -> int | float:
    if isinstance(value, bool):
        raise TemplateError(f"Parameter '{name}' is invalid: Value '{value}' is not a number")
    if isinstance(value, int | float):
        return value
    try:
        return int(str(value))
    except ValueError:
        pass
    try:
        return float(str(value))
    except ValueError:
        raise TemplateError(
            f"Parameter '{name}' is invalid: Value '{value}' is not a number"
        ) from None


def _convert_parameter(name: str, schema: Mapping[str, Any], value: Any) -> Any:
    """Convert a user supplied parameter value to the declared type."""
    kind = schema.get("type", "string")
    if kind == "number":
        converted: Any = _as_number(value, name)
    elif kind == "boolean":
        converted = _as_bool(value, name)
    elif kind == "comma_delimited_list":
        if isinstance(value, list):
            converted = [str(item) for item in value]
        else:
            text = str(value)
            converted = [item.strip() for item in text.split(",")] if text else []
    elif kind == "json":
        if isinstance(value, str):
            try:
                converted = json.loads(value) if value else {}
            except ValueError as exc:
                raise TemplateError(f"Parameter '{name}' is invalid: {exc}") from exc
        else:
            converted = value
    else:
        if isinstance(value, str):
            converted = value
        elif isinstance(value, dict | list):
            converted = json.dumps(value)
        else:
            converted = str(value)
    for constraint in schema.get("constraints") or []:
        allowed = constraint.get("allowed_values") if isinstance(constraint, dict) else None
        if allowed is not None and converted not in allowed:
            raise TemplateError(
                f"Parameter '{name}' is invalid: \"{converted}\" is not an allowed value {allowed}"
            )
    return converted


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Yield ``(function, argument)`` for every intrinsic function call inside ``value``."""
    if isinstance(value, dict):
        if len(value) == 1:
            (key, arg), *_ = value.items()
            if key in _FUNCTIONS:
                yield key, arg
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _navigate(value: Any, path: list[Any]) -> Any:
    """Follow ``path`` (keys or indexes) into ``value``; None when a step is missing."""
    for step in path:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return None
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list):
            try:
                value = value[int(step)]
            except (ValueError, IndexError):
                return None
        else:
            return None
    return value


@dataclass
class Template:
    """A parsed HOT template plus the ``files`` map sent with it."""

    body: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "heat_template_version" not in self.body:
            raise TemplateError(
                "Template format version not found.", error_type="InvalidTemplateVersion"
            )
        resources = self.body.get("resources") or {}
        if not isinstance(resources, dict):
            raise TemplateError('"resources" must be a map')
        for name, definition in resources.items():
            if not isinstance(definition, dict) or "type" not in definition:
                raise TemplateError(f'Resource {name} is missing "type"')
        self._check_references()

    # -- structure ------------------------------------------------------------------------

    @property
    def description(self) -> str:
        return str(self.body.get("description") or "No description")

    @property
    def parameter_schemas(self) -> dict[str, dict[str, Any]]:
        return dict(self.body.get("parameters") or {})

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.body.get("resources") or {})

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        return dict(self.body.get("outputs") or {})

    def dependencies(self, name: str) -> list[str]:
        """Resources that ``name`` needs first (references and ``depends_on``)."""
        definition = self.resources[name]
        needed: list[str] = []
        depends_on = definition.get("depends_on") or []
        if isinstance(depends_on, str):
            depends_on = [depends_on]
        needed.extend(depends_on)
        for function, arg in _walk(definition.get("properties") or {}):
            if function == "get_resource" and isinstance(arg, str):
                needed.append(arg)
            elif function == "get_attr" and isinstance(arg, list) and arg:
                needed.append(str(arg[0]))
        return list(dict.fromkeys(needed))

    def creation_order(self) -> list[str]:
        """Resource names in an order that respects dependencies (template order otherwise)."""
        remaining = {name: set(self.dependencies(name)) for name in self.resources}
        order: list[str] = []
        while remaining:
            ready = [name for name, deps in remaining.items() if deps <= set(order)]
            if not ready:
                raise TemplateError(
                    f"Circular Dependency Found: {sorted(remaining)}",
                    error_type="CircularDependencyException",
                )
            for name in ready:
                order.append(name)
                del remaining[name]
        return order

    def _check_references(self) -> None:
        """Reject references to undefined resources or parameters, as Heat validation does."""
        resources = self.resources
        params = set(self.parameter_schemas) | set(PSEUDO_PARAMETERS)
        sections = [(name, d) for name, d in resources.items()]
        sections += [(f"outputs.{key}", d) for key, d in self.outputs.items()]
        for where, definition in sections:
            depends_on = definition.get("depends_on") if isinstance(definition, dict) else None
            for dep in [depends_on] if isinstance(depends_on, str) else depends_on or []:
                if dep not in resources:
                    raise TemplateError(
                        f'The specified reference "{dep}" (in {where}) is incorrect.',
                        error_type="InvalidTemplateReference",
                    )
            for function, arg in _walk(definition):
                target = None
                if function == "get_resource":
                    target = arg
                elif function == "get_attr" and isinstance(arg, list) and arg:
                    target = arg[0]
                if isinstance(target, str) and target not in resources:
                    raise TemplateError(
                        f'The specified reference "{target}" (in {where}) is incorrect.',
                        error_type="InvalidTemplateReference",
                    )
                if function == "get_param":
                    param = arg[0] if isinstance(arg, list) and arg else arg
                    if isinstance(param, str) and param not in params:
                        raise TemplateError(
                            f"The Parameter ({param}) was not defined in template.",
                            error_type="InvalidTemplateParameter",
                        )

    # -- parameters -----------------------------------------------------------------------

    def resolve_parameters(
        self,
        given: Mapping[str, Any] | None,
        environment: Mapping[str, Any] | None = None,
        pseudo: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Typed parameter values: given > environment ``parameters`` > ``parameter_defaults``
        > template default. ``pseudo`` supplies the ``OS::*`` pseudo parameters."""
        environment = environment or {}
        schemas = self.parameter_schemas
        supplied = dict(environment.get("parameters") or {})
        supplied.update(given or {})
        unknown = sorted(set(supplied) - set(schemas))
        if unknown:
            raise TemplateError(
                f"The Parameter ({unknown[0]}) was not defined in template.",
                error_type="UnknownUserParameter",
            )
        defaults = dict(environment.get("parameter_defaults") or {})
        values: dict[str, Any] = {}
        for name, schema in schemas.items():
            schema = schema or {}
            if name in supplied:
                raw = supplied[name]
            elif name in defaults:
                raw = defaults[name]
            elif "default" in schema:
                raw = schema["default"]
            else:
                raise TemplateError(
                    f"The Parameter ({name}) was not provided.", error_type="UserParameterMissing"
                )
            values[name] = _convert_parameter(name, schema, raw)
        values.update(pseudo or {})
        return values

    # -- intrinsic functions --------------------------------------------------------------

    def resolve(self, value: Any, params: Mapping[str, Any], ctx: StackContext) -> Any:
        """Evaluate every intrinsic function inside ``value``."""
        if isinstance(value, list):
            return [self.resolve(item, params, ctx) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (function, arg), *_ = value.items()
            if function in _FUNCTIONS:
                return self._call(function, arg, params, ctx)
        return {key: self.resolve(item, params, ctx) for key, item in value.items()}

    def _call(self, function: str, arg: Any, params: Mapping[str, Any], ctx: StackContext) -> Any:
        if function == "get_param":
            path = arg if isinstance(arg, list) else [arg]
            path = [self.resolve(step, params, ctx) for step in path]
            return _navigate(params.get(path[0]), path[1:])
        if function == "get_resource":
            return ctx.resource_id(self.resolve(arg, params, ctx))
        if function == "get_attr":
            path = [self.resolve(step, params, ctx) for step in arg]
            if len(path) < 2:
                raise TemplateError(f"Arguments to get_attr are invalid: {arg}")
            value = ctx.resource_attribute(str(path[0]), str(path[1]))
            return _navigate(value, path[2:])
        if function == "get_file":
            key = self.resolve(arg, params, ctx)
            if key not in self.files:
                raise TemplateError(f"Could not fetch remote template '{key}'")
            return self.files[key]
        if function == "str_replace":
            spec = self.resolve(arg, params, ctx)
            text = str(spec.get("template", ""))
            for search, replacement in (spec.get("params") or {}).items():
                if not isinstance(replacement, str):
                    replacement = json.dumps(replacement) if replacement is not None else ""
                text = text.replace(str(search), replacement)
            return text
        if function == "list_join":
            spec = self.resolve(arg, params, ctx)
            delimiter, *lists = spec
            items: list[Any] = []
            for part in lists:
                items.extend(part if isinstance(part, list) else [part])
            return str(delimiter).join(
                item if isinstance(item, str) else json.dumps(item) for item in items
            )
        if function == "str_split":
            spec = self.resolve(arg, params, ctx)
            parts = str(spec[1]).split(str(spec[0]))
            return parts[int(spec[2])] if len(spec) > 2 else parts
        raise TemplateError(f"Unknown function {function}")  # pragma: no cover - guarded above
