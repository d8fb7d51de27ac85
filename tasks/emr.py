"""Prefect tasks on EMR (and the EC2, IAM and S3 it needs): preflight, the run's files, the
cluster and its steps, a failed step's stderr, termination, instance-hours, the sweeper's reads.

Clients come from prefect-aws's `AwsCredentials` block (`tasks.aws.AwsClients`). Reads and
termination are retried on outages (termination is idempotent); creating a cluster and adding
steps are not (a second call after a lost answer would make a second cluster, or run a task
twice). The decisions are `domain.emr`'s; waits are `domain.polling.wait_until`.
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.database import MySqlDatabase
from domain.emr import (
    ACTIVE_STATES,
    FLOW_RUN_TAG,
    TERMINATED_STATES,
    EmrClusterSettings,
    InstanceHours,
    PreflightCheck,
    RunFiles,
    StepState,
    assess_dns_hostnames,
    assess_instance_profile,
    assess_internet_route,
    assess_log_bucket,
    assess_role,
    bootstrap_script,
    credentials_uri_of,
    instance_hours,
    run_credentials_uri,
    split_s3_uri,
    step_states,
    step_stderr_key,
    steps_finished,
    tag_value,
)
from domain.polling import wait_until
from pipeline.errors import NotFound, OperationFailed, OperationTimeout, describe, is_transient
from remote.wheel import Wheel
from tasks.aws import AwsClients, error_code, retry_on_outage

READ_RETRIES, READ_RETRY_DELAY_SECONDS = 3, 5
#: A failed step's stderr in the run log: its last lines, at most this many.
STDERR_TAIL_LINES = 200
#: EMR's states while a cluster is still being provisioned (where the VPC pitfalls hang it).
PROVISIONING_STATES = ("STARTING", "BOOTSTRAPPING")


class EmrOperationFailed(OperationFailed):
    """EMR refused or failed a request, or a cluster ended on its own (the message says why)."""


class EmrStepFailed(OperationFailed):
    """A pipeline step failed on the cluster; the steps after it did not run."""


class EmrWaitTimeout(OperationTimeout):
    """The cluster or its steps did not get done in time; the message has the last states."""


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except Exception:
        return logging.getLogger(__name__)


_read = {
    "cache_policy": NO_CACHE,
    "retries": READ_RETRIES,
    "retry_delay_seconds": READ_RETRY_DELAY_SECONDS,
    "retry_condition_fn": retry_on_outage,
}


# -- preflight -------------------------------------------------------------------------------------


def _network_checks(clients: AwsClients, subnet_id: str) -> list[PreflightCheck]:
    ec2 = clients("ec2")
    try:
        subnet = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]
    except ClientError as error:
        if error_code(error).startswith("InvalidSubnet"):
            return [
                PreflightCheck(
                    "subnet",
                    False,
                    f"subnet {subnet_id} does not exist",
                    "set subnet_id to a subnet of the account's VPC (emr-vars.yml's vpc_subnet_id)",
                )
            ]
        raise
    vpc = subnet["VpcId"]
    dns = ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsHostnames")
    gateways = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc]}]
    )["InternetGateways"]
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])
    return [
        assess_dns_hostnames(vpc, bool(dns["EnableDnsHostnames"]["Value"])),
        assess_internet_route(vpc, subnet_id, gateways, tables["RouteTables"]),
    ]


def _role_exists(clients: AwsClients, name: str) -> bool:
    try:
        clients("iam").get_role(RoleName=name)
    except ClientError as error:
        if error_code(error) == "NoSuchEntity":
            return False
        raise
    return True


def _profile_roles(clients: AwsClients, name: str) -> list[str] | None:
    try:
        profile = clients("iam").get_instance_profile(InstanceProfileName=name)
    except ClientError as error:
        if error_code(error) == "NoSuchEntity":
            return None
        raise
    return sorted(role["RoleName"] for role in profile["InstanceProfile"]["Roles"])


def _log_bucket_check(clients: AwsClients, log_uri: str) -> PreflightCheck:
    s3 = clients("s3")
    bucket, prefix = split_s3_uri(log_uri)
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if error_code(error) in ("404", "NoSuchBucket", "NotFound"):
            return assess_log_bucket(bucket, False, None)
        if error_code(error) not in ("403", "AccessDenied"):
            raise
    marker = "/".join(p for p in (prefix.strip("/"), ".edx-ops-flows-preflight") if p)
    try:
        s3.put_object(Bucket=bucket, Key=marker, Body=b"written by run-pipeline-on-emr\n")
        s3.delete_object(Bucket=bucket, Key=marker)
    except ClientError as error:
        return assess_log_bucket(bucket, True, f"{error_code(error)} on s3:PutObject {marker}")
    return assess_log_bucket(bucket, True, None)


@task(name="emr-preflight", timeout_seconds=300, **_read)
def emr_preflight(clients: AwsClients, settings: EmrClusterSettings) -> list[PreflightCheck]:
    """Every preflight check (network when a subnet is given, roles, profile, log bucket)."""
    checks = _network_checks(clients, settings.subnet_id) if settings.subnet_id else []
    checks.append(
        assess_role(
            settings.service_role,
            _role_exists(clients, settings.service_role),
            "EMR's service role",
        )
    )
    checks.append(
        assess_role(
            settings.instance_role, _role_exists(clients, settings.instance_role), "the nodes' role"
        )
    )
    checks.append(
        assess_instance_profile(
            settings.instance_role, _profile_roles(clients, settings.instance_role)
        )
    )
    checks.append(_log_bucket_check(clients, settings.log_uri))
    return checks


# -- the run's files -------------------------------------------------------------------------------


@task(name="upload-emr-run-files", timeout_seconds=600, **_read)
def upload_run_files(
    clients: AwsClients,
    settings: EmrClusterSettings,
    run: str,
    wheel: Wheel,
    override_cfg: str,
    credentials: Sequence[str] = (),
) -> RunFiles:
    """The wheel, override.cfg and bootstrap script under `staging_uri/<run>/` (overwritten:
    a retried upload puts the same bytes); the bootstrap fetches the `credentials` files (their
    paths on the nodes), which `upload_credentials` puts."""
    files = RunFiles.under(settings.staging_uri, run, wheel.filename, credentials)
    s3 = clients("s3")
    for uri, body in (
        (files.wheel_uri, wheel.data),
        (files.override_uri, override_cfg.encode()),
        (files.bootstrap_uri, bootstrap_script(files, settings.python).encode()),
    ):
        bucket, key = split_s3_uri(uri)
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    _logger().info(
        "uploaded %s (%d bytes), override.cfg and bootstrap.sh next to it",
        files.wheel_uri,
        len(wheel.data),
    )
    return files


def load_databases(credentials: dict[str, str]) -> dict[str, MySqlDatabase]:
    """Each credentials path's MySQL Database block (path on the nodes -> block name).

    Raises:
        NotFound: naming every block that does not exist, and the path it was for.
    """
    found, missing = {}, []
    for path, block in credentials.items():
        try:
            found[path] = MySqlDatabase.load(block)
        except ValueError as error:
            if "Unable to find block document" not in str(error):
                raise
            missing.append(f"{block!r} (for {path})")
    if missing:
        raise NotFound(
            "MySQL Database block(s) not found: " + ", ".join(missing) + "; create them "
            "(see blocks/database.py) or fix pipeline.database_credentials"
        )
    return found


@task(name="upload-emr-credentials", timeout_seconds=300, **_read)
def upload_credentials(
    clients: AwsClients, files: RunFiles, databases: dict[str, MySqlDatabase]
) -> None:
    """Each database's credentials file (`MySqlDatabase.credentials_payload`) to its object in
    `files.credentials`, encrypted at rest (SSE-S3). The password goes from the block to S3
    inside this task, never as an argument of its own nor into a log."""
    s3 = clients("s3")
    for path, uri in files.credentials:
        bucket, key = split_s3_uri(uri)
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=databases[path].credentials_payload(),
            ServerSideEncryption="AES256",
        )
        _logger().info("uploaded the credentials file for %s to %s (SSE-S3)", path, uri)


def delete_run_credentials(clients: AwsClients, staging_uri: str, run: str) -> list[str]:
    """Delete every object under the run's credentials prefix; their keys (a plain function:
    the flow's ``finally`` and its cancellation/crash hooks call it)."""
    return _delete_under(clients, run_credentials_uri(staging_uri, run))


