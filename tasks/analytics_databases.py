"""Prefect tasks creating the analytics databases and users over PyMySQL (seed 004's SQL).

The plan comes from `domain.analytics_databases`; these tasks read the server (existing
databases, `SHOW GRANTS`) and run the statements. Passwords come from `MySqlDatabase` blocks
and reach the server as query parameters only: never in SQL text, a log line or a result.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.database import MySqlDatabase
from domain.analytics_databases import UserGrants, database_statements, parse_grants, plan_user
from pipeline.errors import OperationFailed

#: MySQL/MariaDB: "There is no such grant defined for user" -> the user does not exist.
NO_SUCH_GRANT = 1141


class DatabaseSetupFailed(OperationFailed):
    """The server refused a statement; the message names the step, never a password."""


def _grants(cursor, user: UserGrants) -> dict[str, frozenset[str]] | None:
    import pymysql

    try:
        cursor.execute(f"SHOW GRANTS FOR {user.account}")
    except pymysql.err.OperationalError as error:
        if error.args and error.args[0] == NO_SUCH_GRANT:
            return None
        raise
    return parse_grants(row[0] for row in cursor.fetchall())


@task(name="ensure-analytics-databases", cache_policy=NO_CACHE, timeout_seconds=300,
      task_run_name="databases and users on {admin.host}")  # fmt: skip
def ensure_databases_and_users(
    admin: MySqlDatabase,
    users: list[tuple[UserGrants, MySqlDatabase]],
    *,
    create_databases: bool,
    rotate: bool = False,
) -> list[str]:
    """Create the missing databases (when `create_databases`) and users, fix their grants.

    Args:
        admin: The server's administrative login (the RDS master user).
        users: Each user's wanted grants and the block holding its password.
        create_databases: Create `dashboard`, `analytics-api` and `reports` if missing.
        rotate: Set every user's password from its block even when the user exists.

    Returns:
        What was done, one line per change (empty: nothing to do).
    """
    import pymysql

    logger = get_run_logger()
    done: list[str] = []
    connection = admin.connect(read_timeout=60)
    try:
        with connection.cursor() as cursor:
            if create_databases:
                cursor.execute("SHOW DATABASES")
                for statement in database_statements(row[0] for row in cursor.fetchall()):
                    cursor.execute(statement)
                    done.append(statement)
            for user, block in users:
                plan = plan_user(user, _grants(cursor, user), rotate=rotate)
                password = block.password.get_secret_value()
                for (sql, marks), said in zip(plan.statements(), _said(plan), strict=True):
                    try:
                        cursor.execute(sql, tuple(password for _ in marks) or None)
                    except pymysql.err.MySQLError as error:
                        raise DatabaseSetupFailed(
                            f"{said} on {admin.host} failed: MySQL error {error.args[0]}"
                        ) from None
                done += plan.describe()
    finally:
        connection.close()
    for line in done:
        logger.info("%s: %s", admin.host, line)
    if not done:
        logger.info("%s: databases and users as wanted; nothing to do", admin.host)
    return done


def _said(plan) -> list[str]:
    """One description per statement of `plan`, in the statements' order."""
    account = plan.user.account
    said = []
    if plan.create:
        said.append(f"create user {account}")
    elif plan.set_password:
        said.append(f"set the password of {account}")
    said += [f"revoke on {s} from {account}" for s in sorted(plan.revoke)]
    said += [f"grant on {s} to {account}" for s in sorted(plan.grant)]
    return said
