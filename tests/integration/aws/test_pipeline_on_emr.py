"""run-pipeline-on-emr and sweep-emr-clusters against the bed's moto server: a good run, a failed
step (its stderr in the log, the cluster terminated, the rest not run), a cancel (SIGTERM to
the flow process) terminating the cluster, each preflight refusal before anything is created,
the sweeper terminating orphans only, and no secret in logs, artifacts or the uploaded files.

moto leaves EMR steps as they are (the first RUNNING, the others PENDING): `EmrDriver`, a
thread of this process, plays EMR by setting the steps' states in moto's backend.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prefect import flow, get_client
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelling, Completed, Running

from domain.emr import (
    EMR_HOME,
    EmrClusterSettings,
    RunFiles,
    run_job_flow_request,
    step_command_line,
)
from flows.emr_sweeper import sweep_emr_clusters
from flows.pipeline_on_emr import run_pipeline_on_emr
from remote.run import parse_task_line
from tests.bed.moto import emr_cluster
from tests.bed.prefect_server import terminate_process_tree
from tests.integration.aws.conftest import BLOCK, SECRET_ACCESS_KEY
from tests.integration.aws.test_aws_analytics_flow import artifacts_of as api_artifacts_of
from tests.integration.aws.test_aws_analytics_flow import logs_of as api_logs_of

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[3]
FLOW = "flows.pipeline_on_emr:run_pipeline_on_emr"
ACCOUNT = "123456789012"  # moto's
LOGS, STAGING = "client-name-analytics-emr-logs", "client-name-analytics-emr"
TASKS = [
    "TotalEventsDailyTask --interval 2016-03-01-2016-03-08 --output-root "
    "s3://client-name-edxanalytics/out/ --local-scheduler",
    "CourseEnrollmentEventsTask --interval 2016-03-01-2016-03-08 --local-scheduler",
    "ImportEnrollmentsIntoMysql --interval 2016-03-01-2016-03-08 --local-scheduler",
]
OVERRIDE = {
    "elasticsearch_host": "http://es.internal:9200/",
    "event_logs": {"source": ["s3://client-name-tracking-logs/logs/"]},
    "warehouse_path": "s3://client-name-edxanalytics/warehouse/",
}
FAST = {
    "startup_seconds": 30,
    "run_seconds": 60,
    "poll_interval_seconds": 0.05,
    "step_log_seconds": 5,
}
STDERR = "Traceback (most recent call last):\nOperationFailed: s3://client-name-tracking-logs: 403"


DB_BLOCK, DB_PASSWORD = "emr-reports", "Db-pw-emr-7d41c2e9"
REPORTS = "/home/hadoop/credentials/reports.json"
CREDENTIALS = {REPORTS: DB_BLOCK}
OVERRIDE_DB = {**OVERRIDE, "database_export": {"database": "reports", "credentials": REPORTS}}


def staged_credentials(aws) -> dict[str, dict]:
    """Every credentials object under the staging bucket: key -> its encryption and body."""
    s3 = aws.client("s3")
    listed = s3.list_objects_v2(Bucket=STAGING).get("Contents", [])
    found = {}
    for item in listed:
        if "/credentials/" in item["Key"]:
            head = s3.head_object(Bucket=STAGING, Key=item["Key"])
            body = s3.get_object(Bucket=STAGING, Key=item["Key"])["Body"].read()
            found[item["Key"]] = {"sse": head.get("ServerSideEncryption"), "body": body}
    return found


def emr_backend():
    from moto.emr.models import emr_backends

    return emr_backends[ACCOUNT]["us-east-1"]


def clusters_now() -> dict:
    return dict(emr_backend().clusters)


class EmrDriver(threading.Thread):
    """Plays EMR for every cluster with steps: the RUNNING step becomes `outcomes[i]` (default
    COMPLETED) and the next PENDING one RUNNING; a failed step's stderr.gz is put under the log
    URI first when `stderr` is given. `hold=True` keeps steps RUNNING (nothing moves)."""

    def __init__(
        self, aws, outcomes=(), stderr: str | None = None, hold: bool = False, pace: float = 0.6
    ):
        super().__init__(daemon=True)
        self.aws, self.outcomes, self.stderr, self.hold = aws, list(outcomes), stderr, hold
        self.pace = pace  # seconds a step stays RUNNING: the flow's polls see it
        self.stopped = threading.Event()
        self.saw_steps = threading.Event()
        self.staged: dict | None = None  # the credentials objects while the steps ran

    def run(self) -> None:
        s3 = self.aws.client("s3")
        while not self.stopped.wait(self.pace):
            for cluster in list(emr_backend().clusters.values()):
                if cluster.state not in ("RUNNING", "WAITING") or not cluster.steps:
                    continue
                if not self.saw_steps.is_set():
                    self.staged = staged_credentials(self.aws)
                self.saw_steps.set()
                if self.hold:
                    continue
                steps = cluster.steps
                for index, step in enumerate(steps):
                    if step.state != "RUNNING":
                        continue
                    outcome = self.outcomes[index] if index < len(self.outcomes) else "COMPLETED"
                    if outcome == "FAILED" and self.stderr is not None:
                        s3.put_object(
                            Bucket=LOGS,
                            Key=f"emr/{cluster.id}/steps/{step.id}/stderr.gz",
                            Body=gzip.compress(self.stderr.encode()),
                        )
                    step.state = outcome
                    if outcome == "COMPLETED" and index + 1 < len(steps):
                        steps[index + 1].state = "RUNNING"
                    break

    def __enter__(self) -> EmrDriver:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.join(5)


@pytest.fixture
def emr_account(account, aws):
    """The moto account of `account` plus what EMR needs: DNS hostnames on, an internet
    gateway with the default route, EMR's default roles and instance profile, the buckets."""
    ec2, iam, s3 = aws.client("ec2"), aws.client("iam"), aws.client("s3")
    vpc = account["vpc_id"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
    (main,) = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "RouteTables"
    ]
    ec2.create_route(
        RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway
    )
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "sts:AssumeRole",
                    "Principal": {"Service": "ec2.amazonaws.com"},
                }
            ],
        }
    )
    for role in ("EMR_DefaultRole", "EMR_EC2_DefaultRole"):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
    iam.create_instance_profile(InstanceProfileName="EMR_EC2_DefaultRole")
    iam.add_role_to_instance_profile(
        InstanceProfileName="EMR_EC2_DefaultRole", RoleName="EMR_EC2_DefaultRole"
    )
    for bucket in (LOGS, STAGING, "client-name-edxanalytics"):
        s3.create_bucket(Bucket=bucket)
    return {
        "cluster": {
            "subnet_id": account["subnet_id"],
            "key_name": "analytics",
            "log_uri": f"s3://{LOGS}/emr/",
            "staging_uri": f"s3://{STAGING}/runs/",
            "core_instance_count": 2,
            "core_market": "SPOT",
            "tags": {"client": "client-name"},
        },
        "vpc": vpc,
        "gateway": gateway,
        "route_table": main["RouteTableId"],
    }


