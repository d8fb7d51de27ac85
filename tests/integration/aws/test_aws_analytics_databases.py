"""setup-aws-analytics-databases against a real MariaDB standing in for RDS (and for the
edxapp server): the seed's databases and users, each connecting with its own password, the
grants they need and no more, reruns that change nothing, drift and rotation."""

from __future__ import annotations

import pymysql
import pytest

from blocks.database import MySqlDatabase
from flows.aws_analytics_databases import setup_aws_analytics_databases
from tests.bed.mariadb import TEST_PASSWORD, TEST_USER

pytestmark = pytest.mark.slow
ACCOUNT = "123456789012"  # moto's
PASSWORDS = {"analytics": "An4lytics-pw-7d1", "edxapp": "Edx4pp-pw-90c2", "edxapp_ro": "R0-pw-41aa"}


@pytest.fixture
def server(mariadb):
    def block(user, password, database):
        return MySqlDatabase(host="127.0.0.1", port=mariadb.port, username=user,
                             password=password, database=database)  # fmt: skip

    block(TEST_USER, TEST_PASSWORD, "mysql").save("test-rds-master", overwrite=True)
    block("analytics", PASSWORDS["analytics"], "reports").save("test-analytics", overwrite=True)
    block("edxapp", PASSWORDS["edxapp"], "dashboard").save("test-migration", overwrite=True)
    block("edxapp_ro", PASSWORDS["edxapp_ro"], "edxapp").save("test-readonly", overwrite=True)
    mariadb.root_sql("CREATE DATABASE edxapp; CREATE TABLE edxapp.auth_user (id INT);"
                     "INSERT INTO edxapp.auth_user VALUES (1);")  # fmt: skip
    return mariadb


def run(**options):
    state = setup_aws_analytics_databases(
        analytics_server_block="test-rds-master", analytics_user_block="test-analytics",
        migration_user_block="test-migration", edxapp_server_block="test-rds-master",
        readonly_user_block="test-readonly", return_state=True, **options,
    )  # fmt: skip
    assert state.is_completed(), state.message
    result = state.result()
    assert result.pop("server").startswith("127.0.0.1:")
    return result


def connect(server, user, database=None):
    return pymysql.connect(
        host="127.0.0.1", port=server.port, user=user, password=PASSWORDS[user],
        database=database, autocommit=True,
    )  # fmt: skip


def test_databases_and_users_as_the_seed_makes_them(server, caplog):
    done = run()
    assert "CREATE DATABASE `analytics-api` DEFAULT CHARACTER SET utf8" in done["analytics"]
    assert "create user `analytics`@'%'" in done["analytics"]
    assert done["edxapp"][0] == "create user `edxapp_ro`@'%'"
    charsets = server.root_sql(
        "SELECT schema_name, default_character_set_name FROM information_schema.schemata "
        "WHERE schema_name IN ('dashboard', 'analytics-api', 'reports')"
    )
    assert sorted(charsets.split("\n")[1:-1]) == [
        "analytics-api\tutf8mb3", "dashboard\tutf8mb3", "reports\tutf8mb3",
    ]  # fmt: skip
    # each user connects with its own password; analytics and edxapp write the three
    for user in ("analytics", "edxapp"):
        for database in ("dashboard", "analytics-api", "reports"):
            with connect(server, user, database) as conn, conn.cursor() as cursor:
                cursor.execute(f"CREATE TABLE IF NOT EXISTS t_{user} (id INT)")
                cursor.execute(f"INSERT INTO t_{user} VALUES (1)")
    with (
        connect(server, "analytics") as conn,
        conn.cursor() as cursor,
        pytest.raises(pymysql.err.OperationalError),
    ):
        cursor.execute("SELECT * FROM edxapp.auth_user")
    with connect(server, "edxapp_ro", "edxapp") as conn, conn.cursor() as cursor:
        cursor.execute("SELECT id FROM auth_user")
        assert cursor.fetchall() == ((1,),)
        with pytest.raises(pymysql.err.OperationalError):
            cursor.execute("INSERT INTO auth_user VALUES (2)")
    assert run() == {"analytics": [], "edxapp": []}
    assert not [p for p in PASSWORDS.values() if p in caplog.text]


