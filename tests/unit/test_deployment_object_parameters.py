"""Every object parameter a deployment sets is completed from it when a run gives it in part.

Prefect merges a run's parameters into the deployment's one level deep, so a run started with
`--param checks='{"haproxy": true}'` would silently lose the deployment's other fields (the
`ha-health` deployment's `corosync: true`) unless the flow passes the object through
`tasks.parameters.fill_from_deployment` (tested end to end in
tests/integration/test_deployment_e2e.py). This reads each flow's own call of it.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

from tests.flows.test_prefect_yaml import DEPLOYMENTS, load_flow

#: Deployments whose object values in prefect.yaml are an example to replace as a whole (the
#: AWS site, the EMR cluster and its pipeline: `client-name` buckets, placeholder subnets): a
#: run given them in part must not be completed from placeholders.
EXAMPLES = {
    ("aws-analytics", "site"),
    ("aws-analytics-destroy", "site"),
    ("aws-analytics-databases", "site"),
    ("aws-analytics-host", "site"),
    ("emr-pipeline", "cluster"),
    ("emr-pipeline", "pipeline"),
}


def completed_parameters(flow) -> set[str]:
    """The keyword names of the flow's `fill_from_deployment(...)` calls."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(flow.fn)))
    return {
        keyword.arg
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "fill_from_deployment"
        for keyword in node.keywords
    }


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_object_parameters_given_in_part_keep_the_deployments_values(deployment):
    objects = {
        name
        for name, value in (deployment.get("parameters") or {}).items()
        if isinstance(value, dict) and (deployment["name"], name) not in EXAMPLES
    }
    completed = completed_parameters(load_flow(deployment["entrypoint"]))
    assert sorted(objects - completed) == []


def test_the_reader_finds_the_calls():
    flow = load_flow("flows/host_setup.py:setup_analytics_host")
    assert completed_parameters(flow) == {"access", "keys", "pipeline", "override", "insights"}
