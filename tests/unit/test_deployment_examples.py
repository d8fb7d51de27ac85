"""The examples in deployments/ are what the renderers produce (regenerate them with
``UPDATE_EXAMPLES=1 uv run pytest tests/unit/test_deployment_examples.py``)."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from domain.heat_inventory import inventory_from_stacks
from domain.inventory import ANALYTICS_INI_GROUPS, render_ini, render_json
from pipeline_config.render import render_override_cfg
from tests.unit import samples
from tests.unit.conftest import DEPLOYMENTS, HOT


def _inventory():
    return inventory_from_stacks(samples.multi_node_stack(), samples.analytics_stack())


def _override_cfg() -> str:
    settings = json.loads((DEPLOYMENTS / "example-override-settings.json").read_text())
    return render_override_cfg(settings)


EXAMPLES = {
    "example-analytics.ini": lambda: render_ini(_inventory(), ANALYTICS_INI_GROUPS),
    "example-inventory.json": lambda: render_json(_inventory()),
    "example-override.cfg": _override_cfg,
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_is_up_to_date(name: str):
    expected, path = EXAMPLES[name](), DEPLOYMENTS / name
    if os.environ.get("UPDATE_EXAMPLES"):
        path.write_text(expected)
    assert path.read_text() == expected, (
        f"deployments/{name} is stale; regenerate with "
        "UPDATE_EXAMPLES=1 uv run pytest tests/unit/test_deployment_examples.py"
    )


def test_example_analytics_ini_is_the_seed_shape():
    assert (DEPLOYMENTS / "example-analytics.ini").read_text() == samples.SEED_ANALYTICS_INI


@pytest.mark.parametrize(
    ("environment", "template"),
    [
        ("example-multi-node.env.yaml", "edx-multi-node.yaml"),
        ("example-analytics.env.yaml", "edx-analytics-server.yaml"),
    ],
)
def test_example_environments_set_only_template_parameters(environment: str, template: str):
    given = yaml.safe_load((DEPLOYMENTS / environment).read_text())
    assert set(given) == {"parameters"}
    declared = yaml.safe_load((HOT / template).read_text())["parameters"]
    assert set(given["parameters"]) <= set(declared)
    required = {name for name, schema in declared.items() if "default" not in schema}
    # The analytics stack's network and security group come from the multi-node stack.
    assert required - set(given["parameters"]) <= {"network", "security_group"}
