"""Every task launch-task knows, importable from one place."""

from pipeline.catalog import PullDiscoveryCourseRunsAPIData
from pipeline.enrollment_loads import (
    CourseMetaSummaryEnrollmentIntoMysql,
    EnrollmentByBirthYearTask,
    EnrollmentByEducationLevelTask,
    EnrollmentByGenderTask,
    EnrollmentByModeTask,
    EnrollmentDailyTask,
    ImportEnrollmentsIntoMysql,
)
from pipeline.enrollments import (
    CourseEnrollmentEventsTask,
    CourseEnrollmentSummaryTask,
    CourseEnrollmentTask,
)
from pipeline.total_events import TotalEventsDailyTask, TotalEventsReport, TotalEventsReportWorkflow

__all__ = [
    "CourseEnrollmentEventsTask",
    "CourseEnrollmentSummaryTask",
    "CourseEnrollmentTask",
    "CourseMetaSummaryEnrollmentIntoMysql",
    "EnrollmentByBirthYearTask",
    "EnrollmentByEducationLevelTask",
    "EnrollmentByGenderTask",
    "EnrollmentByModeTask",
    "EnrollmentDailyTask",
    "ImportEnrollmentsIntoMysql",
    "PullDiscoveryCourseRunsAPIData",
    "TotalEventsDailyTask",
    "TotalEventsReport",
    "TotalEventsReportWorkflow",
]
