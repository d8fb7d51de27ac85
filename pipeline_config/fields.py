"""Field types shared by every parameter model (the flows' and `OverrideSettings`).

Declared once so that the rule is the same everywhere and shows in the JSON schema Prefect
builds from the models: the UI's form and the API's parameter check refuse an empty or blank
value before a run starts, and a flow called from Python gets pydantic's error naming the field.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints, WithJsonSchema


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only white space")
    return value


#: A string with at least one character that is not white space (a name, path, command...).
NonEmptyStr = Annotated[
    str,
    StringConstraints(min_length=1),
    AfterValidator(_not_blank),
    # `\S` somewhere: what the API and the UI's form can check of "not blank"
    WithJsonSchema({"type": "string", "minLength": 1, "pattern": r"\S"}),
]
