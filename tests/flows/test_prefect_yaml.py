"""prefect.yaml as operators deploy it: entrypoints import, parameters fit, schedules parse."""

import importlib
from pathlib import Path

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"
DEPLOYMENTS = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
KNOWN_KEYS = {
    "name",
    "description",
    "entrypoint",
    "tags",
    "work_pool",
    "schedules",
    "parameters",
    "concurrency_limit",
    "version",
    "enforce_parameter_schema",
    "pull",
    "job_variables",
}


def load_flow(entrypoint: str):
    path, _, name = entrypoint.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_deployment_is_valid(deployment):
    # a misspelt key is silently ignored by `prefect deploy`: refuse unknown keys here
    assert set(deployment) <= KNOWN_KEYS, set(deployment) - KNOWN_KEYS
    flow = load_flow(deployment["entrypoint"])
    parameters = deployment.get("parameters", {})
    assert set(parameters) <= set(flow.parameters.properties), "unknown flow parameter"
    flow.validate_parameters(parameters)  # raises on a value of the wrong type
    for schedule in deployment.get("schedules", []):
        CronSchedule(cron=schedule["cron"], timezone=schedule.get("timezone", "UTC"))


def test_flow_names_follow_verb_noun():
    for deployment in DEPLOYMENTS:
        name = load_flow(deployment["entrypoint"]).name
        assert "-" in name and name == name.lower(), name
