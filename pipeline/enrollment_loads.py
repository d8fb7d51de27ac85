"""Loads of the enrollment tables into the result database, and ``ImportEnrollmentsIntoMysql``.

Every table is computed in one streaming pass over the daily state
(``{warehouse}/course_enrollment/dt={date_b}/``); memory holds only the aggregates, plus the
LMS profiles for the demographic tables.

- ``course_enrollment_daily``: per course and date, count = users enrolled at the end of the day,
  cumulative_count = users with any enrollment event so far;
- ``course_enrollment_mode_daily``: the same per mode;
- ``course_enrollment_gender_daily``: the same per LMS gender ('' -> NULL), every date;
- ``course_enrollment_birth_year_daily``, ``course_enrollment_education_level_daily``: the
  last date (date_b - 1) only;
- ``course_meta_summary_enrollment``: per course and mode on the last date: count,
  count_change_7_days (count minus the count 7 days earlier), cumulative_count and
  passing_users (users with a passing grade: ``passed_timestamp`` set and a letter grade),
  and the course's catalog fields when the course catalog is enabled (``pipeline.catalog``;
  NULL for courses the catalog does not know, and all NULL with the catalog off).

``ImportEnrollmentsIntoMysql`` also requires ``CourseEnrollmentSummaryTask``, as upstream's does,
so the one command writes ``{warehouse}/course_enrollment_summary/dt={date_b}/`` too.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Iterator

import luigi

from pipeline.catalog import (
    NO_CATALOG,
    CourseCatalogSwitchMixin,
    PullDiscoveryCourseRunsAPIData,
    read_catalog,
)
from pipeline.common import ReportingMixin, configured
from pipeline.core import fs
from pipeline.enrollments import (
    WAREHOUSE_STATE,
    CourseEnrollmentSummaryTask,
    CourseEnrollmentTask,
    EnrollmentStateMixin,
)
from pipeline.result_store import Column, Database, DatabaseError, TableSpec, settings_from

log = logging.getLogger(__name__)

EDUCATION_LEVELS = {
    "el": "primary",
    "jhs": "junior_secondary",
    "hs": "secondary",
    "a": "associates",
    "b": "bachelors",
    "m": "masters",
    "p": "doctorate",
    "p_se": "doctorate",
    "p_oth": "doctorate",
    "none": "none",
    "other": "other",
}

_COURSE = Column("course_id", "VARCHAR(255)", nullable=False)
_DATE = Column("date", "DATE", nullable=False)
_COUNT = Column("count", "INT")
_CUMULATIVE = Column("cumulative_count", "INT")

DAILY = TableSpec("course_enrollment_daily", (_COURSE, _DATE, _COUNT, _CUMULATIVE))
MODE_DAILY = TableSpec(
    "course_enrollment_mode_daily",
    (_DATE, _COURSE, Column("mode", "VARCHAR(255)", nullable=False), _COUNT, _CUMULATIVE),
)
GENDER_DAILY = TableSpec(
    "course_enrollment_gender_daily",
    (_DATE, _COURSE, Column("gender", "VARCHAR(6)"), _COUNT, _CUMULATIVE),
)
BIRTH_YEAR_DAILY = TableSpec(
    "course_enrollment_birth_year_daily",
    (_DATE, _COURSE, Column("birth_year", "INT"), _COUNT, _CUMULATIVE),
)
EDUCATION_DAILY = TableSpec(
    "course_enrollment_education_level_daily",
    (_DATE, _COURSE, Column("education_level", "VARCHAR(16)"), _COUNT, _CUMULATIVE),
)
META_SUMMARY = TableSpec(
    "course_meta_summary_enrollment",
    (
        _COURSE,
        Column("catalog_course_title", "VARCHAR(255)"),
        Column("catalog_course", "VARCHAR(255)"),
        Column("start_time", "DATETIME"),
        Column("end_time", "DATETIME"),
        Column("pacing_type", "VARCHAR(255)"),
        Column("availability", "VARCHAR(255)"),
        Column("enrollment_mode", "VARCHAR(255)", nullable=False),
        _COUNT,
        Column("count_change_7_days", "INT"),
        _CUMULATIVE,
        Column("passing_users", "INT"),
    ),
)


def state_rows(url: str) -> Iterator[tuple[str, str, str, int, int, str]]:
    """Rows of the daily state file: (date, course_id, user_id, at_end, change, mode)."""
    for number, line in enumerate(fs.read_text(url).splitlines(), 1):
        fields = line.split("\t")
        if len(fields) != 6:
            raise ValueError(f"{url}, line {number}: expected 6 tab-separated fields")
        date, course_id, user_id, at_end, change, mode = fields
        yield date, course_id, user_id, int(at_end), int(change), mode


def _add(totals: dict, key: tuple, at_end: int) -> None:
    entry = totals.get(key)
    if entry is None:
        totals[key] = [at_end, 1]
    else:
        entry[0] += at_end
        entry[1] += 1


def _rows(totals: dict) -> list[tuple]:
    return [
        (*key, count, cumulative)
        for key, (count, cumulative) in sorted(totals.items(), key=_sort_key)
    ]


def _sort_key(item):
    return tuple("" if v is None else str(v) for v in item[0])


def daily_counts(rows: Iterable[tuple]) -> list[tuple]:
    totals: dict = {}
    for date, course_id, _user, at_end, _change, _mode in rows:
        _add(totals, (course_id, date), at_end)
    return _rows(totals)


def mode_counts(rows: Iterable[tuple]) -> list[tuple]:
    totals: dict = {}
    for date, course_id, _user, at_end, _change, mode in rows:
        _add(totals, (date, course_id, mode), at_end)
    return _rows(totals)


def demographic_counts(
    rows: Iterable[tuple], attribute: dict[str, object], only_date: str | None = None
) -> list[tuple]:
    """Counts per (date, course, the user's attribute); users without one count under NULL."""
    totals: dict = {}
    for date, course_id, user_id, at_end, _change, _mode in rows:
        if only_date is not None and date != only_date:
            continue
        _add(totals, (date, course_id, attribute.get(user_id)), at_end)
    return _rows(totals)


def meta_summary(
    rows: Iterable[tuple],
    last_date: str,
    passing: set[tuple[str, str]],
    catalog: dict[str, tuple] | None = None,
) -> list[tuple]:
    """Per (course, mode) on ``last_date``, joined with ``catalog`` (course_id -> its six
    catalog fields) where it knows the course."""
    catalog = catalog or {}
    week_before = (dt.date.fromisoformat(last_date) - dt.timedelta(days=7)).isoformat()
    now: dict = {}
    before: dict[tuple, int] = {}
    passing_users: dict[tuple, int] = {}
    for date, course_id, user_id, at_end, _change, mode in rows:
        if date == last_date:
            _add(now, (course_id, mode), at_end)
            if (course_id, user_id) in passing:
                passing_users[(course_id, mode)] = passing_users.get((course_id, mode), 0) + 1
        elif date == week_before:
            before[(course_id, mode)] = before.get((course_id, mode), 0) + at_end
    out = []
    for (course_id, mode), (count, cumulative) in sorted(now.items()):
        change = count - before.get((course_id, mode), 0)
        out.append(
            (
                course_id,
                *catalog.get(course_id, NO_CATALOG),
                mode,
                count,
                change,
                cumulative,
                passing_users.get((course_id, mode), 0),
            )
        )
    return out


def database_parameters(section: str, what: str, server: str):
    """Upstream's ``[section] database`` and ``credentials`` (a database, and how to reach
    it), as two Luigi parameters."""
    database = configured(
        luigi.Parameter, section, "database",
        description=f"{what} name (or SQLite file when no credentials).",
    )  # fmt: skip
    credentials = configured(
        luigi.Parameter, section, "credentials", default="", significant=False,
        description=f"JSON credentials file for {server}; empty = SQLite.",
    )  # fmt: skip
    return database, credentials


class ResultDatabaseMixin:
    """``[database-export]``: where the tables go; ``[database-import]``: the LMS, read only."""

    database, credentials = database_parameters("database-export", "Result database", "MySQL")
    import_database, import_credentials = database_parameters(
        "database-import", "LMS database", "the LMS MySQL"
    )

    def result_database(self) -> Database:
        return Database(
            settings_from(self.database, self.credentials, "database-export"), create=True
        )

    def lms_database(self) -> Database:
        return Database(
            settings_from(self.import_database, self.import_credentials, "database-import")
        )


class DatabaseLoadTarget(luigi.Target):
    """Done when ``table_updates`` records this load."""

    def __init__(self, database: Database, table: str, update_id: str):
        self.database, self.table, self.update_id = database, table, update_id

    def exists(self) -> bool:
        return self.database.is_loaded(self.table, self.update_id)


class EnrollmentTableLoad(EnrollmentStateMixin, ResultDatabaseMixin, ReportingMixin, luigi.Task):
    """Base of the load tasks: compute a table from the daily state, replace it atomically."""

    table: TableSpec

    def requires(self):
        return self.clone(CourseEnrollmentTask)

    def output(self):
        return DatabaseLoadTarget(self.result_database(), self.table.name, self.task_id)

    @property
    def state_file(self) -> str:
        return self.table_output(WAREHOUSE_STATE).part.url

    @property
    def last_date(self) -> str:
        return (self.interval.date_b - dt.timedelta(days=1)).isoformat()

    def compute(self) -> list[tuple]:
        raise NotImplementedError

    def run(self):
        started = time.monotonic()
        self.discards: dict[str, int] = {}
        rows = self.compute()
        database = self.result_database()
        loaded = database.replace_rows(self.table, rows, self.task_id)
        log.info(
            "%s: loaded %d rows into %s (%s)",
            self.task_family,
            loaded,
            self.table.name,
            database.settings.describe(),
        )
        self.record_run(started, 1, 0, self.discards, table=self.table.name, rows=loaded)


class EnrollmentDailyTask(EnrollmentTableLoad):
    table = DAILY

    def compute(self):
        return daily_counts(state_rows(self.state_file))


class EnrollmentByModeTask(EnrollmentTableLoad):
    table = MODE_DAILY

    def compute(self):
        return mode_counts(state_rows(self.state_file))


class LmsProfileMixin:
    def profiles(self, column: str) -> dict[str, object]:
        """user_id (as the warehouse writes it) -> a column of ``auth_userprofile``."""
        lms = self.lms_database()
        try:
            return {
                str(user_id): value
                for user_id, value in lms.query(f"SELECT user_id, {column} FROM auth_userprofile")
            }
        except DatabaseError as exc:
            raise DatabaseError(f"reading auth_userprofile from the LMS database: {exc}") from exc


class EnrollmentByGenderTask(LmsProfileMixin, EnrollmentTableLoad):
    table = GENDER_DAILY

    def compute(self):
        genders = {user: (value or None) for user, value in self.profiles("gender").items()}
        return demographic_counts(state_rows(self.state_file), genders)


class EnrollmentByBirthYearTask(LmsProfileMixin, EnrollmentTableLoad):
    table = BIRTH_YEAR_DAILY

    def compute(self):
        years = self.profiles("year_of_birth")
        return demographic_counts(state_rows(self.state_file), years, only_date=self.last_date)


class EnrollmentByEducationLevelTask(LmsProfileMixin, EnrollmentTableLoad):
    table = EDUCATION_DAILY

    def compute(self):
        levels = {
            u: EDUCATION_LEVELS.get(v) for u, v in self.profiles("level_of_education").items()
        }
        return demographic_counts(state_rows(self.state_file), levels, only_date=self.last_date)


class CourseMetaSummaryEnrollmentIntoMysql(CourseCatalogSwitchMixin, EnrollmentTableLoad):
    table = META_SUMMARY

    def requires(self):
        state = super().requires()
        if not self.enable_course_catalog:
            return state
        return [state, self.clone(PullDiscoveryCourseRunsAPIData)]

    def catalog(self) -> dict[str, tuple]:
        if not self.enable_course_catalog:
            return {}
        snapshot = self.clone(PullDiscoveryCourseRunsAPIData).snapshot_url()
        catalog, discards = read_catalog(snapshot)
        for reason, count in discards.items():
            self.discards[f"catalog: {reason}"] = count
        log.info("%s: %d course runs in %s", self.task_family, len(catalog), snapshot)
        return catalog

    def passing_users(self) -> set[tuple[str, str]]:
        lms = self.lms_database()
        try:
            rows = lms.query(
                "SELECT DISTINCT course_id, user_id FROM grades_persistentcoursegrade "
                "WHERE passed_timestamp IS NOT NULL AND letter_grade <> ''"
            )
            return {(course_id, str(user_id)) for course_id, user_id in rows}
        except DatabaseError as exc:
            raise DatabaseError(
                f"reading grades_persistentcoursegrade from the LMS database: {exc}"
            ) from exc

    def compute(self):
        return meta_summary(
            state_rows(self.state_file), self.last_date, self.passing_users(), self.catalog()
        )


LOAD_TASKS = (
    EnrollmentDailyTask,
    EnrollmentByModeTask,
    EnrollmentByGenderTask,
    EnrollmentByBirthYearTask,
    EnrollmentByEducationLevelTask,
    CourseMetaSummaryEnrollmentIntoMysql,
)


class ImportEnrollmentsIntoMysql(
    CourseCatalogSwitchMixin, EnrollmentStateMixin, ResultDatabaseMixin, luigi.WrapperTask
):
    """Compute the enrollment chain, write the enrollment summary, load all six tables.

    Example:
        launch-task ImportEnrollmentsIntoMysql --local-scheduler \\
            --interval 2014-07-30-2014-08-07 --overwrite-n-days 7 [--enable-course-catalog]
    """

    def requires(self):
        return [self.clone(CourseEnrollmentSummaryTask), *(self.clone(t) for t in LOAD_TASKS)]
