"""Tear the AWS analytics site down: ``destroy-aws-analytics``.

Reverse dependency order (Elastic IP, instances, RDS, Elasticsearch, buckets, groups, gateway,
IAM). Buckets holding objects and the RDS instance are kept unless ``force``; a forced RDS
delete takes a final snapshot first. What the site does not own (the VPC, EMR's groups and
role, buckets or a gateway that were there before, untagged) is left, with the rules and the
policy attachment the site added to EMR's groups and role taken off. The access keys the
deploy put into ``<client>-analytics-*`` blocks are deleted, and so are the blocks. The
teardown's table is published before anything is deleted; a second teardown does nothing.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from domain.aws_plan import destroy_plan, destroy_table
from domain.aws_site import ES_USER, REPORTS_USER, AwsSite, desired_resources
from domain.names import artifact_key
from pipeline_config.fields import NonEmptyStr
from tasks.aws import destroy_item, open_site, read_site_state, remove_access_key_block

FLOW_NAME = "destroy-aws-analytics"


@flow(name=FLOW_NAME)
def destroy_aws_analytics(
    site: AwsSite,
    aws_block: NonEmptyStr = "aws",
    force: bool = False,
    timeout_seconds: float = 1800,
    poll_interval_seconds: float = 10,
) -> dict:
    """Delete the site's AWS resources, keeping data unless forced.

    Args:
        site: The site's settings, as given to deploy-aws-analytics.
        aws_block: Name of the prefect-aws `AwsCredentials` block of the account.
        force: Also delete buckets holding objects (with the objects) and the RDS instance
            (after a final snapshot `<id>-final-YYYYmmddHHMM`).
        timeout_seconds: How long each wait may take (instance terminated, RDS or domain gone).
        poll_interval_seconds: Pause between two status reads while waiting.

    Returns:
        ``deleted``, ``kept`` (with the reason), ``left`` (what the site does not own) and
        ``access_key_blocks_removed`` (the `AwsCredentials` blocks of the IAM users' keys,
        deleted with their keys).
    """
    logger = get_run_logger()
    clients, ctx = open_site(aws_block, site, timeout_seconds, poll_interval_seconds)
    resources = desired_resources(site, ctx.account_id)
    items = destroy_plan(site.client, resources, read_site_state(clients, ctx, resources),
                         force=force)  # fmt: skip
    create_table_artifact(
        key=f"aws-destroy-{artifact_key(site.client, 'site')}", table=destroy_table(items),
        description=f"**{FLOW_NAME}** of {site.client}" + (" (forced)" if force else ""),
    )  # fmt: skip
    # the keys deploy-aws-analytics put into blocks go first, while their users exist
    removed = [
        name
        for user in (ES_USER, REPORTS_USER)
        if (name := remove_access_key_block(clients, ctx, user)) is not None
    ]
    for item in items:
        destroy_item(clients, ctx, item)

    def named(*actions: str) -> list[str]:
        return [f"{i.resource.kind} {i.resource.name}" for i in items if i.action in actions]

    result = {
        "deleted": named("delete"),
        "kept": {f"{i.resource.kind} {i.resource.name}": i.reason
                 for i in items if i.action == "keep"},
        "left": named("leave", "strip"),
        "access_key_blocks_removed": removed,
    }  # fmt: skip
    logger.info("site %s: %d deleted, %d kept", site.client, len(result["deleted"]),
                len(result["kept"]))  # fmt: skip
    return result
