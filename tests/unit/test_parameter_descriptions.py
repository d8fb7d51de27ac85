"""Every parameter of every deployment in prefect.yaml has a description the UI shows intact.

The schema is the one `prefect deploy` sends (`parameter_schema(flow)`); tests/integration/
test_ui.py checks the same descriptions on the run forms in a real browser.
"""

from __future__ import annotations

import pytest
from prefect.utilities.callables import parameter_schema

from tests.flows.test_prefect_yaml import DEPLOYMENTS, load_flow
from tests.parameter_schema import described_fields, html_outside_code, visible_text


def schema_of(deployment: dict) -> dict:
    return parameter_schema(load_flow(deployment["entrypoint"])).model_dump()


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_every_parameter_has_a_description(deployment):
    fields = list(described_fields(schema_of(deployment)))
    assert fields
    assert [name for name, text in fields if not (text and text.strip())] == []


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_no_description_holds_text_the_ui_takes_for_html(deployment):
    cut = {
        name: pieces
        for name, text in described_fields(schema_of(deployment))
        if text and (pieces := html_outside_code(text))
    }
    assert cut == {}, "put <...> in `backticks`: the UI drops it as an HTML tag"


def test_what_the_walk_and_the_checks_see():
    schema = {
        "properties": {"node": {"description": "The node."}, "bare": {}},
        "definitions": {"Volumes": {"properties": {"keep": {"description": "How many."}}}},
    }
    assert list(described_fields(schema)) == [
        ("node", "The node."), ("bare", None), ("Volumes.keep", "How many."),
    ]  # fmt: skip
    assert html_outside_code("names <stack>-<id>") == ["<stack>-<id>", "<id>"]
    assert html_outside_code("names `<stack>-<id>`, path -> block, a < b") == []
    assert (
        visible_text("a `(?P<date>...)`\ngroup, ``[hive] x``") == "a (?P<date>...) group, [hive] x"
    )


def _string_schemas(prop: dict):
    """The string schemas a property accepts (itself, its anyOf members, its list items)."""
    for option in prop.get("anyOf", [prop]):
        if option.get("type") == "string":
            yield option
        elif option.get("type") == "array" and option.get("items", {}).get("type") == "string":
            yield option["items"]
        elif option.get("type") == "object":
            extra = option.get("additionalProperties")
            if isinstance(extra, dict) and extra.get("type") == "string":
                yield extra


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_every_string_parameter_refuses_blank_values(deployment):
    schema = schema_of(deployment)
    props = [(name, p) for name, p in schema.get("properties", {}).items()]
    for model, definition in schema.get("definitions", {}).items():
        props += [(f"{model}.{n}", p) for n, p in definition.get("properties", {}).items()]
    # a string without enum choices must refuse "" and "   ": minLength plus a \S pattern, or a
    # pattern of its own that no blank value matches
    loose = [
        name
        for name, prop in props
        for string in _string_schemas(prop)
        if "enum" not in string
        and not (string.get("minLength") and string.get("pattern"))
        and not (string.get("pattern", "").startswith("^") and "\\s" not in string["pattern"])
    ]
    assert loose == [], "type these NonEmptyStr (pipeline_config/fields.py)"
