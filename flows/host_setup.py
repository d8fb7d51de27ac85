"""Setting up the analytics node over SSH, without Ansible: ``setup-analytics-host``.

The story, each step checking before it changes anything and reporting ok/changed:
1. host keys: the key each server presents is compared with the SSH block's known_hosts, or,
   for a new server, with the fingerprints cloud-init printed on its Nova console (trust on
   first use only when asked); a changed key stops the run. New keys are saved into the block.
2. the deploy key in `authorized_keys` (ssh-copy-id), and the key pair copied to the node
   (the seed's `scp ~/.ssh/id_rsa*`), 0600, the private key coming from a block;
3. `override.cfg` rendered from typed settings, and the database credentials files (0600)
   it names, from MySQL blocks;
4. the pipeline's virtualenv `<base>/<remote-name>/venv` (this project, or a git branch);
5. optionally, the Insights migration fix (`manage.py migrate --run-syncdb`).
A table artifact lists every step.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from blocks.openstack import OpenStackCloud
from blocks.ssh import SshIdentity
from domain.names import artifact_key, is_address
from pipeline.errors import InvalidInput
from pipeline_config.fields import NonEmptyStr
from pipeline_config.render import OverrideSettings
from remote.setup import PipelineSetup
from tasks.host_setup import (
    InsightsMigration,
    KeyDistribution,
    StepResult,
    publish_steps,
    run_setup_steps,
    verify_and_record_host_key,
)
from tasks.openstack import ServerInfo, find_server
from tasks.parameters import fill_from_deployment

FLOW_NAME = "setup-analytics-host"


class HostAccess(BaseModel):
    """How the node is found and reached, and how far its host key is trusted."""

    openstack_block: NonEmptyStr | None = Field(
        default="openstack",
        description="OpenStack Cloud block: finds the server and reads its console log for "
        "the host key fingerprints. None: no cloud (then `address` is required).",
    )
    ssh_block: NonEmptyStr = Field(
        default="analytics-ssh",
        description="SSH Identity block the flow logs in with; verified host keys are saved "
        "into its known_hosts.",
    )
    network: NonEmptyStr | None = Field(default=None, description="Network of the fixed address.")
    address: NonEmptyStr | None = Field(default=None, description="Reach the node here instead.")
    trust_on_first_use: bool = Field(
        default=False,
        description="Accept a new host key the console log cannot confirm (no fingerprints "
        "there). A key contradicting the console or known_hosts is refused regardless.",
    )
    also_verify: list[NonEmptyStr] = Field(
        default=[],
        description="Other servers (names or ids, e.g. the backends) whose host keys are "
        "verified and recorded too.",
    )
    host_key_timeout_seconds: float = Field(
        default=15, gt=0, description="Seconds to reach each server and read its host key."
    )


@flow(name=FLOW_NAME)
def setup_analytics_host(
    server: NonEmptyStr,
    access: HostAccess = HostAccess(),  # noqa: B008 - read-only parameter models (UI forms)
    keys: KeyDistribution = KeyDistribution(),  # noqa: B008
    pipeline: PipelineSetup = PipelineSetup(),  # noqa: B008
    override: OverrideSettings | None = None,
    database_credentials: dict[NonEmptyStr, NonEmptyStr] | None = None,
    insights: InsightsMigration = InsightsMigration(),  # noqa: B008
) -> list[dict]:
    """Bring the analytics node to the wanted state; every step reports ok or changed.

    Args:
        server: The analytics node: Nova server name or id (its address, when there is no
            cloud block).
        access: Blocks, address, and host-key trust (console log; trust on first use).
        keys: The deploy key block and where its public key and key pair go.
        pipeline: The pipeline virtualenv (base dir, remote name, source, installer).
        override: Settings rendered into `<base>/<remote-name>/override.cfg` (None: skip).
        database_credentials: Credentials files to write (0600): path on the node -> MySQL
            Database block name (the paths override.cfg's `credentials` name).
        insights: The optional Insights migration fix.

    Returns:
        One row per step: step, host, status (ok/changed), detail.
    """
    access, keys, pipeline, override, insights = fill_from_deployment(
        access=access, keys=keys, pipeline=pipeline, override=override, insights=insights
    )
    logger = get_run_logger()
    identity = SshIdentity.load(access.ssh_block)
    results: list[StepResult] = []
    try:
        conn = (
            OpenStackCloud.load(access.openstack_block).get_client()
            if access.openstack_block
            else None
        )
        stored = known_hosts = identity.known_hosts
        try:
            targets = _targets(conn, server, access)
            for server_id, address in targets:
                identity.known_hosts = known_hosts
                step, known_hosts = verify_and_record_host_key(
                    conn, identity, server_id, address, access.trust_on_first_use,
                    access.host_key_timeout_seconds,
                )  # fmt: skip
                results.append(step)
        finally:
            if conn is not None:
                conn.close()
            # keys verified before a refused one are kept: they were verified
            identity.known_hosts = known_hosts
            if known_hosts != stored:
                identity.save(access.ssh_block, overwrite=True)
                logger.info("saved the verified host keys into SSH block %r", access.ssh_block)
        host = targets[0][1]

        run_setup_steps(
            identity, host, keys, pipeline, override, database_credentials, insights, results
        )
    finally:
        publish(server, results)
    changed = sum(r.status == "changed" for r in results)
    logger.info("%s: %d steps, %d changed", server, len(results), changed)
    return [r.__dict__ for r in results]


def _targets(conn, server: str, access: HostAccess) -> list[tuple[str | None, str]]:
    """(server id or None, address) of the node, then of `also_verify`."""
    if conn is None:
        if not access.address and not is_address(server):
            raise InvalidInput(
                f"no OpenStack block: give the address of {server!r} in access.address"
            )
        return [(None, access.address or server)] + [(None, a) for a in access.also_verify]
    found: list[ServerInfo] = [find_server(conn, server)]
    found += [find_server(conn, other) for other in access.also_verify]
    targets = [(s.id, s.address(access.network)) for s in found]
    if access.address:
        targets[0] = (targets[0][0], access.address)
    return targets


def publish(server: str, results: list[StepResult]) -> None:
    """The step table; a failure here must not hide the run's own error."""
    publish_steps(f"host-setup-{artifact_key(server, 'host')}", f"**{FLOW_NAME}** of {server}",
                  results)  # fmt: skip