@pytest.fixture
def reports_block(emr_account):
    from blocks.database import MySqlDatabase

    MySqlDatabase(
        host="reports.rds.example", username="pipeline", password=DB_PASSWORD, database="reports"
    ).save(DB_BLOCK, overwrite=True)
    return DB_BLOCK


def run(emr_account, tasks=TASKS, credentials=None, **cluster_changes):
    pipeline = {"tasks": tasks, "override": OVERRIDE}
    if credentials is not None:
        pipeline.update(override=OVERRIDE_DB, database_credentials=credentials)
    return run_pipeline_on_emr(
        cluster={**emr_account["cluster"], **cluster_changes},
        pipeline=pipeline,
        aws_block=BLOCK,
        timeouts=FAST,
        return_state=True,
    )


def logs_of(state, until: str, timeout: float = 30) -> str:
    """The run's log as the API has it, once `until` is in it (the logs arrive in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        logs = asyncio.run(api_logs_of(state.state_details.flow_run_id))
        text = "\n".join(log.message for log in logs)
        if until in text or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def artifacts_of(state) -> list:
    return asyncio.run(api_artifacts_of(state.state_details.flow_run_id))


def s3_text(aws, uri: str) -> str:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def test_a_good_run_creates_a_tagged_cluster_runs_every_step_and_terminates_it(emr_account, aws):
    with EmrDriver(aws):
        state = run(emr_account)
    assert state.is_completed(), state.message
    result = state.result()
    run_id = str(state.state_details.flow_run_id)
    (cluster,) = clusters_now().values()
    assert cluster.state == "TERMINATED"
    assert result["cluster_id"] == cluster.id
    assert list(result["steps"].values()) == ["COMPLETED"] * 3
    description = aws.client("emr").describe_cluster(ClusterId=cluster.id)["Cluster"]
    tags = {t["Key"]: t["Value"] for t in description["Tags"]}
    assert tags == {"project": "edx-ops-flows", "flow-run": run_id, "client": "client-name"}
    assert description["Name"] == f"analytics-pipeline-{run_id}"
    assert {a["Name"] for a in description["Applications"]} >= {"Spark"}
    assert description["ServiceRole"] == "EMR_DefaultRole"
    assert (
        description["Ec2InstanceAttributes"]["Ec2SubnetId"] == emr_account["cluster"]["subnet_id"]
    )
    # each task is a command-runner.jar step running exactly step_command_line's command
    steps = aws.client("emr").list_steps(ClusterId=cluster.id)["Steps"][::-1]
    assert [s["Config"]["Jar"] for s in steps] == ["command-runner.jar"] * 3
    assert [s["Config"]["Args"] for s in steps] == [
        step_command_line(parse_task_line(line)) for line in TASKS
    ]
    # the run's files: the wheel, override.cfg with the Spark engine on YARN, the bootstrap
    staged = aws.client("s3").list_objects_v2(Bucket=STAGING, Prefix=f"runs/{run_id}/")
    names = sorted(o["Key"].rsplit("/", 1)[1] for o in staged["Contents"])
    assert names == ["bootstrap.sh", "edx_ops_flows-0.1.0-py3-none-any.whl", "override.cfg"]
    override = s3_text(aws, f"s3://{STAGING}/runs/{run_id}/override.cfg")
    assert "[map-reduce]\nengine = spark" in override and "[spark]\nmaster = yarn" in override
    assert 'source = ["s3://client-name-tracking-logs/logs/"]' in override
    (action, *_) = aws.client("emr").list_bootstrap_actions(ClusterId=cluster.id)[
        "BootstrapActions"
    ]
    assert action["ScriptPath"] == f"s3://{STAGING}/runs/{run_id}/bootstrap.sh"
    bootstrap = s3_text(aws, action["ScriptPath"])
    assert f"{EMR_HOME}/venv/bin/pip install" in bootstrap
    # states published while waiting, instance-hours in the artifact
    log = logs_of(state, until=f"EMR cluster {cluster.id}: TERMINATED")
    assert "03 ImportEnrollmentsIntoMysql RUNNING" in log, log
    assert "03 ImportEnrollmentsIntoMysql COMPLETED" in log
    assert f"EMR cluster {cluster.id}: TERMINATED" in log
    (artifact,) = [a for a in artifacts_of(state) if (a.key or "").startswith("emr-run-")]
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert [r["state"] for r in rows if r["what"] == "step"] == ["COMPLETED"] * 3
    groups = {r["name"]: r for r in rows if r["what"] == "instances"}
    assert set(groups) == {"MASTER m5.xlarge ON_DEMAND", "CORE m5.xlarge SPOT", "total"}
    assert groups["CORE m5.xlarge SPOT"]["state"].startswith("2 x ")
    assert groups["total"]["state"].startswith("3 x ")
    assert groups["total"]["instance_hours"] == pytest.approx(result["instance_hours"], abs=1e-4)
    assert result["instance_hours"] >= 0


def test_a_failed_step_fails_the_run_with_its_stderr_and_the_cluster_is_terminated(
    emr_account, aws
):
    with EmrDriver(aws, outcomes=["COMPLETED", "FAILED"], stderr=STDERR):
        state = run(emr_account)
    assert state.is_failed()
    (cluster,) = clusters_now().values()
    assert cluster.state == "TERMINATED"
    first, second, third = cluster.steps
    assert (first.state, second.state) == ("COMPLETED", "FAILED")
    assert third.state == "PENDING"  # never ran
    assert f"EMR step 02 CourseEnrollmentEventsTask ({second.id}) on {cluster.id} FAILED" in (
        state.message
    )
    assert "not run: 03 ImportEnrollmentsIntoMysql" in state.message
    log = logs_of(state, until=f"EMR cluster {cluster.id}: TERMINATED")
    assert "its stderr (last lines):\nTraceback (most recent call last):" in log
    assert "OperationFailed: s3://client-name-tracking-logs: 403" in log
    assert f"EMR cluster {cluster.id}: TERMINATED" in log


def test_a_failed_step_without_a_log_says_where_it_looked(emr_account, aws):
    with EmrDriver(aws, outcomes=["FAILED"]):
        state = run(emr_account, tasks=TASKS[:2])
    assert state.is_failed() and "not run: 02 CourseEnrollmentEventsTask" in state.message
    message = f"no stderr.gz under s3://{LOGS}/emr/ after 5s"
    assert message in logs_of(state, until=message)
    assert {c.state for c in clusters_now().values()} == {"TERMINATED"}


def test_a_cluster_ending_on_its_own_fails_the_run(emr_account, aws):
    def bootstrap_fails():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(c.steps for c in clusters_now().values()):
            time.sleep(0.02)
        for cluster in clusters_now().values():
            cluster.state = "TERMINATED_WITH_ERRORS"

    killer = threading.Thread(target=bootstrap_fails, daemon=True)
    killer.start()
    state = run(emr_account)
    killer.join(5)
    assert state.is_failed()
    assert "ended on its own: TERMINATED_WITH_ERRORS" in state.message


# -- a cancel -------------------------------------------------------------------------------------


def test_a_cancelled_run_terminates_its_cluster(emr_account, aws, tmp_path, reports_block):
    parameters = {
        "cluster": emr_account["cluster"],
        "aws_block": BLOCK,
        "pipeline": {
            "tasks": TASKS,
            "override": OVERRIDE_DB,
            "database_credentials": CREDENTIALS,
        },
        "timeouts": {**FAST, "run_seconds": 300},
    }
    path = tmp_path / "parameters.json"
    path.write_text(json.dumps(parameters))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_API_URL=PREFECT_API_URL.value(),
        PREFECT_HOME=str(tmp_path / "home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    output = tmp_path / "flow.log"
    with EmrDriver(aws, hold=True) as driver, output.open("wb") as out:
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.backup.flow_process", str(path), FLOW],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            assert driver.saw_steps.wait(90), output.read_text()
            print(f"flow process to a cluster with steps: {time.monotonic() - started:.1f}s")
            (cluster,) = clusters_now().values()
            assert cluster.state == "RUNNING"
            tags = aws.client("emr").describe_cluster(ClusterId=cluster.id)["Cluster"]["Tags"]
            (run_id,) = [t["Value"] for t in tags if t["Key"] == "flow-run"]
            with get_client(sync_client=True) as client:
                # what the UI's Cancel does; the worker then sends SIGTERM to the flow process
                client.set_flow_run_state(run_id, Cancelling(), force=True)
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        finally:
            terminate_process_tree(process)
    text = output.read_text()
    assert cluster.state == "TERMINATED", text
    assert f"EMR cluster {cluster.id}: TERMINATED" in text
    assert list(driver.staged) == [f"runs/{run_id}/credentials/01.json"]
    assert staged_credentials(aws) == {}, text  # deleted by the finally


def test_the_hooks_terminate_the_runs_clusters_when_its_process_was_killed(emr_account, aws):
    # what the runner does after killing a flow process that ignored the cancel: run the hooks
    ours = {"project": "edx-ops-flows"}
    run_id = flow_run_in(Running(), cluster=emr_account["cluster"])
    s3 = aws.client("s3")
    for run in (run_id, "another-run"):
        s3.put_object(Bucket=STAGING, Key=f"runs/{run}/credentials/01.json", Body=b"{}")
    mine = cluster_tagged(aws, "mine", {**ours, "flow-run": run_id})
    another = cluster_tagged(aws, "another", {**ours, "flow-run": flow_run_in(Running())})
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run_id)
    hooks = [*run_pipeline_on_emr.on_cancellation_hooks, *run_pipeline_on_emr.on_crashed_hooks]
    assert len(hooks) == 2
    hooks[0](run_pipeline_on_emr, flow_run, Cancelling())
    assert {c.id: c.state for c in clusters_now().values()} == {
        mine: "TERMINATED", another: "WAITING"}  # fmt: skip
    assert list(staged_credentials(aws)) == ["runs/another-run/credentials/01.json"]
    hooks[1](run_pipeline_on_emr, flow_run, Cancelling())  # nothing left: a no-op
    assert clusters_now()[another].state == "WAITING"


# -- preflight -------------------------------------------------------------------------------------


def _no_dns(aws, account):
    aws.client("ec2").modify_vpc_attribute(
        VpcId=account["vpc"], EnableDnsHostnames={"Value": False}
    )


def _no_gateway(aws, account):
    ec2 = aws.client("ec2")
    ec2.delete_route(RouteTableId=account["route_table"], DestinationCidrBlock="0.0.0.0/0")
    ec2.detach_internet_gateway(InternetGatewayId=account["gateway"], VpcId=account["vpc"])


def _no_route(aws, account):
    aws.client("ec2").delete_route(
        RouteTableId=account["route_table"], DestinationCidrBlock="0.0.0.0/0"
    )


def _no_service_role(aws, account):
    aws.client("iam").delete_role(RoleName="EMR_DefaultRole")


def _no_instance_profile(aws, account):
    iam = aws.client("iam")
    iam.remove_role_from_instance_profile(
        InstanceProfileName="EMR_EC2_DefaultRole", RoleName="EMR_EC2_DefaultRole"
    )
    iam.delete_instance_profile(InstanceProfileName="EMR_EC2_DefaultRole")


def _no_log_bucket(aws, account):
    aws.client("s3").delete_bucket(Bucket=LOGS)


@pytest.mark.parametrize(
    ("breakage", "refusal", "fix"),
    [
        (_no_dns, "DNS hostnames are disabled", "--enable-dns-hostnames"),
        (_no_gateway, "has no internet gateway attached", "attach-internet-gateway"),
        (_no_route, "has no 0.0.0.0/0 route to igw-", "aws ec2 create-route --route-table-id"),
        (
            _no_service_role,
            "IAM role EMR_DefaultRole (EMR's service role) does not exist",
            "aws emr create-default-roles",
        ),
        (
            _no_instance_profile,
            "instance profile EMR_EC2_DefaultRole does not exist",
            "aws iam create-instance-profile",
        ),
        (_no_log_bucket, f"bucket {LOGS} does not exist", f"aws s3 mb s3://{LOGS}"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_preflight_refuses_before_anything_is_created(emr_account, aws, breakage, refusal, fix):
    breakage(aws, emr_account)
    state = run(emr_account)
    assert state.is_failed()
    assert "EMR preflight refused the run (nothing was created)" in state.message
    assert refusal in state.message and fix in state.message
    assert clusters_now() == {}
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket=STAGING)


def test_preflight_names_a_subnet_that_does_not_exist(emr_account, aws):
    state = run(emr_account, subnet_id="subnet-0123456789abcdef0")
    assert state.is_failed() and "subnet subnet-0123456789abcdef0 does not exist" in state.message
    assert clusters_now() == {}


# -- the sweeper ---------------------------------------------------------------------------------


@flow(name="stand-in")
def stand_in(aws_block: str = BLOCK, cluster: dict | None = None) -> None:
    """A flow whose runs stand for run-pipeline-on-emr's in the sweeper's and hooks' tests."""