@task(name="delete-emr-cluster-credentials", timeout_seconds=300, **_read)
def delete_cluster_credentials(clients: AwsClients, cluster_id: str) -> list[str]:
    """The sweeper's: delete what is left of the credentials files of the run that made the
    cluster (found from its bootstrap action); their keys."""
    actions = clients("emr").list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"]
    uri = credentials_uri_of(actions)
    return _delete_under(clients, uri) if uri else []


def _delete_under(clients: AwsClients, uri: str) -> list[str]:
    s3 = clients("s3")
    bucket, prefix = split_s3_uri(uri)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    for key in keys:
        s3.delete_object(Bucket=bucket, Key=key)
    if keys:
        _logger().info("deleted %d credentials file(s) under s3://%s/%s", len(keys), bucket, prefix)
    return keys


@task(name="delete-emr-credentials", timeout_seconds=300, **_read)
def delete_credentials(clients: AwsClients, staging_uri: str, run: str) -> list[str]:
    """`delete_run_credentials` as a task (idempotent, so retried on outages)."""
    return delete_run_credentials(clients, staging_uri, run)


def run_name(flow_run_id: str | None) -> str:
    """The run's id in names and tags: the flow run's id, else a fresh one (a plain call)."""
    return flow_run_id or f"local-{uuid.uuid4()}"


