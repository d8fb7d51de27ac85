"""The pipeline on an EMR cluster made for this run: ``run-pipeline-on-emr``.

The story: check before creating anything (the subnet's VPC has DNS hostnames and a route to
an internet gateway, the roles and the instance profile exist, the log bucket takes a write;
each failure names its fix), render the site's `override.cfg` with the Spark engine on YARN,
upload the pipeline's wheel, that override.cfg and the bootstrap script to S3, create the
cluster (Spark; tagged with the project and this flow run), add each pipeline task as a step
(`launch-task ...`), and wait while publishing the steps' states. The first failed step fails
the run, with its stderr (read from the log URI) in the run log; EMR cancels the steps after
it. Whatever happens, the cluster is terminated in a ``finally`` that a second termination
signal cannot cut short: a cancel (the worker's SIGTERM) ends the wait and the ``finally``
terminates; when the runner had to kill the flow process, its ``on_cancellation`` and
``on_crashed`` hooks terminate the run's clusters by their flow-run tag. What neither covers
(a lost worker host) the ``sweep-emr-clusters`` flow does, by the same tag; EMR's own idle
timeout is the last net. Instance-hours are in the run's artifact.

AWS credentials come from a prefect-aws `AwsCredentials` block named by ``aws_block``; nothing
secret is a parameter, nor reaches the logs or the artifacts. The database credentials files
the site's override.cfg names (``pipeline.database_credentials``: path -> MySQL Database block)
are staged under the run's prefix encrypted (SSE-S3), fetched 0600 by the bootstrap, and
deleted in the ``finally`` and by the hooks.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.emr import (
    EmrClusterSettings,
    StepState,
    emr_override_cfg,
    first_failed,
    instance_hours_table,
    missing_credentials,
    node_credentials_path,
    refuse_failed_checks,
    run_job_flow_request,
    step_definitions,
)
from domain.names import artifact_key
from pipeline.errors import InvalidInput
from pipeline_config.fields import NonEmptyStr
from pipeline_config.render import OverrideSettings, render_override_cfg
from remote.run import parse_task_line
from remote.wheel import pipeline_wheel
from tasks.aws import AwsClients
from tasks.emr import (
    EmrStepFailed,
    add_steps,
    cluster_instance_hours,
    create_cluster,
    delete_credentials,
    delete_run_credentials,
    emr_preflight,
    fetch_step_stderr,
    load_databases,
    run_name,
    terminate_cluster,
    terminate_clusters_of_run,
    upload_credentials,
    upload_run_files,
    wait_for_steps,
)
from tasks.signals import TerminationShield

FLOW_NAME = "run-pipeline-on-emr"


class EmrPipeline(BaseModel):
    """What runs on the cluster: the tasks, one step each, and the site's pipeline settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: list[NonEmptyStr] = Field(
        ...,
        min_length=1,
        description="launch-task lines, one EMR step each, in order, e.g. `TotalEventsDailyTask "
        "--interval 2016-03-01-2016-03-08 --output-root s3://bucket/out/ --local-scheduler`.",
    )
    override: OverrideSettings = Field(
        ...,
        description="The site's override.cfg settings (run with `[map-reduce] engine = spark` "
        "and the cluster's `[spark]` section).",
    )
    database_credentials: dict[NonEmptyStr, NonEmptyStr] = Field(
        default={},
        description="Database credentials files the nodes get (0600, hadoop's): path on the "
        "nodes (under /home/hadoop; the paths override.cfg's `credentials` name) -> MySQL "
        "Database block name. Staged in S3 encrypted, deleted when the run ends.",
    )

    @field_validator("database_credentials")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        for path in value:
            node_credentials_path(path)
        return value

    @model_validator(mode="after")
    def _all_named(self) -> EmrPipeline:
        named = {
            "database-export": self.override.database_export.credentials,
            "database-import": self.override.database_import.credentials,
        }
        missing = missing_credentials(named, self.database_credentials)
        if missing:
            raise InvalidInput(
                f"override.cfg names credentials files no block provides: {', '.join(missing)}; "
                "add each to pipeline.database_credentials (path -> MySQL Database block)"
            )
        return self


class EmrTimeouts(BaseModel):
    """How long the run may take, and how often EMR is asked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    startup_seconds: float = Field(
        default=1800, gt=0, description="Most the cluster may stay STARTING or BOOTSTRAPPING."
    )
    run_seconds: float = Field(
        default=86400, gt=0, description="Most the steps may take, start-up included."
    )
    poll_interval_seconds: float = Field(
        default=30, gt=0, description="Pause between two reads of the steps' states."
    )
    # At most 18 minutes: the fetch-emr-step-stderr task's own timeout is 20.
    step_log_seconds: float = Field(
        default=600,
        ge=0,
        le=1080,
        description="How long to wait for a failed step's stderr.gz to appear under the log "
        "URI (EMR pushes step logs every few minutes); at most 1080.",
    )


def _publish(steps: list[StepState]) -> None:
    logger = get_run_logger()
    logger.info("steps: %s", ", ".join(f"{s.name} {s.state}" for s in steps))


def _terminate_run_clusters(flow, flow_run, state) -> None:
    """`on_cancellation`/`on_crashed`: the runner calls it even when the flow process was killed
    before its ``finally`` (a cancel past the grace period): this run's clusters go then."""
    parameters = flow_run.parameters or {}
    block = parameters.get("aws_block", "aws")
    try:
        terminate_clusters_of_run(block, str(flow_run.id))
    finally:
        staging = (parameters.get("cluster") or {}).get("staging_uri")
        if staging:  # no credentials file of the run stays in S3
            delete_run_credentials(AwsClients.from_block(block), staging, str(flow_run.id))


