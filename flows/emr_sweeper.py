"""Terminate the EMR clusters that runs left behind: ``sweep-emr-clusters``.

``run-pipeline-on-emr`` terminates its cluster in a ``finally``; a flow process killed with
SIGKILL, or a worker host that died, never gets there. Every cluster that flow creates is
tagged ``project=edx-ops-flows`` and ``flow-run=<id>``: this flow (scheduled hourly) asks EMR
for the clusters not yet terminated, asks the Prefect API for the state of each one's flow
run, and terminates those whose run is over (completed, failed, cancelled, crashed) or unknown.
Clusters without this project's tag, or whose run is still scheduled, pending, running or
being cancelled, are left alone. A terminated cluster's run credentials files, if its run
could not delete them, are deleted too. A table artifact lists each cluster and what was done.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from domain.emr import FLOW_RUN_TAG, cluster_verdict, tag_value
from pipeline_config.fields import NonEmptyStr
from tasks.aws import AwsClients
from tasks.emr import (
    active_clusters,
    delete_cluster_credentials,
    flow_run_states,
    terminate_cluster,
)

FLOW_NAME = "sweep-emr-clusters"


@flow(name=FLOW_NAME)
def sweep_emr_clusters(aws_block: NonEmptyStr = "aws", dry_run: bool = False) -> dict:
    """Terminate this project's clusters whose flow run is no longer running.

    Args:
        aws_block: Name of the prefect-aws `AwsCredentials` block of the account.
        dry_run: Only report what would be terminated.

    Returns:
        ``terminated`` and ``kept``: cluster id -> the reason.
    """
    logger = get_run_logger()
    clients = AwsClients.from_block(aws_block)
    clusters = active_clusters(clients)
    runs = [run for c in clusters if (run := tag_value(c["tags"], FLOW_RUN_TAG))]
    states = flow_run_states(sorted(set(runs))) if runs else {}
    terminated, kept, rows = {}, {}, []
    for cluster in clusters:
        run = tag_value(cluster["tags"], FLOW_RUN_TAG)
        verdict = cluster_verdict(
            cluster["id"], cluster["name"], cluster["tags"], states.get(run) if run else None
        )
        done = "kept"
        if verdict.action == "terminate":
            done = "would terminate" if dry_run else terminate_cluster(clients, verdict.cluster_id)
            if not dry_run:  # a killed run's credentials files too, if any were left
                delete_cluster_credentials(clients, verdict.cluster_id)
            terminated[verdict.cluster_id] = verdict.reason
            logger.warning("%s %s (%s): %s", done, verdict.cluster_id, verdict.name, verdict.reason)
        else:
            kept[verdict.cluster_id] = verdict.reason
        rows.append(
            {
                "cluster": verdict.cluster_id,
                "name": verdict.name,
                "flow_run": verdict.flow_run or "",
                "action": done,
                "reason": verdict.reason,
            }
        )
    create_table_artifact(
        key="emr-sweep",
        table=rows
        or [{"cluster": "", "name": "", "flow_run": "", "action": "none active", "reason": ""}],
        description=f"**{FLOW_NAME}**: {len(terminated)} terminated, {len(kept)} kept",
    )
    return {"terminated": terminated, "kept": kept}
