"""The analytics-import flow on a real (test) Prefect server, with the real pipeline."""

import asyncio
import sqlite3

import pytest
from prefect.client.orchestration import get_client

from flows.analytics import Outputs, analytics_import
from pipeline.samples import SampleSpec, generate_lms_database, generate_logs

SPEC = SampleSpec(days=2, servers=2, lines_per_file=3000, users=300)


@pytest.fixture
def site(tmp_path, monkeypatch):
    generate_logs(tmp_path / "tracking-logs", SPEC)
    generate_lms_database(tmp_path / "edxapp.sqlite", SPEC)
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def artifacts_of(flow_run_id):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def test_daily_import_writes_report_and_tables_and_publishes_artifacts(site):
    state = analytics_import(interval="2016-03-01-2016-03-03", return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    # every generated line is an event of its own day, except the few junk lines mixed in
    assert summary["events"] == sum(row["events"] for row in summary["events_per_day"])
    assert [r["date"] for r in summary["events_per_day"]] == ["2016-03-01", "2016-03-02"]
    # every line read is either counted or discarded with a reason
    discarded = sum(summary["discards"].get("TotalEventsReportWorkflow", {}).values())
    assert summary["events"] + discarded == SPEC.days * SPEC.servers * SPEC.lines_per_file
    csv_lines = (site / "reports" / "total_events.csv").read_text().splitlines()
    assert csv_lines[0] == "date,event_count"
    assert csv_lines[1].startswith("2016-03-02,")
    connection = sqlite3.connect(site / "analytics-results.sqlite")
    (courses,) = connection.execute(
        "SELECT COUNT(DISTINCT course_id) FROM course_enrollment_daily WHERE date = '2016-03-02'"
    ).fetchone()
    assert courses == len(summary["enrollments"]) > 0
    keys = {a.key for a in asyncio.run(artifacts_of(state.state_details.flow_run_id))}
    assert {
        "events-per-day",
        "enrollments-per-course",
        "discarded-lines",
        "analytics-import-outputs",
    } <= keys


def test_rerun_skips_completed_work(site):
    first = analytics_import(interval="2016-03-01-2016-03-03")
    csv = site / "reports" / "total_events.csv"
    stamp = csv.stat().st_mtime_ns
    again = analytics_import(interval="2016-03-01-2016-03-03")
    assert again["events"] == first["events"]
    assert csv.stat().st_mtime_ns == stamp
    assert again["discards"] == {}  # nothing was read again


def test_corrupt_log_fails_the_flow_naming_the_file(site):
    bad = site / "tracking-logs" / "lms-1" / "tracking.log-20160302.gz"
    bad.write_bytes(bad.read_bytes()[:2000])
    state = analytics_import(interval="2016-03-01-2016-03-03", retries=0, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="tracking.log-20160302.gz"):
        state.result()
    assert not (site / "reports" / "total_events.csv").exists()


def test_bad_interval_is_refused_by_name(site):
    state = analytics_import(interval="2016-13", return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="interval '2016-13'"):
        state.result()


def test_mysql_block_password_never_reaches_logs_or_results(site, mariadb):
    from blocks.database import MySqlDatabase
    from tests.lms import load_lms_mariadb

    load_lms_mariadb(mariadb, "edxapp")
    creds = mariadb.credentials()
    for name, database in (("results-db", "reports"), ("lms-db", "edxapp")):
        MySqlDatabase(
            host=creds["host"],
            port=creds["port"],
            username=creds["username"],
            password=creds["password"],
            database=database,
        ).save(name, overwrite=True)
    state = analytics_import(
        interval="2016-03-01-2016-03-03",
        outputs=Outputs(result_database_block="results-db", lms_database_block="lms-db"),
        return_state=True,
    )
    assert state.is_completed(), state.message
    summary = state.result()
    assert creds["password"] not in repr(summary)
    assert summary["enrollments"], "enrollments per course come from MariaDB"
    with mariadb.connect("reports").cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM course_enrollment_daily")
        assert cursor.fetchone()[0] > 0
    assert not (site / "analytics-results.sqlite").exists()


def test_course_catalog_from_the_discovery_api_with_an_oauth_block(site, discovery):
    from blocks.oauth import OAuthClient
    from flows.analytics import CourseCatalog
    from pipeline.samples import COURSES

    secret = "catalog-client-secret-value"
    known = COURSES[1:]  # COURSES[0], the most enrolled course, is unknown to the catalog
    runs = [
        {"key": c, "title": f"Course {c}", "course": "DemoOrg+Course"}
        | {"start": "2016-01-15T00:00:00Z", "pacing_type": "self_paced", "availability": "Current"}
        for c in known
    ]
    api = discovery(runs, client_id="pipeline", client_secret=secret)
    OAuthClient(auth_url=api.auth_url, client_id="pipeline", client_secret=secret).save(
        "discovery-client", overwrite=True
    )
    catalog = CourseCatalog(
        enabled=True, api_root_url=api.api_root_url, oauth_client_block="discovery-client"
    )
    state = analytics_import(
        interval="2016-03-01-2016-03-03", course_catalog=catalog, return_state=True
    )
    assert state.is_completed(), state.message
    assert secret not in repr(state.result())
    assert api.page_requests(), "the catalog came from the API"
    connection = sqlite3.connect(site / "analytics-results.sqlite")
    rows = connection.execute(
        "SELECT course_id, catalog_course_title, start_time, pacing_type "
        "FROM course_meta_summary_enrollment"
    ).fetchall()
    assert {r[1:] for r in rows if r[0] == COURSES[0]} == {(None, None, None)}
    titled = [r for r in rows if r[0] != COURSES[0]]
    assert titled and all(
        r[1:] == (f"Course {r[0]}", "2016-01-15 00:00:00", "self_paced") for r in titled
    )


RESULT_TABLES = (
    "course_enrollment_daily",
    "course_enrollment_mode_daily",
    "course_enrollment_gender_daily",
    "course_enrollment_birth_year_daily",
    "course_enrollment_education_level_daily",
    "course_meta_summary_enrollment",
)
# Two runs that differ in everything the run object owns: config (warehouse, result database,
# processes), records (lines read), the interval; each into outputs of its own.
RUNS = {
    "wide": {"interval": "2016-03-01-2016-03-03", "processes": 0},
    "narrow": {"interval": "2016-03-02-2016-03-03", "processes": 1, "overwrite_n_days": 1},
}


def _outputs(name: str) -> Outputs:
    return Outputs(
        warehouse=f"{name}/warehouse/",
        report_dir=f"{name}/reports/",
        sqlite_database=f"{name}-results.sqlite",
    )


def _results(site, name: str, summary: dict) -> dict:
    """What a run produced: its summary (records included), reports and result tables."""
    kept = ("events", "events_per_day", "enrollments", "lines_read", "discards")
    produced = {key: summary[key] for key in kept}
    reports = site / name / "reports"
    produced["csv"] = (reports / "total_events.csv").read_text()
    produced["counts"] = (reports / "total_events_counts" / "part-00000").read_text()
    produced["warehouse"] = sorted(
        str(path.relative_to(site / name)) for path in (site / name / "warehouse").rglob("*")
    )
    connection = sqlite3.connect(site / f"{name}-results.sqlite")
    for table in RESULT_TABLES:
        columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
        chosen = ", ".join(f'"{c}"' for c in columns if c not in ("id", "created"))
        rows = connection.execute(f"SELECT {chosen} FROM {table}").fetchall()
        produced[table] = sorted(rows, key=repr)  # NULLs (None) do not compare with values
    connection.close()
    return produced


def test_two_runs_at_once_in_one_process_give_what_they_give_one_after_the_other(site):
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    start = threading.Barrier(len(RUNS))
    windows = {}

    def run(name: str, parameters: dict) -> dict:
        start.wait()
        began = time.monotonic()
        summary = analytics_import(outputs=_outputs(name), **parameters)
        windows[name] = (began, time.monotonic())
        return summary

    with ThreadPoolExecutor(len(RUNS)) as pool:
        futures = {name: pool.submit(run, name, p) for name, p in RUNS.items()}
        together = {name: _results(site, name, f.result()) for name, f in futures.items()}
    (a_start, a_end), (b_start, b_end) = windows.values()
    assert a_start < b_end and b_start < a_end, "the two runs overlapped in time"

    alone = {}
    for name, parameters in RUNS.items():
        summary = analytics_import(outputs=_outputs(f"{name}-alone"), **parameters)
        alone[name] = _results(site, f"{name}-alone", summary)

    assert together["wide"] != together["narrow"]  # different runs: any crosstalk would show
    assert together["wide"]["events"] > together["narrow"]["events"] > 0
    for name in RUNS:
        assert together[name] == alone[name], name