def test_drift_is_fixed_and_passwords_change_only_on_rotation(server):
    run()
    server.root_sql("REVOKE ALL PRIVILEGES ON `reports`.* FROM 'analytics'@'%';"
                    "GRANT SELECT ON `mysql`.* TO 'analytics'@'%';"
                    "GRANT INSERT ON *.* TO 'edxapp_ro'@'%';")  # fmt: skip
    done = run()
    assert done["analytics"] == [
        "grant ALL PRIVILEGES on `reports`.* to `analytics`@'%'",
        "revoke SELECT on `mysql`.* from `analytics`@'%'",
    ]
    assert done["edxapp"] == ["revoke INSERT on *.* from `edxapp_ro`@'%'"]
    assert run() == {"analytics": [], "edxapp": []}
    # a new password in the block is not set by a plain rerun, only by a rotation
    PASSWORDS["analytics"], old = "An4lytics-pw-new-2", PASSWORDS["analytics"]
    try:
        MySqlDatabase(host="127.0.0.1", port=server.port, username="analytics",
                      password=PASSWORDS["analytics"], database="reports").save(
            "test-analytics", overwrite=True)  # fmt: skip
        assert run()["analytics"] == []
        with pytest.raises(pymysql.err.OperationalError):
            connect(server, "analytics")
        assert "set a new password for `analytics`@'%'" in run(rotate_passwords=True)["analytics"]
        connect(server, "analytics").close()
    finally:
        PASSWORDS["analytics"] = old


def test_the_site_rds_endpoint_from_aws_is_where_the_databases_go(
    server, account, aws, monkeypatch, caplog
):
    """The site's RDS instance on moto answers at the bed's MariaDB: the flow finds it by the
    site alone (endpoint from AWS, the site's master user, the password from its block)."""
    from moto.rds.models import DBInstance, rds_backends

    from flows.aws_analytics import deploy_aws_analytics
    from tests.integration.aws.conftest import BLOCK, RDS_PASSWORD, site_of

    monkeypatch.setattr(DBInstance, "address", property(lambda db: "127.0.0.1"))
    server.root_sql(
        f"CREATE USER 'rdsmaster'@'%' IDENTIFIED BY '{RDS_PASSWORD}';"
        "GRANT ALL PRIVILEGES ON *.* TO 'rdsmaster'@'%' WITH GRANT OPTION;"
    )
    site = site_of(account, rds={**account["rds"], "master_username": "rdsmaster"})
    deployed = deploy_aws_analytics(site=site, aws_block=BLOCK, poll_interval_seconds=0.1,
                                    timeout_seconds=60)  # fmt: skip
    assert deployed["outputs"]["rds_endpoint"] == "127.0.0.1"
    rds_backends[ACCOUNT][aws.region].databases["client-name-analytics"].port = server.port

    def run_on_site(**options):
        state = setup_aws_analytics_databases(
            site=site, aws_block=BLOCK, analytics_user_block="test-analytics",
            migration_user_block="test-migration", edxapp_server_block=None,
            return_state=True, **options,
        )  # fmt: skip
        assert state.is_completed(), state.message
        return state.result()

    done = run_on_site()
    assert done["server"] == f"127.0.0.1:{server.port}"
    assert "create user `analytics`@'%'" in done["analytics"]
    with connect(server, "analytics", "reports") as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE written (id INT)")
    assert run_on_site()["analytics"] == []
    assert RDS_PASSWORD not in caplog.text and PASSWORDS["analytics"] not in caplog.text
    # an RDS instance that is not there is named, and nothing is tried
    aws.client("rds").delete_db_instance(DBInstanceIdentifier="client-name-analytics",
                                         SkipFinalSnapshot=True)  # fmt: skip
    state = setup_aws_analytics_databases(site=site, aws_block=BLOCK, return_state=True)
    with pytest.raises(LookupError, match="has no RDS instance 'client-name-analytics'"):
        state.result()


def test_the_site_and_a_server_block_are_one_or_the_other(account):
    from tests.integration.aws.conftest import site_of

    for options in ({}, {"site": site_of(account), "analytics_server_block": "x"}):
        state = setup_aws_analytics_databases(return_state=True, **options)
        with pytest.raises(ValueError, match="give the site .its RDS instance. or "
                           "analytics_server_block"):  # fmt: skip
            state.result()
