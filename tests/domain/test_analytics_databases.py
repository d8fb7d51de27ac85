"""The analytics databases and users plan (domain.analytics_databases), on MariaDB's own
`SHOW GRANTS` lines."""

from __future__ import annotations

import pytest

from domain.analytics_databases import (
    analytics_users,
    database_statements,
    parse_grants,
    plan_user,
    readonly_user,
)
from pipeline.errors import InvalidInput

# MariaDB 10.11's SHOW GRANTS FOR 'analytics'@'%' after the seed's SQL
SEED_GRANTS = [
    "GRANT USAGE ON *.* TO `analytics`@`%` IDENTIFIED BY PASSWORD "
    "'*0D3CED9BEC10A777AEC23CCC353A8C08A633045E'",
    "GRANT ALL PRIVILEGES ON `reports`.* TO `analytics`@`%`",
    "GRANT ALL PRIVILEGES ON `dashboard`.* TO `analytics`@`%`",
    "GRANT ALL PRIVILEGES ON `analytics-api`.* TO `analytics`@`%`",
]


def test_grants_are_read_without_the_password_hash():
    grants = parse_grants(SEED_GRANTS)
    assert grants == {
        "`reports`.*": frozenset({"ALL PRIVILEGES"}),
        "`dashboard`.*": frozenset({"ALL PRIVILEGES"}),
        "`analytics-api`.*": frozenset({"ALL PRIVILEGES"}),
    }
    assert "0D3CED9B" not in repr(grants)
    assert parse_grants(["GRANT SELECT, INSERT ON *.* TO `x`@`%`"]) == {
        "*.*": frozenset({"SELECT", "INSERT"})
    }


def test_the_seeds_users_as_they_are_need_nothing():
    analytics, migration = analytics_users("analytics", "edxapp")
    assert not plan_user(analytics, parse_grants(SEED_GRANTS)).changes
    assert migration.name == "edxapp" and migration.grants == analytics.grants


def test_a_missing_user_is_created_with_its_grants_and_a_password_parameter():
    plan = plan_user(readonly_user("edxapp_ro"), None)
    assert plan.describe() == [
        "create user `edxapp_ro`@'%'",
        "grant SELECT on *.* to `edxapp_ro`@'%'",
    ]
    assert plan.statements() == [
        ("CREATE USER `edxapp_ro`@'%%' IDENTIFIED BY %s", ("password",)),
        ("GRANT SELECT ON *.* TO `edxapp_ro`@'%'", ()),
    ]


def test_drift_is_granted_and_revoked_and_rotation_sets_the_password():
    analytics, _ = analytics_users("analytics", "edxapp")
    current = parse_grants(SEED_GRANTS[:2] + ["GRANT SELECT ON `mysql`.* TO `analytics`@`%`"])
    plan = plan_user(analytics, current, rotate=True)
    assert plan.describe() == [
        "set a new password for `analytics`@'%'",
        "grant ALL PRIVILEGES on `analytics-api`.* to `analytics`@'%'",
        "grant ALL PRIVILEGES on `dashboard`.* to `analytics`@'%'",
        "revoke SELECT on `mysql`.* from `analytics`@'%'",
    ]
    assert plan.statements()[0] == ("ALTER USER `analytics`@'%%' IDENTIFIED BY %s", ("password",))
    # more than SELECT on the edxapp server: ALL comes off, SELECT goes back
    readonly = plan_user(readonly_user("edxapp_ro"), {"*.*": frozenset({"ALL PRIVILEGES"})})
    assert readonly.revoke == {"*.*": frozenset({"ALL PRIVILEGES"})}
    assert readonly.grant == {"*.*": frozenset({"SELECT"})}


def test_missing_databases_are_created_utf8():
    assert database_statements(["reports", "mysql"]) == [
        "CREATE DATABASE `dashboard` DEFAULT CHARACTER SET utf8",
        "CREATE DATABASE `analytics-api` DEFAULT CHARACTER SET utf8",
    ]


@pytest.mark.parametrize("name", ["ana`lytics", "a b", "", "x'; DROP"])
def test_names_that_would_need_escaping_are_refused(name):
    with pytest.raises(InvalidInput, match="letters, digits"):
        analytics_users(name, "edxapp")
