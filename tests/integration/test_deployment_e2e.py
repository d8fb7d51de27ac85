"""End to end, the way operators run things: a real Prefect server, a `process` work pool, a
worker, `prefect deploy --all` from this repository's prefect.yaml, and a run of
`analytics-import/daily` triggered through the API with non-default parameters (as the UI does).

Deliberately NOT under tests/flows/: that directory's conftest runs every test inside a
prefect_test_harness; here everything talks to a separate `prefect server start` process.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterId,
    LogFilter,
    LogFilterFlowRunId,
)

from flows.analytics_stack import AnalyticsServer
from pipeline.samples import SampleSpec, generate_lms_database, generate_logs
from tests.integration.partial_parameters_flow import echo_completed_parameters

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = "analytics-import/daily"
POOL = "analytics"  # prefect.yaml's work_pool.name
SPEC = SampleSpec(days=2, servers=1, lines_per_file=2000, users=200)
RUN_TIMEOUT = 180
EXPECTED_ARTIFACTS = {
    "events-per-day",
    "enrollments-per-course",
    "discarded-lines",
    "analytics-import-outputs",
}


def work_pools_in_prefect_yaml() -> set[str]:
    deployments = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    return {d["work_pool"]["name"] for d in deployments if d.get("work_pool")}


def wait_for_final_state(client, flow_run_id, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        flow_run = client.read_flow_run(flow_run_id)
        if flow_run.state is not None and flow_run.state.is_final():
            return flow_run
        if time.monotonic() > deadline:
            return flow_run
        time.sleep(1)


def artifact_keys(client, flow_run_id) -> set[str]:
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    )
    return {artifact.key for artifact in artifacts if artifact.key}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_deployed_daily_import_runs_on_a_worker_with_ui_parameters(prefect_server, tmp_path):
    # sample site: two days of logs from one server, and an LMS database
    generate_logs(tmp_path / "tracking-logs", SPEC)
    generate_lms_database(tmp_path / "edxapp.sqlite", SPEC)
    parameters = {
        "interval": "2016-03-01-2016-03-03",
        "logs": {"sources": [f"{tmp_path / 'tracking-logs'}/"]},
        "outputs": {
            "warehouse": f"{tmp_path / 'warehouse'}/",
            "report_dir": f"{tmp_path / 'reports'}/",
            "sqlite_database": str(tmp_path / "results.sqlite"),
            "lms_sqlite_database": str(tmp_path / "edxapp.sqlite"),
        },
    }

    # operator steps, as in the README: create the pool, start a worker, deploy from the repo
    prefect_server.prefect("work-pool", "create", POOL, "--type", "process", "--overwrite")
    # `prefect deploy --all` fails while any pool prefect.yaml names is missing (README)
    for other_pool in sorted(work_pools_in_prefect_yaml() - {POOL}):
        prefect_server.prefect("work-pool", "create", other_pool, "--type", "process")
    prefect_yaml = (REPO_ROOT / "prefect.yaml").read_bytes()
    had_dot_prefect = (REPO_ROOT / ".prefect").exists()
    worker_log = tmp_path / "worker.log"
    # the worker boots (imports Prefect, ~3 s) while `prefect deploy` runs
    with prefect_server.start_worker(POOL, cwd=REPO_ROOT, log_path=worker_log) as worker:
        deploy = prefect_server.prefect("--no-prompt", "deploy", "--all", cwd=REPO_ROOT)
        assert DEPLOYMENT in deploy.stdout, deploy.stdout
        # deploying must leave the checkout alone (only the temp PREFECT_HOME is written)
        assert (REPO_ROOT / "prefect.yaml").read_bytes() == prefect_yaml, "deploy edited it"
        assert had_dot_prefect or not (REPO_ROOT / ".prefect").exists(), "deploy wrote .prefect/"

        with prefect_server.client() as client:
            deployment = client.read_deployment_by_name(DEPLOYMENT)
            # deployed as prefect.yaml says
            assert deployment.work_pool_name == POOL
            assert [(s.schedule.cron, s.active) for s in deployment.schedules] == [
                ("30 2 * * *", True)
            ]
            assert deployment.global_concurrency_limit.limit == 1
            assert deployment.parameters["outputs"]["report_dir"] == "/edx/var/analytics/reports/"

            flow_run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
            flow_run = wait_for_final_state(client, flow_run.id, RUN_TIMEOUT)
            state = flow_run.state
            why = (
                f"flow run {flow_run.name} ended {state.type if state else None}: "
                f"{state.message if state else ''}\n--- worker output ({worker_log}) ---\n"
                f"{worker.output()}"
            )
            assert state is not None and state.is_completed(), why
            assert flow_run.parameters["outputs"] == parameters["outputs"], why
            # the scheduler service is off: ours is the deployment's only run
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
            )
            assert [r.id for r in runs] == [flow_run.id], why
            keys = artifact_keys(client, flow_run.id)

    assert keys >= EXPECTED_ARTIFACTS, f"artifacts stored: {sorted(keys)}\n{why}"
    report = tmp_path / "reports" / "total_events.csv"
    assert report.exists(), why
    lines = report.read_text().splitlines()
    assert lines[0] == "date,event_count", lines
    assert sorted(line.split(",")[0] for line in lines[1:]) == ["2016-03-01", "2016-03-02"], lines
    assert (tmp_path / "results.sqlite").exists(), why


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_partial_object_parameters_keep_the_deployments_other_values(prefect_server, tmp_path):
    """A run given part of an object (as `prefect deployment run --param server='{...}'`) gets the
    deployment's values for the fields it left out, at any depth, not the model's defaults."""
    pool = "partial-parameters"
    deployed = {
        "server": {"image": "ubuntu-22.04", "key_name": "deploy", "public_net_id": "public",
                   "hadoop_size": 50, "flavor": "m1.xlarge"},
        "settings": {"name": "deployed", "size": 50,
                     "limits": {"retries": 5, "label": "deployed"}},
        "out": str(tmp_path / "deployed.json"),
    }  # fmt: skip
    prefect_server.prefect("work-pool", "create", pool, "--type", "process", "--overwrite")
    with prefect_server.client() as client:
        flow_id = client.create_flow_from_name(echo_completed_parameters.name)
        deployment_id = client.create_deployment(
            flow_id=flow_id, name="partial", work_pool_name=pool, parameters=deployed,
            entrypoint="tests/integration/partial_parameters_flow.py:echo_completed_parameters",
            path=str(REPO_ROOT),
            parameter_openapi_schema=echo_completed_parameters.parameters.model_dump(),
        )  # fmt: skip
    given = {
        "server": {"image": "debian-12", "key_name": "ops", "public_net_id": "ext"},
        "settings": {"name": "given", "limits": {"label": "given"}},
        "out": str(tmp_path / "given.json"),
    }
    worker_log = tmp_path / "worker.log"
    with (
        prefect_server.start_worker(pool, cwd=REPO_ROOT, log_path=worker_log) as worker,
        prefect_server.client() as client,
    ):
        flow_run = client.create_flow_run_from_deployment(deployment_id, parameters=given)
        flow_run = wait_for_final_state(client, flow_run.id, RUN_TIMEOUT)
        state = flow_run.state
        why = f"ended {state.type if state else None}: {state and state.message}\n{worker.output()}"
        assert state is not None and state.is_completed(), why
        # the server stored the run's parameters as given: the whole object replaced
        assert flow_run.parameters["server"] == given["server"]
        taken = ("server.hadoop_size", "server.flavor", "settings.size", "settings.limits.retries")
        # the run's logs reach the server in batches, after its final state
        deadline = time.monotonic() + 60
        while True:
            messages = [
                log.message for log in client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id]))
                )
            ]  # fmt: skip
            logged = {f for f in taken if any(m.startswith(f"{f} not given") for m in messages)}
            if logged == set(taken) or time.monotonic() > deadline:
                break
            time.sleep(1)
    completed = json.loads((tmp_path / "given.json").read_text())
    assert completed["server"] == {
        **AnalyticsServer.model_validate(given["server"]).model_dump(mode="json"),
        "hadoop_size": 50, "flavor": "m1.xlarge",
    }  # fmt: skip
    assert completed["settings"] == {
        "name": "given",
        "size": 50,
        "limits": {"retries": 5, "label": "given"},
    }
    assert logged == set(taken), messages
    assert not any(m.startswith("server.image") for m in messages), messages
