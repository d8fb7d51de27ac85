"""The analytics pipeline's daily import as a Prefect flow: ``analytics-import``.

The story: check the parameters, point the pipeline at the logs and databases, count events per
day (TotalEventsReportWorkflow: day partitions in the warehouse, the counts and the CSV report),
import enrollments (ImportEnrollmentsIntoMysql: six tables in the result database), then
publish what happened: events per day (read back from the CSV, so the artifact and the returned
summary show what the report says), enrollments per course, lines read and discarded and why.

Night after night into the same outputs, only the last ``overwrite_n_days`` days (and days
never counted) are read from the logs; re-running a night reads nothing. Only outages are
retried: missing logs, a missing database file or bad settings fail at once.

Run it on generated sample logs with embedded defaults (SQLite, local files):

    uv run python -m flows.analytics --demo
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
from pathlib import Path

from luigi.parameter import DateIntervalParameter
from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from pydantic import BaseModel, Field

from pipeline import config, report
from pipeline.core import engine, fs, selection
from pipeline.enrollment_loads import ImportEnrollmentsIntoMysql
from pipeline.result_store import Database, settings_from
from pipeline.run import PipelineRun
from pipeline.total_events import WAREHOUSE_COUNTS, TotalEventsReportWorkflow, read_report
from pipeline_config.fields import NonEmptyStr
from tasks.parameters import fill_from_deployment
from tasks.pipeline import run_pipeline_task


class LogSelection(BaseModel):
    """Where the tracking logs are and which files to read."""

    sources: list[NonEmptyStr] = Field(
        default=["tracking-logs/"],
        min_length=1,
        description="Directories or s3:// prefixes, searched recursively.",
    )
    patterns: list[NonEmptyStr] = Field(
        default=list(selection.DEFAULT_PATTERNS),
        min_length=1,
        description="Regular expressions on full paths; a `(?P<date>...)` "
        "group selects files by date.",
    )
    expand_interval: NonEmptyStr = Field(
        "2 days", description="How far beyond the interval to look for its events."
    )
    allow_empty: bool = Field(
        default=False,
        description="Accept an interval for which no log file is selected (a site without "
        "traffic); otherwise that fails the run, as a missing source always does.",
    )


class Outputs(BaseModel):
    """Where results go. Relative paths are relative to the flow's working directory."""

    warehouse: NonEmptyStr = Field(
        default="warehouse/", description="Intermediate tables (path or s3://)."
    )
    report_dir: NonEmptyStr = Field(
        default="reports/", description="Daily counts and the CSV report."
    )
    sqlite_database: NonEmptyStr = Field(
        default="analytics-results.sqlite",
        description="Result database when no MySQL block is named.",
    )
    result_database_block: NonEmptyStr | None = Field(
        default=None,
        description="Name of a MySQL Database block for the results (else the SQLite file).",
    )
    lms_database_block: NonEmptyStr | None = Field(
        default=None,
        description="Name of a MySQL Database block for the LMS (auth_userprofile, grades).",
    )
    lms_sqlite_database: NonEmptyStr = Field(
        default="edxapp.sqlite", description="LMS database when no LMS block is named."
    )


class CourseCatalog(BaseModel):
    """Titles, dates, pacing and availability in course_meta_summary_enrollment; what is left
    unset keeps the config files' value."""

    enabled: bool | None = Field(
        default=None,
        description="Fill them from the discovery service's course runs "
        "(unset: [course-summary-enrollment] enable_course_catalog).",
    )
    api_root_url: NonEmptyStr | None = Field(
        default=None, description="Discovery API root, e.g. https://discovery.example.com/api/v1/."
    )
    course_runs_file: NonEmptyStr | None = Field(
        default=None,
        description="Instead of the API: a local or s3:// file of course runs, one JSON object "
        "per line.",
    )
    oauth_client_block: NonEmptyStr | None = Field(
        default=None,
        description="Name of an OAuth Client block for the API (token URL, id, secret).",
    )


def catalog_settings(catalog: CourseCatalog) -> dict[str, dict[str, str]]:
    """Config overrides for the course catalog; the client secret stays in this process."""
    sections: dict[str, dict[str, str]] = {}
    if catalog.enabled is not None:
        sections["course-summary-enrollment"] = {
            "enable_course_catalog": str(catalog.enabled).lower()
        }
    api = {"api_root_url": catalog.api_root_url, "course_runs_file": catalog.course_runs_file}
    if any(value is not None for value in api.values()):
        sections["course-catalog-api"] = {k: v for k, v in api.items() if v is not None}
    if catalog.oauth_client_block:
        from blocks.oauth import OAuthClient

        block = OAuthClient.load(catalog.oauth_client_block)
        sections["edx-rest-api"] = block.rest_api_settings()
    return sections


