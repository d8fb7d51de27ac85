"""Empty or blank strings in any flow's parameters are refused before the flow body runs, with
pydantic's message naming the field: called from Python (as a worker does with a run's
parameters) and through a deployment on the API (which checks the deployment's schema)."""

from __future__ import annotations

import pytest
from prefect.exceptions import ParameterTypeError

from flows.analytics import analytics_import
from flows.analytics_stack import deploy_analytics_stack
from flows.backup import backup_backend_node
from flows.host_setup import setup_analytics_host
from flows.remote_pipeline import run_remote_pipeline

SERVER = {"image": "ubuntu-22.04", "key_name": "deploy", "public_net_id": "public"}
HOST_TASKS = {"host": "10.0.0.5", "tasks": ["TotalEventsDailyTask --interval 2016"]}

# (flow, arguments, the field pydantic must name); every value below would otherwise reach
# the flow body: a cloud lookup, a block load, a remote command or a concurrency slot.
CASES = [
    (backup_backend_node, {"node": ""}, "node"),
    (backup_backend_node, {"node": "   "}, "node"),
    (backup_backend_node, {"node": "b1", "access": {"ssh_block": " "}}, "access.ssh_block"),
    (backup_backend_node, {"node": "b1", "volumes": {"patterns": [""]}}, "volumes.patterns.0"),
    (
        backup_backend_node,
        {"node": "b1", "consistency": {"sync_command": "\t"}},
        "consistency.sync_command",
    ),
    (backup_backend_node, {"node": "b1", "access": {"network": ""}}, "access.network"),
    (setup_analytics_host, {"server": " "}, "server"),
    (
        setup_analytics_host,
        {"server": "a", "access": {"also_verify": ["b1", " "]}},
        "access.also_verify.1",
    ),
    (
        setup_analytics_host,
        {"server": "a", "keys": {"key_pair_directory": ""}},
        "keys.key_pair_directory",
    ),
    (setup_analytics_host, {"server": "a", "pipeline": {"python": " "}}, "pipeline.python"),
    (setup_analytics_host, {"server": "a", "insights": {"command": ""}}, "insights.command"),
    (
        setup_analytics_host,
        {"server": "a", "database_credentials": {"/etc/x.json": " "}},
        "database_credentials./etc/x.json",
    ),
    (deploy_analytics_stack, {"server": {**SERVER, "image": " "}}, "server.image"),
    (deploy_analytics_stack, {"server": SERVER, "stack_name": ""}, "stack_name"),
    (deploy_analytics_stack, {"server": SERVER, "openstack_block": "  "}, "openstack_block"),
    (run_remote_pipeline, {**HOST_TASKS, "host": ""}, "host"),
    (run_remote_pipeline, {**HOST_TASKS, "tasks": ["TotalEventsDailyTask", " "]}, "tasks.1"),
    (run_remote_pipeline, {**HOST_TASKS, "ssh_block": ""}, "ssh_block"),
    (run_remote_pipeline, {**HOST_TASKS, "run": {"log_dir": " "}}, "run.log_dir"),
    (analytics_import, {"interval": " "}, "interval"),
    (analytics_import, {"logs": {"sources": [""]}}, "logs.sources.0"),
    (analytics_import, {"outputs": {"report_dir": " "}}, "outputs.report_dir"),
    (analytics_import, {"outputs": {"result_database_block": ""}}, "outputs.result_database_block"),
]


@pytest.mark.parametrize(
    ("flow", "arguments", "field"), CASES, ids=[f"{c[0].name}-{c[2]}" for c in CASES]
)
def test_blank_strings_are_refused_naming_the_field(flow, arguments, field):
    with pytest.raises(ParameterTypeError) as refused:
        flow(**arguments)
    message = str(refused.value)
    assert field in message, message
    assert (
        "must not be empty or only white space" in message
        or "String should have at least 1 character" in message
    ), message
