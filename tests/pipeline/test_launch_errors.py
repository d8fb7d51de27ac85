"""launch-task's command-line errors: one line naming the parameter and its value, exit 2,
no traceback, and no run summary (nothing ran)."""

from __future__ import annotations

import json

import pytest

from tests.pipeline.conftest import Workspace

SUMMARY = "No pipeline task finished in this run"


def one_line_usage_error(result) -> str:
    """The single stderr line of a usage error (exit 2, no traceback, no run summary)."""
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    assert SUMMARY not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("launch-task: "), lines
    return lines[0]


def counts_args(workspace: Workspace, interval: str) -> list[str]:
    return ["TotalEventsDailyTask", "--local-scheduler", "--interval", interval,
            *workspace.source_args(), "--output-root", str(workspace.root / "out")]  # fmt: skip


def test_an_unknown_task_suggests_the_nearest_name(workspace: Workspace):
    line = one_line_usage_error(workspace.launch("TotalEventsDailyTsk", "--local-scheduler"))
    assert "unknown task 'TotalEventsDailyTsk'; did you mean TotalEventsDailyTask" in line


@pytest.mark.parametrize("interval", ["2016-13-01", "2016-02-30", "last-week"])
def test_a_bad_interval_is_named_with_its_value(workspace: Workspace, interval: str):
    workspace.logs.mkdir()
    line = one_line_usage_error(workspace.launch(*counts_args(workspace, interval)))
    assert f"--interval '{interval}': not a date interval" in line
    assert "2016-03-01-2016-03-08" in line  # the forms it accepts
    assert not (workspace.root / "out").exists()


@pytest.mark.parametrize(
    ("interval", "what"),
    [("2016-03-05-2016-03-01", "ends before it starts"), ("2016-03-05-2016-03-05", "is empty")],
)
def test_a_reversed_or_empty_interval_is_refused_and_nothing_is_marked_done(
    workspace: Workspace, interval: str, what: str
):
    workspace.logs.mkdir()
    line = one_line_usage_error(workspace.launch(*counts_args(workspace, interval)))
    assert f"--interval '{interval}' {what}" in line
    assert not (workspace.root / "out").exists()


def test_bad_json_in_a_list_parameter_is_named_with_its_value(workspace: Workspace):
    args = ["TotalEventsDailyTask", "--local-scheduler", "--interval", "2016",
            "--source", json.dumps([str(workspace.logs) + "/"]), "--pattern", "[bad",
            "--output-root", str(workspace.root / "out")]  # fmt: skip
    line = one_line_usage_error(workspace.launch(*args))
    assert "--pattern '[bad': not valid JSON" in line


def test_a_missing_parameter_is_named(workspace: Workspace):
    line = one_line_usage_error(
        workspace.launch("TotalEventsDailyTask", "--local-scheduler", "--interval", "2016")
    )
    assert "TotalEventsDailyTask needs --source, --output-root" in line


@pytest.mark.parametrize("args", [["--help"], ["TotalEventsDailyTask", "--help"]])
def test_help_is_not_followed_by_a_run_summary(workspace: Workspace, args: list[str]):
    result = workspace.launch(*args)
    assert result.returncode == 0, result.output
    assert "--local-scheduler" in result.output
    assert SUMMARY not in result.output


def test_luigis_own_usage_errors_exit_2_without_a_run_summary(workspace: Workspace):
    result = workspace.launch("TotalEventsDailyTask", "--local-scheduler", "--bogus", "1")
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus 1" in result.stderr
    assert SUMMARY not in result.output and "Traceback" not in result.output


def test_bad_json_in_a_config_file_names_the_option(workspace: Workspace):
    workspace.logs.mkdir()
    (workspace.root / "override.cfg").write_text(
        f'[event-logs]\nsource = ["{workspace.logs}/"]\npattern = [bad\n'
    )
    line = one_line_usage_error(
        workspace.launch(
            "TotalEventsDailyTask",
            "--local-scheduler",
            "--interval",
            "2016",
            "--output-root",
            str(workspace.root / "out"),
        )  # fmt: skip
    )
    assert "[event-logs] pattern (from the config files): not valid JSON" in line