def default_interval(today: dt.date | None = None) -> str:
    """From the configured ``[enrollments] interval_start`` up to and including yesterday."""
    today = today or dt.datetime.now(dt.UTC).date()
    start = config.load().get("enrollments", "interval_start", "") or "2013-11-01"
    return f"{start}-{today.isoformat()}"


def parse_interval(text: str):
    try:
        return DateIntervalParameter().parse(text)
    except Exception as exc:
        raise ValueError(
            f"interval {text!r}: expected 2016, 2016-03, 2016-W09, 2016-03-01 or "
            "2016-03-01-2016-03-08"
        ) from exc


@contextlib.contextmanager
def database_settings(outputs: Outputs):
    """Config overrides for the two databases; credentials files live only inside this block."""
    with contextlib.ExitStack() as stack:
        sections = {}
        for section, block_name, sqlite in (
            ("database-export", outputs.result_database_block, outputs.sqlite_database),
            ("database-import", outputs.lms_database_block, outputs.lms_sqlite_database),
        ):
            if block_name:
                from blocks.database import MySqlDatabase

                block = MySqlDatabase.load(block_name)
                path = stack.enter_context(block.credentials_file())
                sections[section] = {"database": block.database, "credentials": path}
            else:
                sections[section] = {"database": sqlite, "credentials": ""}
        yield sections


def progress_reporter(artifact_id):
    logger = get_run_logger()

    def on_progress(state: engine.Progress) -> None:
        update_progress_artifact(artifact_id, progress=round(100 * state.fraction, 1))
        logger.info("reading logs: %s", state.describe())

    return on_progress


@flow(name="analytics-import", log_prints=True)
def analytics_import(
    interval: NonEmptyStr | None = None,
    logs: LogSelection = LogSelection(),
    outputs: Outputs = Outputs(),
    overwrite_n_days: int = Field(default=3, ge=0, description="Days re-read from raw logs."),
    import_enrollments: bool = True,
    processes: int = Field(default=0, ge=0, description="Worker processes; 0 = every core."),
    retries: int = Field(
        default=2, ge=0, le=10, description="Retries of a pipeline step that failed on an outage."
    ),
    retry_delay_seconds: int = Field(
        default=60, ge=0, le=3600, description="Seconds between those retries."
    ),
    course_catalog: CourseCatalog = CourseCatalog(),
) -> dict:
    """Count events per day and import enrollments into the result database.

    Args:
        interval: Luigi date interval (2016, 2016-03, 2016-03-01-2016-03-08); default: from
            ``[enrollments] interval_start`` to today, half-open.
        logs: Where the tracking logs are.
        outputs: Where the warehouse, reports and result database are.
        overwrite_n_days: The last days of the interval to extract again from raw logs.
        import_enrollments: Also run the enrollment chain (ImportEnrollmentsIntoMysql).
        processes: Worker processes for reading logs; 0 = every core.
        retries: How often a pipeline step that failed on an outage (database or S3
            unreachable) is retried; other errors are not retried. Completed work is never
            redone.
        retry_delay_seconds: Seconds between those retries.
        course_catalog: Catalog fields of course_meta_summary_enrollment (discovery API or file).
    """
    logs, outputs, course_catalog = fill_from_deployment(
        logs=logs, outputs=outputs, course_catalog=course_catalog
    )
    logger = get_run_logger()
    interval_text = interval or default_interval()
    parsed = parse_interval(interval_text)
    for source in logs.sources:
        fs.check_supported(source)

    progress_id = create_progress_artifact(progress=0.0, description="Tracking logs read")
    log_selection = {
        "source": logs.sources,
        "pattern": logs.patterns,
        "allow_empty": logs.allow_empty,
        "overwrite_n_days": overwrite_n_days,
    }
    counts = fs.join(outputs.report_dir, "total_events_counts") + "/"
    csv_report = fs.join(outputs.report_dir, "total_events.csv")
    run_step = run_pipeline_task.with_options(
        retries=retries, retry_delay_seconds=retry_delay_seconds
    )
    with database_settings(outputs) as databases:
        overrides = {
            "event-logs": {"expand_interval": logs.expand_interval},
            "hive": {"warehouse_path": outputs.warehouse},
            "local-engine": {"processes": str(processes)},
            **databases,
            **catalog_settings(course_catalog),
        }
        with PipelineRun(overrides, progress=progress_reporter(progress_id)) as run:
            run_step(
                run,
                run.task(
                    TotalEventsReportWorkflow,
                    interval=parsed,
                    counts=counts,
                    report=csv_report,
                    **log_selection,
                ),
            )
            if import_enrollments:
                run_step(
                    run, run.task(ImportEnrollmentsIntoMysql, interval=parsed, **log_selection)
                )
            enrollments = (
                enrollments_per_course(databases["database-export"], parsed)
                if import_enrollments
                else []
            )
            update_progress_artifact(progress_id, progress=100.0)
            records = run.records()
    summary = publish(interval_text, csv_report, outputs, records, enrollments, counts)
    logger.info("analytics-import done: %s events, report at %s", summary["events"], csv_report)
    return summary