@flow(
    name=FLOW_NAME,
    on_cancellation=[_terminate_run_clusters],
    on_crashed=[_terminate_run_clusters],
)
def run_pipeline_on_emr(
    cluster: EmrClusterSettings,
    pipeline: EmrPipeline,
    aws_block: NonEmptyStr = "aws",
    timeouts: EmrTimeouts = EmrTimeouts(),
) -> dict:
    """Run the pipeline tasks as the steps of a new EMR cluster, then terminate it.

    Args:
        cluster: The site's EMR cluster (`emr-vars.yml`: release, instances, subnet, key pair,
            roles, log URI, staging URI, extra bootstrap script, tags, `[spark]`).
        pipeline: The launch-task lines and the site's override.cfg settings.
        aws_block: Name of the prefect-aws `AwsCredentials` block of the account.
        timeouts: Start-up, run and log waits; the polling interval.

    Returns:
        ``cluster_id``, ``steps`` (name -> final state) and ``instance_hours`` (the total).

    Raises:
        NotFound: a MySQL Database block of `pipeline.database_credentials` does not exist
            (nothing was created).
        EmrPreflightRefused: a check failed (nothing was created).
        EmrStepFailed: a step failed; its stderr is in the run log.
    """
    logger = get_run_logger()
    words = [parse_task_line(line) for line in pipeline.tasks]
    databases = load_databases(pipeline.database_credentials)
    clients = AwsClients.from_block(aws_block)
    checks = emr_preflight(clients, cluster)
    for check in checks:
        logger.info("preflight %s", check.line())
    refuse_failed_checks(checks)
    run = run_name(flow_run.get_id())
    override_cfg = emr_override_cfg(render_override_cfg(pipeline.override), cluster.spark)
    cluster_id: str | None = None
    steps: list[StepState] = []
    used = []
    try:
        files = upload_run_files(
            clients, cluster, run, pipeline_wheel(), override_cfg, list(databases)
        )
        upload_credentials(clients, files, databases)
        cluster_id = create_cluster(clients, run_job_flow_request(cluster, files, run))
        step_ids = add_steps(clients, cluster_id, step_definitions(words))

        def published(current: list[StepState]) -> None:
            steps[:] = current
            _publish(current)

        steps[:] = wait_for_steps(
            clients,
            cluster_id,
            step_ids,
            timeout=timeouts.run_seconds,
            startup_timeout=timeouts.startup_seconds,
            interval=timeouts.poll_interval_seconds,
            on_change=published,
        )
        failed = first_failed(steps)
        if failed is not None:
            stderr = fetch_step_stderr(
                clients,
                cluster.log_uri,
                cluster_id,
                failed.id,
                wait_seconds=timeouts.step_log_seconds,
                interval=min(timeouts.poll_interval_seconds, 15),
            )
            if stderr is None:
                logger.error(
                    "step %s %s: no stderr.gz under %s after %.0fs",
                    failed.name,
                    failed.state,
                    cluster.log_uri,
                    timeouts.step_log_seconds,
                )
            else:
                logger.error(
                    "step %s %s; its stderr (last lines):\n%s", failed.name, failed.state, stderr
                )
            after = [s.name for s in steps[steps.index(failed) + 1 :]]
            raise EmrStepFailed(
                f"EMR step {failed.name} ({failed.id}) on {cluster_id} {failed.state}"
                + (f": {failed.reason}" if failed.reason else "")
                + (f"; not run: {', '.join(after)}" if after else "")
            )
    finally:
        with TerminationShield():
            try:
                if cluster_id is not None:
                    state = terminate_cluster(clients, cluster_id)
                    used = cluster_instance_hours(clients, cluster_id)
                    _artifact(cluster, cluster_id, state, steps, used)
            finally:
                # the credentials files go whatever happened: no secret stays in S3
                delete_credentials(clients, cluster.staging_uri, run)
    total = round(sum(u.instance_hours for u in used), 4)
    logger.info("EMR cluster %s used %.4f instance-hours", cluster_id, total)
    return {
        "cluster_id": cluster_id,
        "steps": {s.name: s.state for s in steps},
        "instance_hours": total,
    }


def _artifact(cluster: EmrClusterSettings, cluster_id: str, state: str, steps, used) -> None:
    rows = [
        {"what": "step", "name": s.name, "id": s.id, "state": s.state, "instance_hours": ""}
        for s in steps
    ]
    rows += [
        {
            "what": "instances",
            "name": f"{r['group']} {r['instance_type']} {r['market']}".strip(),
            "id": "",
            "state": f"{r['instances']} x {r['hours']} h",
            "instance_hours": r["instance_hours"],
        }
        for r in instance_hours_table(used)
    ]
    create_table_artifact(
        key=f"emr-run-{artifact_key(cluster.name, 'cluster')}",
        table=rows,
        description=f"**{FLOW_NAME}**: cluster {cluster_id} ({state}): steps and instance-hours",
    )
