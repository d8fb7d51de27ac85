"""Upstream's enrollment acceptance case, reproduced through launch-task.

ImportEnrollmentsIntoMysql alone over 2014-07-30..2014-08-07 with --overwrite-n-days 7 on
upstream's own tracking log and LMS rows, against a real MariaDB and against the default SQLite
file; the result tables and the enrollment summary must equal upstream's expected rows exactly,
with the course catalog disabled and with it served by a discovery API over HTTP.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import shutil
import sqlite3

import pytest

from tests.lms import DATA, load_lms_mariadb, load_lms_sqlite
from tests.pipeline.conftest import Workspace

pytestmark = pytest.mark.usefixtures("engine")  # each test on both engines

CATALOG_DATE = "2016-09-08"
SECRET = "s3cret-client-value"
TABLES = {
    "course_enrollment_daily": "course_enrollment_daily.tsv",
    "course_enrollment_mode_daily": "course_enrollment_mode_daily.tsv",
    "course_enrollment_gender_daily": "course_enrollment_gender_daily.tsv",
    "course_enrollment_birth_year_daily": "course_enrollment_birth_year_daily.tsv",
    "course_enrollment_education_level_daily": "course_enrollment_education_level_daily.tsv",
    "course_meta_summary_enrollment": "course_meta_summary_enrollment.catalog_disabled.tsv",
}
META = "course_meta_summary_enrollment"
INTERVAL = "2014-07-30-2014-08-07"


META_WITH_CATALOG = "course_meta_summary_enrollment.catalog_enabled.tsv"


def expected_rows(table: str, catalog: bool = False) -> tuple[list[str], list[tuple[str, ...]]]:
    name = META_WITH_CATALOG if catalog and table == META else TABLES[table]
    lines = (DATA / "expected_mysql" / name).read_text().splitlines()
    header = lines[0].split("\t")
    return header, sorted(tuple(line.split("\t")) for line in lines[1:])


def course_runs() -> list[dict]:
    text = (DATA / "input" / "course_runs.json").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def serve_catalog(workspace: Workspace, discovery, name: str = "catalog.cfg") -> tuple:
    """The fixture's course runs behind OAuth2, two per page; the config file naming them."""
    api = discovery(course_runs(), client_id="pipeline", client_secret=SECRET)
    config = workspace.root / name
    config.write_text(
        "[course-summary-enrollment]\nenable_course_catalog = true\n"
        f"[course-catalog-api]\napi_root_url = {api.api_root_url}\npage_size = 2\n"
        f"[edx-rest-api]\nauth_url = {api.auth_url}\nclient_id = pipeline\n"
        f"client_secret = {SECRET}\n"
    )
    return api, config


def check_catalog_served(workspace: Workspace, api, result) -> None:
    """Every page was fetched with a token; neither the secret nor a token was printed."""
    pages = api.page_requests()
    assert [r.query.get("offset", "0") for r in pages] == ["0", "2"]
    assert all(r.authorization and r.authorization.startswith("JWT ") for r in pages)
    assert SECRET not in result.output
    assert not any(token in result.output for token in api.tokens)
    snapshot = workspace.root / "warehouse" / "discovery_api_raw" / f"dt={CATALOG_DATE}"
    assert len((snapshot / "course_runs.json").read_text().splitlines()) == 4


