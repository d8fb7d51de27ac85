"""Walking Prefect's parameter schemas: every field of a deployment's run form, and the text its
description shows there.

The Prefect UI renders a description as Markdown with HTML tags removed: outside a code span,
`<stack>` is taken for a tag and disappears. Descriptions therefore put such text in backticks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

#: `<` opening something an HTML parser takes for a tag, a comment or a declaration.
_TAG_START = re.compile(r"<[A-Za-z/!?]")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def described_fields(schema: dict) -> Iterator[tuple[str, str | None]]:
    """(field, description) of every top-level parameter and of every field of every model the
    parameter schema defines (models appear in the form as nested sections)."""
    for name, prop in schema.get("properties", {}).items():
        yield name, prop.get("description")
    for model, definition in schema.get("definitions", {}).items():
        for name, prop in definition.get("properties", {}).items():
            yield f"{model}.{name}", prop.get("description")


def visible_text(markdown: str) -> str:
    """The text a Markdown description shows: code spans without their backticks, any run of
    white space (a line break in a docstring) as one space."""
    return " ".join(_CODE_SPAN.sub(lambda m: m.group(2), markdown).split())


def html_outside_code(markdown: str) -> list[str]:
    """Pieces of `markdown` outside code spans that the UI would take for HTML tags."""
    prose = _CODE_SPAN.sub("", markdown)
    return [prose[m.start() : m.start() + 20] for m in _TAG_START.finditer(prose)]
