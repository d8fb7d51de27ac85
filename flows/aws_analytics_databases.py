"""The analytics databases and users of seed 004 on RDS: ``setup-aws-analytics-databases``.

On the analytics server: databases ``dashboard``, ``analytics-api`` and ``reports`` (utf8),
the ``analytics`` user and the migration user (the edxapp credentials) with all privileges on
the three. On the edxapp server: ``edxapp_ro`` with SELECT on everything. Idempotent: grants
are compared and fixed; passwords are set when a user is created, or for all of them with
``rotate_passwords``. Every login and password comes from a `MySqlDatabase` block.
"""

from __future__ import annotations

from prefect import flow

from blocks.database import MySqlDatabase
from domain.analytics_databases import analytics_users, readonly_user
from pipeline_config.fields import NonEmptyStr
from tasks.analytics_databases import ensure_databases_and_users

FLOW_NAME = "setup-aws-analytics-databases"


@flow(name=FLOW_NAME)
def setup_aws_analytics_databases(
    analytics_server_block: NonEmptyStr = "analytics-rds-master",
    analytics_user_block: NonEmptyStr = "analytics-rds-analytics",
    migration_user_block: NonEmptyStr = "analytics-rds-migration",
    edxapp_server_block: NonEmptyStr | None = "edxapp-rds-admin",
    readonly_user_block: NonEmptyStr | None = "edxapp-rds-readonly",
    rotate_passwords: bool = False,
) -> dict:
    """Create or correct the analytics databases and their users.

    Args:
        analytics_server_block: `MySqlDatabase` block of the analytics RDS instance's master
            login (host: its endpoint).
        analytics_user_block: Block of the `analytics` user (its name and password).
        migration_user_block: Block with the edxapp credentials, used for migrations.
        edxapp_server_block: Block of an administrative login on the edxapp server (None: skip
            the read-only user).
        readonly_user_block: Block of the read-only user (`edxapp_ro`) on the edxapp server.
        rotate_passwords: Set every user's password from its block, even for existing users.

    Returns:
        ``analytics`` and ``edxapp``: what was done on each server (empty lists: nothing).
    """
    analytics = MySqlDatabase.load(analytics_user_block)
    migration = MySqlDatabase.load(migration_user_block)
    wanted = analytics_users(analytics.username, migration.username)
    result = {
        "analytics": ensure_databases_and_users(
            MySqlDatabase.load(analytics_server_block),
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
