"""The course catalog of course_meta_summary_enrollment, through launch-task.

Sources (a file, a snapshot already in the warehouse, the discovery API over HTTP), courses the
catalog does not know, partners, and every failure: each must name what failed, print no
secret, and leave no snapshot and no load marked done behind.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.lms import DATA, load_lms_sqlite
from tests.pipeline.conftest import Workspace
from tests.pipeline.test_acceptance import (
    CATALOG_DATE,
    META,
    course_runs,
    expected_rows,
    prepare,
    run_import,
)

SNAPSHOT = f"warehouse/discovery_api_raw/dt={CATALOG_DATE}/course_runs.json"
META_COLUMNS = (
    "course_id, catalog_course_title, catalog_course, start_time, end_time, pacing_type, "
    "availability, enrollment_mode, count, count_change_7_days, cumulative_count, passing_users"
)


def with_lms(workspace: Workspace) -> Workspace:
    prepare(workspace)
    load_lms_sqlite(workspace.root / "edxapp.sqlite")
    return workspace


def write_config(workspace: Workspace, **sections: dict) -> str:
    text = "[course-summary-enrollment]\nenable_course_catalog = true\n"
    for section, values in sections.items():
        text += f"[{section.replace('_', '-')}]\n"
        text += "".join(f"{key} = {value}\n" for key, value in values.items())
    path = workspace.root / "catalog.cfg"
    path.write_text(text)
    return str(path)


def meta_rows(workspace: Workspace) -> list[tuple[str, ...]]:
    connection = sqlite3.connect(workspace.root / "reports.sqlite")
    rows = connection.execute(f"SELECT {META_COLUMNS} FROM `{META}`").fetchall()
    connection.close()
    return sorted(tuple("\\N" if v is None else str(v) for v in row) for row in rows)


def loaded_tables(workspace: Workspace) -> set[str]:
    path = workspace.root / "reports.sqlite"
    if not path.exists():
        return set()
    connection = sqlite3.connect(path)
    names = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
    loaded = set()
    if "table_updates" in names:
        loaded = {r[0] for r in connection.execute("SELECT target_table FROM table_updates")}
    connection.close()
    return loaded


def pull(workspace: Workspace, config: str):
    """Only the snapshot task, as an operator can run it alone."""
    return workspace.launch(
        "PullDiscoveryCourseRunsAPIData",
        "--local-scheduler",
        "--date",
        CATALOG_DATE,
        "--additional-config",
        config,
    )


def test_catalog_from_a_local_file(workspace: Workspace):
    with_lms(workspace)
    config = write_config(
        workspace, course_catalog_api={"course_runs_file": DATA / "input" / "course_runs.json"}
    )
    result = run_import(workspace, "--date", CATALOG_DATE, "--additional-config", config)
    assert result.returncode == 0, result.output
    assert meta_rows(workspace) == expected_rows(META, catalog=True)[1]
    assert len((workspace.root / SNAPSHOT).read_text().splitlines()) == 4


@pytest.mark.slow
def test_catalog_from_a_file_on_s3(workspace: Workspace, aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="catalog")
    s3.put_object(
        Bucket="catalog",
        Key="discovery/course_runs.json",
        Body=(DATA / "input" / "course_runs.json").read_bytes(),
    )
    with_lms(workspace)
    config = write_config(
        workspace,
        course_catalog_api={"course_runs_file": "s3://catalog/discovery/course_runs.json"},
    )
    result = run_import(
        workspace, "--date", CATALOG_DATE, "--additional-config", config, env=aws.env()
    )
    assert result.returncode == 0, result.output
    assert meta_rows(workspace) == expected_rows(META, catalog=True)[1]


def test_snapshot_already_in_the_warehouse_is_used_as_upstream_did(workspace: Workspace):
    # upstream's acceptance test put the file there and configured no API at all
    with_lms(workspace)
    snapshot = workspace.root / SNAPSHOT
    snapshot.parent.mkdir(parents=True)
    snapshot.write_bytes((DATA / "input" / "course_runs.json").read_bytes())
    result = run_import(workspace, "--date", CATALOG_DATE, "--enable-course-catalog")
    assert result.returncode == 0, result.output
    assert meta_rows(workspace) == expected_rows(META, catalog=True)[1]


def test_courses_the_catalog_does_not_know_keep_null_fields(workspace: Workspace, discovery):
    with_lms(workspace)
    runs = [r for r in course_runs() if r["key"] != "course-v1:edX+Open_DemoX+edx_demo_course2"]
    runs.append({"key": "course-v1:edX+Other+2T2020", "title": "Never enrolled"})
    api = discovery(runs)
    config = write_config(workspace, course_catalog_api={"api_root_url": api.api_root_url})
    result = run_import(workspace, "--date", CATALOG_DATE, "--additional-config", config)
    assert result.returncode == 0, result.output
    rows = meta_rows(workspace)
    # one row per (course, mode) with enrollments, whatever the catalog holds
    assert [r[0] for r in rows] == [r[0] for r in expected_rows(META)[1]]
    unknown = [r for r in rows if r[0] == "course-v1:edX+Open_DemoX+edx_demo_course2"]
    assert [r[1:7] for r in unknown] == [("\\N",) * 6] * 2
    known = [r for r in rows if r[0] == "edX/Open_DemoX/edx_demo_course"]
    assert {r[1:7] for r in known} == {
        (
            "All about acceptance testing!",
            "edX+Open_DemoX",
            "2016-09-01 00:00:00",
            "2016-12-01 00:00:00",
            "instructor_paced",
            "Current",
        )
    }


def test_partners_are_fetched_each_and_tagged(workspace: Workspace, discovery):
    runs = course_runs()
    runs[3] = {**runs[3], "partner_short_code": "other"}
    api = discovery(runs)
    config = write_config(
        workspace,
        course_catalog_api={
            "api_root_url": api.api_root_url,
            "partner_short_codes": '["openedx"]',
            "page_size": 1,
        },
    )
    result = pull(workspace, config)
    assert result.returncode == 0, result.output
    snapshot = [json.loads(line) for line in (workspace.root / SNAPSHOT).read_text().splitlines()]
    assert [r["key"] for r in snapshot] == [r["key"] for r in runs[:3]]
    assert {r["partner_short_code"] for r in snapshot} == {"openedx"}
    assert {r.query["partner"] for r in api.page_requests()} == {"openedx"}
    assert len(api.page_requests()) == 3


def test_titles_and_dates_are_normalized(workspace: Workspace, discovery):
    with_lms(workspace)
    run = {
        **course_runs()[0],
        "title": "  All about\n\tacceptance   testing! ",
        "start": "2016-09-01T02:00:00+02:00",
        "end": "not a date",
    }
    api = discovery([run])
    config = write_config(workspace, course_catalog_api={"api_root_url": api.api_root_url})
    result = run_import(workspace, "--date", CATALOG_DATE, "--additional-config", config)
    assert result.returncode == 0, result.output
    row = next(r for r in meta_rows(workspace) if r[0] == run["key"])
    assert row[1:5] == (
        "All about acceptance testing!",
        "edX+Open_DemoX",
        "2016-09-01 00:00:00",
        "\\N",
    )
    assert "discarded 1 (catalog: unparseable start or end (NULL))" in result.stderr


def test_api_error_names_the_url_and_marks_nothing(workspace: Workspace, discovery):
    with_lms(workspace)
    api = discovery(course_runs())
    api.fail_next(500)
    config = write_config(workspace, course_catalog_api={"api_root_url": api.api_root_url})
    result = run_import(workspace, "--date", CATALOG_DATE, "--additional-config", config)
    assert result.returncode != 0
    assert f"GET {api.api_root_url}course_runs/?limit=100&exclude_utm=1: HTTP 500" in result.stderr
    assert not (workspace.root / SNAPSHOT).exists()
    loaded = loaded_tables(workspace)
    assert META not in loaded
    assert "course_enrollment_daily" in loaded  # the other loads do not depend on the catalog


def test_transient_errors_are_retried(workspace: Workspace, discovery):
    api = discovery(course_runs())
    api.fail_next(503)
    config = write_config(workspace, course_catalog_api={"api_root_url": api.api_root_url})
    result = pull(workspace, config)
    assert result.returncode == 0, result.output
    assert "HTTP 503, again in 1s" in result.stderr
    assert len((workspace.root / SNAPSHOT).read_text().splitlines()) == 4


def test_a_silent_server_times_out_with_its_url(workspace: Workspace, discovery):
    api = discovery(course_runs())
    api.stall_next(5)
    config = write_config(
        workspace,
        course_catalog_api={"api_root_url": api.api_root_url, "timeout": 0.5, "retries": 0},
    )
    result = pull(workspace, config)
    assert result.returncode != 0
    assert f"GET {api.api_root_url}course_runs/" in result.stderr
    assert "no response within 0.5s" in result.stderr
    assert not (workspace.root / SNAPSHOT).exists()


def test_wrong_client_secret_is_refused_without_printing_it(workspace: Workspace, discovery):
    api = discovery(course_runs(), client_id="pipeline", client_secret="the-real-secret")
    config = write_config(
        workspace,
        course_catalog_api={"api_root_url": api.api_root_url},
        edx_rest_api={
            "auth_url": api.auth_url,
            "client_id": "pipeline",
            "client_secret": "a-wrong-secret",
        },
    )
    result = pull(workspace, config)
    assert result.returncode != 0
    assert f"POST {api.auth_url}: HTTP 401" in result.stderr
    assert "check [edx-rest-api] client_id, client_secret and auth_url" in result.stderr
    assert "a-wrong-secret" not in result.output
    assert api.page_requests() == []


def test_no_credentials_for_a_protected_api_is_a_clear_error(workspace: Workspace, discovery):
    api = discovery(course_runs(), client_id="pipeline", client_secret="x")
    config = write_config(workspace, course_catalog_api={"api_root_url": api.api_root_url})
    result = pull(workspace, config)
    assert result.returncode != 0
    assert "HTTP 401" in result.stderr and "[edx-rest-api]" in result.stderr


def test_an_api_root_that_is_not_http_is_refused(workspace: Workspace):
    config = write_config(workspace, course_catalog_api={"api_root_url": "file:///etc/"})
    result = pull(workspace, config)
    assert result.returncode != 0
    assert "GET file:///etc/course_runs/?limit=100&exclude_utm=1: not an http" in result.stderr


def test_catalog_enabled_without_a_source_is_named(workspace: Workspace):
    result = pull(workspace, write_config(workspace))
    assert result.returncode != 0
    assert "set [course-catalog-api] api_root_url" in result.stderr
    assert not (workspace.root / SNAPSHOT).exists()


def test_partner_lists_out_of_step_are_refused(workspace: Workspace):
    config = write_config(
        workspace,
        course_catalog_api={
            "partner_short_codes": '["a", "b"]',
            "partner_api_urls": '["http://127.0.0.1:9/api/v1/"]',
        },
    )
    result = pull(workspace, config)
    assert result.returncode != 0
    assert "partner_api_urls has 1 entries but partner_short_codes has 2" in result.stderr


def test_a_broken_line_in_the_file_is_named(workspace: Workspace):
    source = workspace.root / "runs.json"
    lines = (DATA / "input" / "course_runs.json").read_text().splitlines()
    source.write_text("\n".join([lines[0], lines[1][:40], lines[2]]) + "\n")
    result = pull(
        workspace, write_config(workspace, course_catalog_api={"course_runs_file": source})
    )
    assert result.returncode != 0
    assert f"{source}, line 2: not valid JSON" in result.stderr
    assert not (workspace.root / SNAPSHOT).exists()


def test_a_missing_file_is_named(workspace: Workspace):
    missing = workspace.root / "nowhere.json"
    result = pull(
        workspace, write_config(workspace, course_catalog_api={"course_runs_file": missing})
    )
    assert result.returncode != 0
    assert f"{missing}: cannot read" in result.stderr