def enrollments_per_course(export: dict, interval) -> list[dict]:
    """Enrollment counts per course on the interval's last day, from the result database."""
    database = Database(settings_from(export["database"], export["credentials"], "database-export"))
    last = (interval.date_b - dt.timedelta(days=1)).isoformat()
    rows = database.query(
        f"SELECT course_id, `count`, cumulative_count FROM course_enrollment_daily "
        f"WHERE `date` = {database.placeholder} ORDER BY course_id",
        (last,),
    )
    return [{"course_id": c, "date": last, "enrolled": n, "ever_enrolled": t} for c, n, t in rows]


def read_events_per_day(csv_report: str) -> list[dict]:
    totals = read_report(csv_report)
    return [{"date": day, "events": totals[day]} for day in sorted(totals)]


def publish(
    interval: str,
    csv_report: str,
    outputs: Outputs,
    records: list[dict],
    enrollments: list[dict],
    counts: str,
) -> dict:
    per_day = read_events_per_day(csv_report)
    create_table_artifact(
        key="events-per-day",
        table=per_day or [{"date": "-", "events": 0}],
        description=f"Events per day, {interval}",
    )
    if enrollments:
        create_table_artifact(
            key="enrollments-per-course",
            table=enrollments,
            description="Enrollments per course on the last day",
        )
    discards = report.discards_by_task(records)
    rows = [
        {"task": t, "reason": r, "lines": n}
        for t, reasons in discards.items()
        for r, n in sorted(reasons.items())
    ]
    create_table_artifact(
        key="discarded-lines",
        table=rows or [{"task": "-", "reason": "none", "lines": 0}],
        description="Lines each task read but could not use, by reason",
    )
    database = outputs.result_database_block or os.path.abspath(outputs.sqlite_database)
    create_markdown_artifact(
        key="analytics-import-outputs",
        markdown=f"# analytics-import {interval}\n\n- report: `{csv_report}`\n- daily counts: "
        f"`{counts}` (day partitions: `{fs.join(outputs.warehouse, WAREHOUSE_COUNTS)}/`)\n"
        f"- warehouse: `{outputs.warehouse}`\n- result database: `{database}`\n\n"
        f"```\n{report.format_summary(records)}\n```\n",
    )
    return {
        "interval": interval,
        "report": csv_report,
        "result_database": database,
        "events": sum(row["events"] for row in per_day),
        "events_per_day": per_day,
        "enrollments": enrollments,
        # what this run read from the logs: 0 when everything was already complete
        "lines_read": sum(rec.get("lines", 0) for rec in records),
        "discards": discards,
        "skipped_entries": {
            rec["task"]: rec["skipped_entries"] for rec in records if rec.get("skipped_entries")
        },
    }


def demo(directory: Path) -> dict:
    """Generate sample logs and an LMS database in ``directory``, then run the flow there."""
    from pipeline.samples import SampleSpec, generate_lms_database, generate_logs

    directory.mkdir(parents=True, exist_ok=True)
    spec = SampleSpec()
    if not (directory / "tracking-logs").exists():
        print(f"generating sample tracking logs in {directory / 'tracking-logs'}")
        generate_logs(directory / "tracking-logs", spec)
        generate_lms_database(directory / "edxapp.sqlite", spec)
    os.chdir(directory)
    end = spec.start + dt.timedelta(days=spec.days)
    return analytics_import(interval=f"{spec.start}-{end}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run analytics-import once, in this process.")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="generate sample logs in --dir and run on them with SQLite",
    )
    parser.add_argument(
        "--dir", type=Path, default=Path("demo"), help="working directory for --demo"
    )
    parser.add_argument("--interval", help="luigi interval, e.g. 2016-03-01-2016-03-04")
    args = parser.parse_args(argv)
    if args.demo:
        base = args.dir.resolve()
        summary = demo(base)
        print(f"\nevents per day: {[(r['date'], r['events']) for r in summary['events_per_day']]}")
        print(f"TotalEventsReport CSV:  {base / summary['report']}")
        print(f"result database:        {summary['result_database']}"
              " (tables course_enrollment_daily, course_enrollment_mode_daily, ...)")  # fmt: skip
        print(f"enrollment warehouse:   {base / 'warehouse'}")
        return 0
    summary = analytics_import(interval=args.interval)
    print(f"report: {summary['report']}; result database: {summary['result_database']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
