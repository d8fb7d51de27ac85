"""remote-task's command line and the commands it runs on the node (pure logic)."""

from __future__ import annotations

import shlex

import pytest

from remote.cli import build_parser
from remote.run import as_user, task_command, task_words

SEED_FIRST = """--host localhost --repo https://github.com/edx/edx-analytics-pipeline --user ubuntu
    --override-config /edx/etc/edx-analytics-pipeline/override.cfg --remote-name analyticstack
    --wait TotalEventsDailyTask --interval 2016 --output-root hdfs://localhost:9000/output/
    --local-scheduler"""
SEED_SECOND = """--host localhost --user ubuntu
    --override-config /edx/etc/edx-analytics-pipeline/override.cfg --remote-name analyticstack
    --skip-setup --wait CourseEnrollmentEventsTask --interval 2016 --local-scheduler"""


def test_the_seeds_command_lines_split_into_remote_tasks_options_and_launch_tasks():
    args, rest = build_parser().parse_known_args(shlex.split(SEED_FIRST))
    assert (args.host, args.user, args.remote_name, args.wait, args.skip_setup) == (
        "localhost", "ubuntu", "analyticstack", True, False,
    )  # fmt: skip
    assert args.repo == "https://github.com/edx/edx-analytics-pipeline"
    assert str(args.override_config) == "/edx/etc/edx-analytics-pipeline/override.cfg"
    assert rest == ["TotalEventsDailyTask", "--interval", "2016", "--output-root",
                    "hdfs://localhost:9000/output/", "--local-scheduler"]  # fmt: skip

    args, rest = build_parser().parse_known_args(shlex.split(SEED_SECOND))
    assert args.skip_setup and args.wait and args.sudo_user == "hadoop"
    assert rest == ["CourseEnrollmentEventsTask", "--interval", "2016", "--local-scheduler"]


def test_sudo_only_when_the_sudo_user_is_someone_else():
    assert as_user("id", "hadoop", "ubuntu") == "sudo -n -Hu hadoop bash -c id"
    assert as_user("id", "ubuntu", "ubuntu") == "bash -c id"
    assert as_user("id", None, "ubuntu") == "bash -c id"
    command = task_command(["TotalEventsDailyTask", "--interval", "2016"], "/v/a", "hadoop", "root")
    assert command == (
        "sudo -n -Hu hadoop bash -c 'cd /v/a && . /v/a/venv/bin/activate && "
        "launch-task TotalEventsDailyTask --interval 2016'"
    )


def test_the_first_word_for_launch_task_must_be_a_task_name():
    assert task_words(["T", "--x", "1"]) == ["T", "--x", "1"]
    for bad in ([], ["--interval", "2016"], ["/bin/sh"]):
        with pytest.raises(ValueError, match="expected a task name"):
            task_words(bad)