def flow_run_in(state, cluster: dict | None = None) -> str:
    parameters = {"aws_block": BLOCK, "cluster": cluster}
    with get_client(sync_client=True) as client:
        return str(client.create_flow_run(stand_in, parameters=parameters, state=state).id)


def cluster_tagged(aws, name: str, tags: dict[str, str]) -> str:
    return emr_cluster(aws.client("emr"), name, tags)


def test_the_sweeper_terminates_orphans_and_leaves_other_clusters_alone(emr_account, aws):
    ours = {"project": "edx-ops-flows"}
    finished = cluster_tagged(aws, "finished", {**ours, "flow-run": flow_run_in(Completed())})
    running = cluster_tagged(aws, "running", {**ours, "flow-run": flow_run_in(Running())})
    vanished = cluster_tagged(
        aws, "vanished", {**ours, "flow-run": "0b8c9a52-8f7e-4a43-9a57-1f0e9c1d2e3f"}
    )
    untagged = cluster_tagged(aws, "someone-elses", {"team": "data"})
    no_run = cluster_tagged(aws, "ours-by-hand", ours)
    dry = sweep_emr_clusters(aws_block=BLOCK, dry_run=True, return_state=True)
    assert set(dry.result()["terminated"]) == {finished, vanished}
    assert {c.state for c in clusters_now().values()} == {"WAITING"}

    state = sweep_emr_clusters(aws_block=BLOCK, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["terminated"] == {
        finished: "its flow run is COMPLETED",
        vanished: "its flow run does not exist",
    }
    assert result["kept"] == {
        running: "its flow run is RUNNING",
        untagged: "not tagged by this project",
        no_run: "no flow-run tag",
    }
    states = {c.id: c.state for c in clusters_now().values()}
    assert states == {
        finished: "TERMINATED",
        vanished: "TERMINATED",
        running: "WAITING",
        untagged: "WAITING",
        no_run: "WAITING",
    }
    # terminated clusters are no longer listed: a second sweep does nothing
    assert sweep_emr_clusters(aws_block=BLOCK, return_state=True).result()["terminated"] == {}


def test_the_sweeper_deletes_the_credentials_files_an_orphans_run_left(emr_account, aws):
    run_id = flow_run_in(Completed())
    files = RunFiles.under(f"s3://{STAGING}/runs/", run_id, "w.whl", [REPORTS])
    request = run_job_flow_request(EmrClusterSettings(**emr_account["cluster"]), files, run_id)
    orphan = aws.client("emr").run_job_flow(**request)["JobFlowId"]
    s3 = aws.client("s3")
    for run in (run_id, "another-run"):
        s3.put_object(Bucket=STAGING, Key=f"runs/{run}/credentials/01.json", Body=b"{}")
    state = sweep_emr_clusters(aws_block=BLOCK, return_state=True)
    assert state.result()["terminated"] == {orphan: "its flow run is COMPLETED"}
    assert list(staged_credentials(aws)) == ["runs/another-run/credentials/01.json"]


# -- secrets ---------------------------------------------------------------------------------------


def test_secrets_reach_neither_logs_artifacts_nor_the_uploaded_files(
    emr_account, aws, caplog, reports_block
):
    import logging

    caplog.set_level(logging.DEBUG)
    with EmrDriver(aws, outcomes=["COMPLETED", "FAILED"], stderr=STDERR):
        failed = run(emr_account, credentials=CREDENTIALS)
    with EmrDriver(aws) as driver:
        good = run(emr_account, credentials=CREDENTIALS)
    assert failed.is_failed() and good.is_completed()
    assert [DB_PASSWORD in json.loads(f["body"])["password"] for f in driver.staged.values()] == [
        True
    ]  # the scan below would find it, were it anywhere else
    texts = [caplog.text, failed.message or "", repr(failed.result(raise_on_failure=False))]
    emr = aws.client("emr")
    for cluster in clusters_now().values():
        texts += [
            json.dumps(s["Config"]["Args"]) for s in emr.list_steps(ClusterId=cluster.id)["Steps"]
        ]
    for state in (failed, good):
        texts.append(logs_of(state, until="instance-hours" if state.is_completed() else "stderr"))
        texts += [str(a.data) + str(a.description) for a in artifacts_of(state)]
    s3 = aws.client("s3")
    for item in s3.list_objects_v2(Bucket=STAGING)["Contents"]:
        texts.append(
            s3.get_object(Bucket=STAGING, Key=item["Key"])["Body"].read().decode("latin-1")
        )
    assert len(texts) > 8
    assert [t for t in texts if SECRET_ACCESS_KEY in t or DB_PASSWORD in t] == []


# -- database credentials files --------------------------------------------------------------------


def test_credentials_files_are_staged_encrypted_fetched_0600_and_deleted_after_the_run(
    emr_account, aws, reports_block
):
    with EmrDriver(aws) as driver:
        state = run(emr_account, credentials=CREDENTIALS)
    assert state.is_completed(), state.message
    run_id = str(state.state_details.flow_run_id)
    key = f"runs/{run_id}/credentials/01.json"
    assert list(driver.staged) == [key]
    assert driver.staged[key]["sse"] == "AES256"
    assert json.loads(driver.staged[key]["body"]) == {
        "host": "reports.rds.example",
        "port": 3306,
        "username": "pipeline",
        "password": DB_PASSWORD,
    }
    assert staged_credentials(aws) == {}  # none left
    bootstrap = s3_text(aws, f"s3://{STAGING}/runs/{run_id}/bootstrap.sh")
    assert (
        f"(umask 077 && mkdir -p /home/hadoop/credentials && aws s3 cp --only-show-errors "
        f"s3://{STAGING}/{key} {REPORTS} && chmod 600 {REPORTS})" in bootstrap
    )
    override = s3_text(aws, f"s3://{STAGING}/runs/{run_id}/override.cfg")
    assert f"[database-export]\ndatabase = reports\ncredentials = {REPORTS}" in override
    log = logs_of(state, until="deleted 1 credentials file(s)")
    assert f"deleted 1 credentials file(s) under s3://{STAGING}/runs/{run_id}/credentials/" in log


def test_credentials_files_are_deleted_after_a_failed_step(emr_account, aws, reports_block):
    with EmrDriver(aws, outcomes=["FAILED"], stderr=STDERR) as driver:
        state = run(emr_account, credentials=CREDENTIALS)
    assert state.is_failed() and "FAILED" in state.message
    assert len(driver.staged) == 1
    assert staged_credentials(aws) == {}
    assert {c.state for c in clusters_now().values()} == {"TERMINATED"}


def test_a_missing_block_is_named_before_anything_is_created(emr_account, aws):
    state = run(emr_account, credentials={REPORTS: "no-such-db"})
    assert state.is_failed()
    assert f"MySQL Database block(s) not found: 'no-such-db' (for {REPORTS})" in state.message
    assert clusters_now() == {}
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket=STAGING)


@pytest.mark.parametrize(
    ("credentials", "refusal"),
    [
        ({"/etc/reports.json": DB_BLOCK}, "'/etc/reports.json' is outside the EMR nodes' home"),
        ({"reports.json": DB_BLOCK}, "'reports.json': expected an absolute, normalized path"),
        (
            {},
            f"override.cfg names credentials files no block provides: [database-export] {REPORTS}",
        ),
    ],
    ids=["outside-home", "relative", "not-provided"],
)
def test_credentials_paths_are_refused_naming_them(
    emr_account, aws, reports_block, credentials, refusal
):
    state = run(emr_account, credentials=credentials)
    assert state.is_failed() and "Validation of flow parameters failed" in state.message
    assert refusal in state.message
    assert clusters_now() == {}
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket=STAGING)
