"""`remote-task --job-flow-id J` / `--job-flow-name NAME`: an EMR cluster's master as the host.

`find_master` asks EMR for the cluster (by id, or the newest cluster of that name that is not
terminated, as upstream's remote-task does) and its master node: the address SSH goes to
(`MasterPublicDnsName`) and the EC2 instance, whose console output holds cloud-init's host key
fingerprints. `master_host_keys` then decides whether the master's key is trusted: the
operator's known_hosts first; a master not listed there must present a key matching those
fingerprints (`remote.host_keys.verify_host_key`), else it is refused before any login.
Prefect-free: boto3 clients from the standard AWS chain (environment, profile, instance role).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import paramiko

from domain.emr import ACTIVE_STATES
from domain.names import known_hosts_label
from pipeline.errors import NotFound, OperationFailed
from remote.host_keys import FLOW_REMEDY, HostKeyCheck, parse_console_keys, verify_host_key
from remote.ssh import fetch_host_key, known_host_keys


class EmrClusterNotFound(NotFound):
    """No cluster of that id or name that is not terminated."""


class EmrMasterUnavailable(OperationFailed):
    """The cluster has no reachable master yet (still starting) or EMR would not say."""


@dataclass(frozen=True)
class EmrMaster:
    """An EMR cluster's master node, as remote-task reaches it."""

    cluster_id: str
    cluster_name: str
    state: str
    host: str
    instance_id: str | None


def _cluster(emr: Any, cluster_id: str) -> dict:
    try:
        return emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    except emr.exceptions.InvalidRequestException:
        raise EmrClusterNotFound(f"--job-flow-id {cluster_id}: EMR has no such cluster") from None


def _newest_named(emr: Any, name: str) -> dict:
    found = []
    for page in emr.get_paginator("list_clusters").paginate(ClusterStates=list(ACTIVE_STATES)):
        found += [c for c in page["Clusters"] if c.get("Name") == name]
    if not found:
        raise EmrClusterNotFound(
            f"--job-flow-name {name!r}: no cluster of that name that is not "
            f"terminated (states {', '.join(ACTIVE_STATES)})"
        )
    newest = max(found, key=lambda c: c["Status"]["Timeline"]["CreationDateTime"])
    return _cluster(emr, newest["Id"])


def find_master(emr: Any, *, job_flow_id: str | None = None, name: str | None = None) -> EmrMaster:
    """The master of cluster `job_flow_id`, or of the newest active cluster named `name`.

    Raises:
        EmrClusterNotFound: no such cluster, or it is terminated.
        EmrMasterUnavailable: the cluster has no master address yet.
    """
    cluster = _cluster(emr, job_flow_id) if job_flow_id else _newest_named(emr, name or "")
    state = cluster["Status"]["State"]
    what = f"EMR cluster {cluster['Id']} ({cluster.get('Name', '')})"
    if state not in ACTIVE_STATES:
        raise EmrClusterNotFound(f"{what} is {state}: nothing to run on")
    host = cluster.get("MasterPublicDnsName")
    if not host:
        raise EmrMasterUnavailable(
            f"{what} is {state} and has no master address yet: wait until it is WAITING or RUNNING"
        )
    masters = emr.list_instances(ClusterId=cluster["Id"], InstanceGroupTypes=["MASTER"])
    instance = next((i.get("Ec2InstanceId") for i in masters.get("Instances", [])), None)
    return EmrMaster(cluster["Id"], cluster.get("Name", ""), state, host, instance)


def console_output(ec2: Any, instance_id: str | None) -> str:
    """The master instance's console output (boto3 decodes it); empty when there is none."""
    if not instance_id:
        return ""
    return str(ec2.get_console_output(InstanceId=instance_id).get("Output") or "")


def master_host_keys(
    master: EmrMaster,
    port: int,
    trusted: paramiko.HostKeys,
    console_text: str,
    *,
    timeout: float = 15,
    remedy: str = FLOW_REMEDY,
) -> HostKeyCheck | None:
    """Trust the master's key: listed in `trusted` already (None: the login checks it), or
    matching the console's cloud-init fingerprints, then added to `trusted` for this run.

    Raises:
        HostKeyNotVerified: not in known_hosts and the console does not vouch for the key.
        SshConnectFailed: the master cannot be reached for its key.
    """
    label = known_hosts_label(master.host, port)
    if known_host_keys(trusted, label):
        return None
    presented = fetch_host_key(master.host, port, timeout)
    verdict = verify_host_key(
        master.host, port, presented, trusted, parse_console_keys(console_text), remedy=remedy
    )
    trusted.add(label, presented.get_name(), presented)
    return verdict
