"""The AWS site's analytics instance set up over SSH: ``setup-aws-analytics-host``.

The story: find the site's analytics instance (by its `Name` and `site` tags), reach it at
its public address (the Elastic IP) or its private one; its host key, unless the SSH block's
known_hosts lists it already, must match the fingerprints cloud-init printed on the
instance's EC2 console output (the rule setup-analytics-host applies to Nova's console log;
trust on first use only when asked). A key that contradicts the console or known_hosts stops
the run before anything is done on the host. The verified key is saved into the SSH block,
then setup-analytics-host's own steps run: the deploy key and key pair, override.cfg, the
credentials files, the pipeline's virtualenv, the Insights migration fix, each ok/changed.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from blocks.ssh import SshIdentity
from domain.aws_site import AwsSite
from domain.names import artifact_key
from pipeline_config.fields import NonEmptyStr
from pipeline_config.render import OverrideSettings
from remote.setup import PipelineSetup
from tasks.aws import AwsClients, find_instance, verify_instance_host_key
from tasks.host_setup import (
    InsightsMigration,
    KeyDistribution,
    StepResult,
    publish_steps,
    run_setup_steps,
)
from tasks.parameters import fill_from_deployment

FLOW_NAME = "setup-aws-analytics-host"


class InstanceAccess(BaseModel):
    """Which instance, how it is reached, and how far its host key is trusted."""

    instance: NonEmptyStr | None = Field(
        default=None,
        description="The site's instance, by its `Name` tag (default: the first analytics "
        "instance, `analytics-1`).",
    )
    ssh_block: NonEmptyStr = Field(
        default="analytics-ssh",
        description="SSH Identity block the flow logs in with; the verified host key is saved "
        "into its known_hosts.",
    )
    address: Literal["public", "private"] = Field(
        default="public",
        description="Reach the instance at its public address (the Elastic IP) or its private "
        "one (from inside the VPC).",
    )
    trust_on_first_use: bool = Field(
        default=False,
        description="Accept a new host key the console output cannot confirm (no fingerprints "
        "there). A key contradicting the console or known_hosts is refused regardless.",
    )
    # Bounded so that the wait, the key's read and a last poll fit in the verify-aws-host-key
    # task's own 900 s timeout.
    console_wait_seconds: float = Field(
        default=600, ge=0, le=720,
        description="How long to wait for cloud-init's fingerprints to appear in the console "
        "output (EC2 publishes it some minutes after boot); at most 720.",
    )  # fmt: skip
    host_key_timeout_seconds: float = Field(
        default=15, gt=0, le=60,
        description="Seconds to reach the instance and read its host key (at most 60).",
    )  # fmt: skip
    poll_interval_seconds: float = Field(
        default=15, gt=0, le=60,
        description="Pause between two reads of the console output (at most 60).",
    )  # fmt: skip


@flow(name=FLOW_NAME)
def setup_aws_analytics_host(
    site: AwsSite,
    aws_block: NonEmptyStr = "aws",
    access: InstanceAccess = InstanceAccess(),  # noqa: B008 - read-only parameter models
    keys: KeyDistribution = KeyDistribution(),  # noqa: B008
    pipeline: PipelineSetup = PipelineSetup(),  # noqa: B008
    override: OverrideSettings | None = None,
    database_credentials: dict[NonEmptyStr, NonEmptyStr] | None = None,
    insights: InsightsMigration = InsightsMigration(),  # noqa: B008
) -> list[dict]:
    """Verify the analytics instance's host key from its console output, then set it up.

    Args:
        site: The site's settings, as given to deploy-aws-analytics.
        aws_block: Name of the prefect-aws `AwsCredentials` block of the account.
        access: The instance, its address, the SSH block and the host-key trust.
        keys: The deploy key block and where its public key and key pair go.
        pipeline: The pipeline virtualenv (base dir, remote name, source, installer).
        override: Settings rendered into `<base>/<remote-name>/override.cfg` (None: skip).
        database_credentials: Credentials files to write (0600): path on the node -> MySQL
            Database block name.
        insights: The optional Insights migration fix.

    Returns:
        One row per step: step, host, status (ok/changed), detail.
    """
    access, keys, pipeline, override, insights = fill_from_deployment(
        access=access, keys=keys, pipeline=pipeline, override=override, insights=insights
    )
    logger = get_run_logger()
    name = access.instance or site.analytics_names[0]
    clients = AwsClients.from_block(aws_block)
    identity = SshIdentity.load(access.ssh_block)
    results: list[StepResult] = []
    try:
        instance = find_instance(clients, site, name)
        host = instance.address(access.address)
        step, known_hosts = verify_instance_host_key(
            clients, identity, instance, host, access.trust_on_first_use,
            access.host_key_timeout_seconds, access.console_wait_seconds,
            access.poll_interval_seconds,
        )  # fmt: skip
        results.append(step)
        if known_hosts != identity.known_hosts:
            identity.known_hosts = known_hosts
            identity.save(access.ssh_block, overwrite=True)
            logger.info("saved the verified host key into SSH block %r", access.ssh_block)
        run_setup_steps(
            identity, host, keys, pipeline, override, database_credentials, insights, results
        )
    finally:
        key = f"aws-host-setup-{artifact_key(site.client, 'site')}-{artifact_key(name, 'host')}"
        publish_steps(key, f"**{FLOW_NAME}** of {site.client} {name}", results)
    changed = sum(r.status == "changed" for r in results)
    logger.info("%s %s: %d steps, %d changed", site.client, name, len(results), changed)
    return [r.__dict__ for r in results]
