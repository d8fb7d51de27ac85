"""Object parameters given in part, completed from other values (a deployment's, in flows).

Prefect merges a run's parameters into its deployment's one level deep, so an object parameter
given in part loses the deployment's other fields (`tasks.parameters` says why and reads the
deployment's values); `complete` is the merge itself: fields the caller did not give (not in the
model's `model_fields_set`) are taken from plain defaults, at any depth.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel


def complete(value: Any, defaults: Any, path: str) -> tuple[Any, list[tuple[str, Any]]]:
    """`value` with each field not given by the caller taken from `defaults`.

    Returns the (re-validated) model and the fields taken, as (dotted path, value). Anything
    but a model with a mapping of defaults is returned unchanged.
    """
    if not isinstance(value, BaseModel) or not isinstance(defaults, Mapping):
        return value, []
    fields = type(value).model_fields
    update: dict[str, Any] = {}
    taken: list[tuple[str, Any]] = []
    for name, default in defaults.items():
        if name not in fields:
            continue
        if name not in value.model_fields_set:
            update[name] = default
            taken.append((f"{path}.{name}", default))
            continue
        inner, inner_taken = complete(getattr(value, name), default, f"{path}.{name}")
        if inner_taken:
            update[name] = inner
            taken += inner_taken
    if not update:
        return value, []
    given = {name: getattr(value, name) for name in value.model_fields_set}
    return type(value).model_validate({**given, **update}), taken
