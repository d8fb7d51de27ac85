"""The AWS analytics site of seed 004 as a Prefect flow: ``deploy-aws-analytics``.

The story: read what AWS has for every resource the site needs (``domain.aws_site``), plan
(``domain.aws_plan``: create, update with each attribute old -> new, replace, unchanged; drift
on the security groups included), publish the plan as a table artifact, refuse it if it opens
what must stay closed (the lint) or replaces something without ``allow_replace``, then apply
in dependency order, waiting where AWS is asynchronous; the IAM users' access keys go
straight into ``AwsCredentials`` blocks (``<client>-analytics-elasticsearch``, ...; a rerun
creates no key). Then publish and return the outputs
(endpoints, ARNs, public IP, security-group ids), read back from AWS, with the instances as
an inventory (analytics servers and the director, ``domain.inventory``).

A rerun on an applied site plans nothing and changes nothing. Secrets never pass through
here: the credentials are an ``AwsCredentials`` block, the RDS master password a ``Secret``
block named in the site's settings.
"""

from __future__ import annotations

import json

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from domain.aws_plan import check_replacements, diff_site, lint_plan, site_inventory, site_outputs
from domain.aws_site import ES_USER, REPORTS_USER, AwsSite, desired_resources
from domain.inventory import ANALYTICS_INI_GROUPS, render_ini, render_json
from domain.names import artifact_key
from pipeline_config.fields import NonEmptyStr
from tasks.aws import (
    apply_item,
    ensure_access_key_block,
    open_site,
    read_site_state,
    site_public_keys,
)

FLOW_NAME = "deploy-aws-analytics"


@flow(name=FLOW_NAME)
def deploy_aws_analytics(
    site: AwsSite,
    aws_block: NonEmptyStr = "aws",
    allow_replace: bool = False,
    timeout_seconds: float = 1800,
    poll_interval_seconds: float = 10,
) -> dict:
    """Plan, then create or correct the site's AWS resources; return the outputs.

    Args:
        site: The site's settings (see `deployments/example-aws-site.yaml`).
        aws_block: Name of the prefect-aws `AwsCredentials` block of the account.
        allow_replace: Carry out a plan that deletes and recreates an instance (an attribute
            AWS cannot change in place, such as the image); otherwise such a plan is refused.
        timeout_seconds: How long each wait may take (instance running, RDS available,
            Elasticsearch active).
        poll_interval_seconds: Pause between two status reads while waiting.

    Returns:
        ``summary``, ``changes`` (one line per changed resource), ``outputs``, and the
        instances as an inventory: ``analytics_ini`` (the seed's form) and ``inventory_json``.
    """
    logger = get_run_logger()
    clients, ctx = open_site(aws_block, site, timeout_seconds, poll_interval_seconds)
    resources = desired_resources(site, ctx.account_id, site_public_keys(site))
    plan = diff_site(site.client, resources, read_site_state(clients, ctx, resources))
    key = artifact_key(site.client, "site")
    create_table_artifact(
        key=f"aws-plan-{key}", table=plan.table(), description=f"**{FLOW_NAME}** plan: "
        f"{plan.summary()}",
    )  # fmt: skip
    logger.info("plan: %s", plan.summary())
    lint_plan(plan)
    check_replacements(plan, allow_replace)
    for item in plan.pending():
        apply_item(clients, ctx, item)
    users = [ES_USER] + ([REPORTS_USER] if site.reports_bucket else [])
    key_blocks = {user: ensure_access_key_block(clients, ctx, user) for user in users}
    applied = read_site_state(clients, ctx, resources)
    outputs = {**site_outputs(site, applied), "access_key_blocks": key_blocks}
    inventory = site_inventory(site, applied)
    analytics_ini = render_ini(inventory, ANALYTICS_INI_GROUPS)
    create_markdown_artifact(
        key=f"aws-outputs-{key}",
        markdown=f"## Site {site.client}: outputs\n\n```json\n"
        f"{json.dumps(outputs, indent=2, sort_keys=True)}\n```\n\n"
        f"### analytics.ini\n\n```ini\n{analytics_ini}```\n",
        description=f"{FLOW_NAME}: outputs of {site.client}",
    )
    return {
        "summary": plan.summary(),
        "changes": [
            f"{item.action} {item.resource.kind} {item.resource.name}"
            + "".join(f"; {c.describe()}" for c in item.changes)
            for item in plan.pending()
        ],
        "outputs": outputs,
        "analytics_ini": analytics_ini,
        "inventory_json": render_json(inventory),
    }
