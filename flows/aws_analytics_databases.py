"""The analytics databases and users of seed 004 on RDS: ``setup-aws-analytics-databases``.

On the analytics server: databases ``dashboard``, ``analytics-api`` and ``reports`` (utf8),
the ``analytics`` user and the migration user (the edxapp credentials) with all privileges on
the three. On the edxapp server: ``edxapp_ro`` with SELECT on everything. Idempotent: grants
are compared and fixed; passwords are set when a user is created, or for all of them with
``rotate_passwords``.

The analytics server is the site's RDS instance: its endpoint is read from AWS (what
deploy-aws-analytics returns as ``rds_endpoint``), its master login is the site's
``rds.master_username`` with the password of the Secret block the site names. A server the
site does not describe is given as a `MySqlDatabase` block instead. Every other login and
password comes from a `MySqlDatabase` block.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from blocks.database import MySqlDatabase
from domain.analytics_databases import analytics_users, readonly_user
from domain.aws_site import AwsSite
from pipeline.errors import InvalidInput
from pipeline_config.fields import NonEmptyStr
from tasks.analytics_databases import ensure_databases_and_users
from tasks.aws import AwsClients, rds_endpoint, rds_master_password

FLOW_NAME = "setup-aws-analytics-databases"


@flow(name=FLOW_NAME)
def setup_aws_analytics_databases(
    site: AwsSite | None = None,
    aws_block: NonEmptyStr = "aws",
    analytics_server_block: NonEmptyStr | None = None,
    analytics_user_block: NonEmptyStr = "analytics-rds-analytics",
    migration_user_block: NonEmptyStr = "analytics-rds-migration",
    edxapp_server_block: NonEmptyStr | None = "edxapp-rds-admin",
    readonly_user_block: NonEmptyStr | None = "edxapp-rds-readonly",
    rotate_passwords: bool = False,
) -> dict:
    """Create or correct the analytics databases and their users.

    Args:
        site: The site whose RDS instance holds the analytics databases (as given to
            deploy-aws-analytics): its endpoint is read from AWS, its master login is the
            site's master user and password block. None: `analytics_server_block` instead.
        aws_block: Name of the prefect-aws `AwsCredentials` block of the site's account.
        analytics_server_block: Instead of `site`: `MySqlDatabase` block of the analytics
            server's master login (host: its endpoint).
        analytics_user_block: Block of the `analytics` user (its name and password).
        migration_user_block: Block with the edxapp credentials, used for migrations.
        edxapp_server_block: Block of an administrative login on the edxapp server (None: skip
            the read-only user).
        readonly_user_block: Block of the read-only user (`edxapp_ro`) on the edxapp server.
        rotate_passwords: Set every user's password from its block, even for existing users.

    Returns:
        ``server`` (where the analytics databases are), ``analytics`` and ``edxapp``: what
        was done on each server (empty lists: nothing).

    Raises:
        InvalidInput: both or neither of `site` and `analytics_server_block`.
    """
    if (site is None) == (analytics_server_block is None):
        raise InvalidInput(
            "give the site (its RDS instance) or analytics_server_block, not "
            + ("both" if site else "neither")
        )
    if site is not None:
        endpoint = rds_endpoint(AwsClients.from_block(aws_block), site)
        get_run_logger().info("analytics server: RDS instance %s at %s:%d", endpoint.identifier,
                              endpoint.address, endpoint.port)  # fmt: skip
        server = MySqlDatabase(
            host=endpoint.address, port=endpoint.port, username=site.rds.master_username,
            password=rds_master_password(site), database="mysql",
        )  # fmt: skip
    else:
        server = MySqlDatabase.load(analytics_server_block)
    analytics = MySqlDatabase.load(analytics_user_block)
    migration = MySqlDatabase.load(migration_user_block)
    wanted = analytics_users(analytics.username, migration.username)
    result = {
        "server": f"{server.host}:{server.port}",
        "analytics": ensure_databases_and_users(
            server,
            [(wanted[0], analytics), (wanted[1], migration)],
            create_databases=True,
            rotate=rotate_passwords,
        ),  # fmt: skip
        "edxapp": [],
    }
    if edxapp_server_block and readonly_user_block:
        readonly = MySqlDatabase.load(readonly_user_block)
        result["edxapp"] = ensure_databases_and_users(
            MySqlDatabase.load(edxapp_server_block),
            [(readonly_user(readonly.username), readonly)],
            create_databases=False, rotate=rotate_passwords,
        )  # fmt: skip
    return result