# -- the cluster and its steps ---------------------------------------------------------------------


@task(name="create-emr-cluster", cache_policy=NO_CACHE, timeout_seconds=300)
def create_cluster(clients: AwsClients, request: dict[str, Any]) -> str:
    """`RunJobFlow`; the cluster's id. Not retried: a second call would make a second cluster."""
    try:
        cluster_id = clients("emr").run_job_flow(**request)["JobFlowId"]
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", "")
        raise EmrOperationFailed(
            f"creating EMR cluster {request['Name']}: AWS said {error_code(error)}: {message}"
        ) from None
    _logger().info("created EMR cluster %s (%s)", cluster_id, request["Name"])
    return str(cluster_id)


@task(name="add-emr-steps", cache_policy=NO_CACHE, timeout_seconds=120)
def add_steps(clients: AwsClients, cluster_id: str, steps: list[dict[str, Any]]) -> list[str]:
    """`AddJobFlowSteps`: the steps' ids, in order. Not retried (a task would run twice)."""
    ids = clients("emr").add_job_flow_steps(JobFlowId=cluster_id, Steps=steps)["StepIds"]
    for step, step_id in zip(steps, ids, strict=True):
        _logger().info("step %s: %s", step_id, step["Name"])
    return list(ids)


def read_steps(clients: AwsClients, cluster_id: str, step_ids: list[str]) -> dict[str, Any]:
    """The cluster's state (and why) and its steps' states, in the order they were added (a
    plain function: the wait calls it every few seconds, as one task)."""
    emr = clients("emr")
    status = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
    listed: list[dict] = []
    for page in emr.get_paginator("list_steps").paginate(ClusterId=cluster_id):
        listed += page["Steps"]
    reason = status.get("StateChangeReason", {})
    return {
        "state": status["State"],
        "reason": " ".join(filter(None, [reason.get("Code"), reason.get("Message")])),
        "steps": step_states(listed, step_ids),
    }


@task(name="wait-for-emr-steps", cache_policy=NO_CACHE)
def wait_for_steps(
    clients: AwsClients,
    cluster_id: str,
    step_ids: list[str],
    *,
    timeout: float,
    startup_timeout: float,
    interval: float,
    on_change: Callable[[list[StepState]], None],
    clock: Callable[[], float] | None = None,
) -> list[StepState]:
    """Wait until every step completed or one failed; `on_change` gets the steps whenever a
    state changed (the flow publishes them).

    Raises:
        EmrOperationFailed: the cluster ended on its own (bootstrap failure, lost nodes...).
        EmrWaitTimeout: still provisioning after `startup_timeout` (the VPC pitfalls), or the
            steps not done after `timeout`; the message has the last states.
    """
    import time

    clock = clock or time.monotonic
    started = clock()
    last: dict[str, Any] = {"steps": []}
    seen: list[tuple[str, str]] = []

    def probe() -> list[StepState] | None:
        try:
            found = read_steps(clients, cluster_id, step_ids)
        except Exception as error:
            if is_transient(error):  # throttled, or the network: ask again next time
                _logger().warning("reading the steps of %s: %s", cluster_id, describe(error))
                return None
            raise
        last.update(found)
        states = [(s.id, s.state) for s in found["steps"]]
        if states != seen:
            seen[:] = states
            on_change(found["steps"])
        if found["state"] in TERMINATED_STATES:
            raise EmrOperationFailed(
                f"EMR cluster {cluster_id} ended on its own: "
                f"{found['state']} ({found['reason'] or 'no reason given'})"
            )
        if found["state"] in PROVISIONING_STATES and clock() - started > startup_timeout:
            raise EmrWaitTimeout(
                f"EMR cluster {cluster_id} still {found['state']} after {startup_timeout:.0f}s: "
                "check that the subnet's VPC has DNS hostnames enabled and an internet gateway "
                "with a 0.0.0.0/0 route (seed 004), and the bootstrap log under the log URI"
            )
        return found["steps"] if steps_finished(found["steps"]) else None

    def timed_out() -> list[StepState]:
        states = ", ".join(f"{s.name or s.id} {s.state}" for s in last["steps"]) or "none read"
        raise EmrWaitTimeout(
            f"EMR cluster {cluster_id}: steps not done after {timeout:.0f}s "
            f"(cluster {last.get('state', '?')}; {states})"
        )

    return wait_until(probe, timeout=timeout, interval=interval, on_timeout=timed_out)


