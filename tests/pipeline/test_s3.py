"""Logs on S3 in, results to S3 out, through boto3 against the moto server."""

import gzip
import json

import pytest

from tests.pipeline.conftest import GZ_PATTERN, Workspace

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("engine")]


def put_log(s3, key, events):
    body = gzip.compress(("\n".join(json.dumps(e) for e in events) + "\n").encode())
    s3.put_object(Bucket="tracking", Key=key, Body=body)


def test_total_events_from_s3_logs_to_s3_output(workspace: Workspace, aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="tracking")
    s3.create_bucket(Bucket="results")
    put_log(s3, "logs/lms1/tracking.log-20160301.gz", [{"time": "2016-03-01T01:00:00+00:00"}] * 4)
    put_log(s3, "logs/lms2/tracking.log-20160302.gz", [{"time": "2016-03-02T01:00:00+00:00"}] * 2)
    s3.put_object(Bucket="tracking", Key="logs/lms2/", Body=b"")  # a "directory" marker: skipped
    result = workspace.launch(
        "TotalEventsReportWorkflow",
        "--local-scheduler",
        "--interval",
        "2016-03",
        "--source",
        '["s3://tracking/logs/"]',
        "--pattern",
        json.dumps([GZ_PATTERN]),
        "--counts",
        "s3://results/counts/",
        "--report",
        "s3://results/report.csv",
        env=aws.env(),
    )
    assert result.returncode == 0, result.output
    part = s3.get_object(Bucket="results", Key="counts/part-00000")["Body"].read().decode()
    assert part == "2016-03-01\t4\n2016-03-02\t2\n"
    assert s3.head_object(Bucket="results", Key="counts/_SUCCESS")
    report = s3.get_object(Bucket="results", Key="report.csv")["Body"].read().decode()
    assert report == "date,event_count\n2016-03-02,2\n2016-03-01,4\n"


def test_enrollment_events_to_an_s3_warehouse(workspace: Workspace, aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="tracking")
    event = {
        "event_type": "edx.course.enrollment.activated",
        "time": "2016-03-01T01:00:00+00:00",
        "event": {"course_id": "a/b/c", "user_id": 5, "mode": "audit"},
    }
    put_log(s3, "logs/tracking.log-20160301.gz", [event])
    result = workspace.launch(
        "CourseEnrollmentEventsTask",
        "--local-scheduler",
        "--interval",
        "2016-03-01",
        "--source",
        '["s3://tracking/logs/"]',
        "--pattern",
        json.dumps([GZ_PATTERN]),
        "--warehouse-path",
        "s3://tracking/warehouse/",
        env=aws.env(),
    )
    assert result.returncode == 0, result.output
    key = "warehouse/course_enrollment_events/dt=2016-03-01/course_enrollment_events_2016-03-01"
    body = s3.get_object(Bucket="tracking", Key=key)["Body"].read().decode()
    assert body == "a/b/c\t5\t2016-03-01T01:00:00.000000\tedx.course.enrollment.activated\taudit\n"


def test_day_partitions_in_an_s3_warehouse_and_a_missing_s3_source(workspace: Workspace, aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="tracking")
    put_log(s3, "logs/tracking.log-20160301.gz", [{"time": "2016-03-01T01:00:00+00:00"}] * 3)
    put_log(s3, "logs/tracking.log-20160303.gz", [{"time": "2016-03-03T01:00:00+00:00"}])

    def workflow(interval, source="s3://tracking/logs/"):
        return workspace.launch(
            "TotalEventsReportWorkflow", "--local-scheduler", "--interval", interval,
            "--source", json.dumps([source]), "--pattern", json.dumps([GZ_PATTERN]),
            "--warehouse-path", "s3://tracking/warehouse/", "--overwrite-n-days", "1",
            "--counts", "s3://tracking/counts/", "--report", "s3://tracking/report.csv",
            env=aws.env(),
        )  # fmt: skip

    assert workflow("2016-03-01-2016-03-03").returncode == 0
    result = workflow("2016-03-01-2016-03-04")
    assert result.returncode == 0, result.output
    keys = {
        obj["Key"]: obj["Size"]
        for obj in s3.list_objects_v2(Bucket="tracking", Prefix="warehouse/")["Contents"]
    }
    # 2016-03-02 has no events: an empty partition, so the next night does not read it again
    assert keys == {
        "warehouse/total_events_daily/dt=2016-03-01/part-00000": len("2016-03-01\t3\n"),
        "warehouse/total_events_daily/dt=2016-03-02/part-00000": 0,
        "warehouse/total_events_daily/dt=2016-03-03/part-00000": len("2016-03-03\t1\n"),
    }
    report = s3.get_object(Bucket="tracking", Key="report.csv")["Body"].read().decode()
    assert report == "date,event_count\n2016-03-03,1\n2016-03-01,3\n"

    missing = workflow("2016-03-01-2016-03-05", source="s3://tracking/no-such-prefix/")
    assert missing.returncode == 30, missing.output
    assert "s3://tracking/no-such-prefix/ does not exist" in missing.stderr