def as_text(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def prepare(workspace: Workspace) -> None:
    log = (DATA / "input" / "enrollment_trends_tracking.log").read_bytes()
    target = workspace.logs / "FakeServerGroup" / "tracking.log-20140730.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(gzip.compress(log))


def run_import(workspace: Workspace, *extra: str, env: dict | None = None):
    return workspace.launch(
        "ImportEnrollmentsIntoMysql",
        "--local-scheduler",
        "--interval",
        INTERVAL,
        "--overwrite-n-days",
        "7",
        *workspace.source_args(),
        "--expand-interval",
        "2 days",
        *extra,
        env=env,
    )


def check_summary(workspace: Workspace) -> None:
    """The enrollment summary ImportEnrollmentsIntoMysql wrote on its way."""
    part = (
        workspace.root / "warehouse" / "course_enrollment_summary" / "dt=2014-08-07" / "part-00000"
    )
    got = sorted(
        tuple("" if f == "\\N" else f for f in line.split("\t"))
        for line in part.read_text().splitlines()
    )
    with open(DATA / "output" / "acceptance_expected_d_user_course.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert sorted(tuple(row) for row in rows[1:]) == got


def check_sqlite(workspace: Workspace, catalog: bool = False) -> None:
    connection = sqlite3.connect(workspace.root / "reports.sqlite")
    for table in TABLES:
        header, expected = expected_rows(table, catalog)
        columns = ", ".join(f"`{c}`" for c in header)
        got = sorted(
            tuple(as_text(v) for v in row)
            for row in connection.execute(f"SELECT {columns} FROM `{table}`")
        )
        assert got == expected, table
    connection.close()


def test_acceptance_on_the_default_sqlite_database(workspace: Workspace):
    prepare(workspace)
    load_lms_sqlite(workspace.root / "edxapp.sqlite")
    result = run_import(workspace)
    assert result.returncode == 0, result.output
    check_sqlite(workspace)
    check_summary(workspace)
    assert not (workspace.root / "warehouse" / "discovery_api_raw").exists()


def test_acceptance_with_the_catalog_api_on_sqlite(workspace: Workspace, discovery):
    prepare(workspace)
    load_lms_sqlite(workspace.root / "edxapp.sqlite")
    api, config = serve_catalog(workspace, discovery)
    result = run_import(workspace, "--date", CATALOG_DATE, "--additional-config", str(config))
    assert result.returncode == 0, result.output
    check_sqlite(workspace, catalog=True)
    check_summary(workspace)
    check_catalog_served(workspace, api, result)


def check_mariadb(mariadb, catalog: bool = False) -> None:
    connection = mariadb.connect("reports")
    with connection.cursor() as cursor:
        for table in TABLES:
            header, expected = expected_rows(table, catalog)
            cursor.execute(f"SELECT {', '.join(f'`{c}`' for c in header)} FROM `{table}`")
            got = sorted(tuple(as_text(v) for v in row) for row in cursor.fetchall())
            assert got == expected, table
    connection.close()


def loads_marked(mariadb) -> list[str]:
    connection = mariadb.connect("reports")
    with connection.cursor() as cursor:
        cursor.execute("SELECT target_table FROM table_updates ORDER BY id")
        tables = [row[0] for row in cursor.fetchall()]
    connection.close()
    return tables


@pytest.mark.slow
def test_acceptance_on_mariadb(workspace: Workspace, mariadb, discovery):
    if shutil.which("mariadb") is None:  # pragma: no cover - the fixture fails first
        pytest.fail("mariadb client missing: apt-get install mariadb-server")
    prepare(workspace)
    load_lms_mariadb(mariadb, "edxapp")
    credentials = mariadb.write_credentials(workspace.root / "output.json")
    config = workspace.root / "acceptance.cfg"
    config.write_text(
        "[database-export]\ndatabase = reports\n"
        f"credentials = {credentials}\n"
        "[database-import]\ndatabase = edxapp\n"
        f"credentials = {credentials}\n"
    )
    result = run_import(workspace, "--additional-config", str(config))
    assert result.returncode == 0, result.output
    assert not (workspace.root / "reports.sqlite").exists()
    check_mariadb(mariadb)
    check_summary(workspace)
    markers = loads_marked(mariadb)
    # a second run with the same parameters finds every load done and changes nothing
    again = run_import(workspace, "--additional-config", str(config))
    assert again.returncode == 0, again.output
    assert loads_marked(mariadb) == markers
    assert json.loads(credentials.read_text())["password"] not in again.output
    # switching the catalog on reloads course_meta_summary_enrollment only, with its fields
    api, catalog_config = serve_catalog(workspace, discovery)
    with_catalog = run_import(
        workspace,
        "--date",
        CATALOG_DATE,
        "--additional-config",
        str(config),
        "--additional-config",
        str(catalog_config),
    )
    assert with_catalog.returncode == 0, with_catalog.output
    check_mariadb(mariadb, catalog=True)
    assert loads_marked(mariadb) == [*markers, META]
    check_catalog_served(workspace, api, with_catalog)


def test_missing_lms_database_is_named(workspace: Workspace):
    prepare(workspace)
    result = run_import(workspace)
    assert result.returncode != 0
    assert "edxapp.sqlite does not exist" in result.stderr
    # the failed loads are not marked done: nothing in the result database says otherwise
    reports = workspace.root / "reports.sqlite"
    if reports.exists():
        connection = sqlite3.connect(reports)
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
        if "table_updates" in tables:
            loaded = {r[0] for r in connection.execute("SELECT target_table FROM table_updates")}
            assert not loaded & {"course_enrollment_gender_daily", "course_meta_summary_enrollment"}


def test_bad_credentials_file_is_named_without_secrets(workspace: Workspace):
    prepare(workspace)
    load_lms_sqlite(workspace.root / "edxapp.sqlite")
    bad = workspace.root / "creds.json"
    bad.write_text(json.dumps({"host": "127.0.0.1", "password": "s3cret-value"}))
    result = run_import(workspace, "--credentials", str(bad))
    assert result.returncode != 0
    assert f"credentials {bad}: missing username" in result.stderr
    assert "s3cret-value" not in result.output