@task(name="fetch-emr-step-stderr", cache_policy=NO_CACHE, timeout_seconds=1200)
def fetch_step_stderr(
    clients: AwsClients,
    log_uri: str,
    cluster_id: str,
    step_id: str,
    *,
    wait_seconds: float,
    interval: float,
) -> str | None:
    """The last lines of a step's `stderr.gz` under the log URI; None if it never appeared
    (EMR pushes step logs to S3 every few minutes, so it may take that long)."""
    s3 = clients("s3")
    bucket, key = step_stderr_key(log_uri, cluster_id, step_id)

    def probe() -> bytes | None:
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404"):
                return None
            raise

    data = wait_until(probe, timeout=wait_seconds, interval=interval, on_timeout=lambda: None)
    if data is None:
        return None
    try:
        text = gzip.decompress(data).decode("utf-8", errors="replace")
    except (OSError, EOFError):  # not gzip after all (a partial upload)
        text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-STDERR_TAIL_LINES:])


@task(name="terminate-emr-cluster", timeout_seconds=300, **_read)
def terminate_cluster(clients: AwsClients, cluster_id: str) -> str:
    """`TerminateJobFlows` (idempotent, so retried); the cluster's state afterwards."""
    emr = clients("emr")
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    state = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
    if state not in TERMINATED_STATES:
        raise EmrOperationFailed(
            f"EMR cluster {cluster_id} is still {state} after "
            "TerminateJobFlows: terminate it in the EMR console"
        )
    _logger().info("EMR cluster %s: %s", cluster_id, state)
    return str(state)


@task(name="emr-instance-hours", timeout_seconds=120, **_read)
def cluster_instance_hours(clients: AwsClients, cluster_id: str) -> list[InstanceHours]:
    """Instance-hours per instance group (`domain.emr.instance_hours`)."""
    emr = clients("emr")
    timeline = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"].get("Timeline", {})
    groups: list[dict] = []
    for page in emr.get_paginator("list_instance_groups").paginate(ClusterId=cluster_id):
        groups += page["InstanceGroups"]
    return instance_hours(groups, timeline.get("EndDateTime"), dt.datetime.now(dt.UTC))


# -- the sweeper ---------------------------------------------------------------------------------


@task(name="list-active-emr-clusters", timeout_seconds=300, **_read)
def active_clusters(clients: AwsClients) -> list[dict[str, Any]]:
    """Every cluster not yet terminated: id, name, tags (`DescribeCluster` has the tags)."""
    emr = clients("emr")
    found = []
    for page in emr.get_paginator("list_clusters").paginate(ClusterStates=list(ACTIVE_STATES)):
        for summary in page["Clusters"]:
            cluster = emr.describe_cluster(ClusterId=summary["Id"])["Cluster"]
            found.append(
                {
                    "id": cluster["Id"],
                    "name": cluster.get("Name", ""),
                    "tags": cluster.get("Tags", []),
                }
            )
    return found


@task(name="read-flow-run-states", cache_policy=NO_CACHE, timeout_seconds=120)
def flow_run_states(flow_run_ids: Sequence[str]) -> dict[str, str | None]:
    """Each id's flow run state type (`RUNNING`, `COMPLETED`...), None when there is no such run
    (or the tag is no flow run id at all)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    states: dict[str, str | None] = {}
    with get_client(sync_client=True) as client:
        for run_id in flow_run_ids:
            try:
                run = client.read_flow_run(uuid.UUID(run_id))
            except (ValueError, ObjectNotFound):
                states[run_id] = None
                continue
            states[run_id] = run.state.type.value if run.state else None
    return states


def terminate_clusters_of_run(aws_block: str, flow_run_id: str) -> list[str]:
    """Terminate every active cluster tagged with this flow run; their ids (none: nothing left).

    A plain function, not a task: the flow's `on_cancellation` and `on_crashed` hooks call it,
    also from a runner process after the flow process itself was killed.
    """
    clients = AwsClients.from_block(aws_block)
    ended = []
    for cluster in active_clusters.fn(clients):
        if tag_value(cluster["tags"], FLOW_RUN_TAG) == flow_run_id:
            clients("emr").terminate_job_flows(JobFlowIds=[cluster["id"]])
            _logger().warning(
                "terminated EMR cluster %s of flow run %s", cluster["id"], flow_run_id
            )
            ended.append(cluster["id"])
    return ended
