"""What `remote-task` does on the node, without Prefect: shared by the `remote-task` command
line and the `run-remote-pipeline` flow.

On the node, in `<base>/<remote-name>/` (see `remote.setup`): the override config is put at
`override.cfg`, then each task runs as
`cd <base>/<remote-name> && . venv/bin/activate && launch-task <Task> <args>`, as the sudo user
(`sudo -n -Hu <user> bash -c ...`; directly when that is the login itself), either in the
foreground with its output streamed line by line and its exit status returned, or detached
(nohup) with its output in a log file on the node.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
import shlex
from collections.abc import Callable

from pydantic import BaseModel, Field, field_validator

from pipeline.errors import InvalidInput
from pipeline_config.fields import NonEmptyStr
from remote.setup import PipelineSetup, StepResult, put_file
from remote.ssh import CommandResult, Connector, open_session, run_command

_TASK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]*")


class RemoteRun(BaseModel):
    """How the tasks run on the node (remote-task's options)."""

    wait: bool = Field(
        default=True, description="Run in the foreground, streaming the output (--wait)."
    )
    sudo_user: NonEmptyStr | None = Field(
        default="hadoop",
        description="Run as this user with sudo -Hu (None, or the login itself: directly).",
    )
    log_dir: NonEmptyStr = Field(
        default="/var/log/analytics-tasks",
        description="Detached runs log under `<log_dir>/<remote-name>/`.",
    )
    task_timeout_seconds: float = Field(default=86400, gt=0, description="Per task.")

    @field_validator("sudo_user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is not None and not _USER_NAME.fullmatch(value):
            raise ValueError(f"sudo_user {value!r} is not a user name")
        return value


def parse_task_line(line: str) -> list[str]:
    """`TaskName --param value ...` as words; the first must be a task name.

    Raises:
        InvalidInput: naming the line (unbalanced quotes, no task name).
    """
    try:
        words = shlex.split(line)
    except ValueError as error:
        raise InvalidInput(f"task line {line!r}: {error}") from None
    if not words or not _TASK_NAME.fullmatch(words[0]):
        raise InvalidInput(
            f"task line {line!r}: expected a task name first, e.g. TotalEventsDailyTask"
        )
    return words


def task_words(words: list[str]) -> list[str]:
    """launch-task's arguments as given on a command line; the first must be a task name.

    Raises:
        InvalidInput: naming what came instead of a task name.
    """
    if not words or not _TASK_NAME.fullmatch(words[0]):
        given = shlex.join(words[:3]) if words else "nothing"
        raise InvalidInput(f"expected a task name and its arguments (e.g. TotalEventsDailyTask "
                           f"--interval 2016 --local-scheduler), got {given}")  # fmt: skip
    return list(words)


def task_inner(words: list[str], home: str) -> str:
    """`cd <home> && . <home>/venv/bin/activate && launch-task ...` (words quoted)."""
    q = shlex.quote
    venv = posixpath.join(home, "venv")
    return f"cd {q(home)} && . {q(venv)}/bin/activate && " + shlex.join(["launch-task", *words])


def as_user(inner: str, sudo_user: str | None, login: str | None = None) -> str:
    """`inner` run by bash as `sudo_user` (sudo -n: fail rather than ask for a password), or
    directly when there is no sudo user or it is the login itself (no sudo needed then)."""
    if sudo_user and sudo_user != login:
        return f"sudo -n -Hu {shlex.quote(sudo_user)} bash -c {shlex.quote(inner)}"
    return f"bash -c {shlex.quote(inner)}"


def task_command(
    words: list[str], home: str, sudo_user: str | None, login: str | None = None
) -> str:
    """The shell command that runs launch-task in `home` with its venv, maybe as `sudo_user`."""
    return as_user(task_inner(words, home), sudo_user, login)


def detached_log_file(log_dir: str, remote_name: str, task: str) -> str:
    """`<log_dir>/<remote_name>/<Task>-<UTC time>.log`: where a detached run writes."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return posixpath.join(log_dir, remote_name, f"{task}-{stamp}.log")


def put_override(connector: Connector, host: str, setup: PipelineSetup, data: bytes) -> StepResult:
    """The setup's `override.cfg` holds exactly `data` (written only when it differs)."""
    return put_file(connector, host, setup.override_path, data, 0o644, "override.cfg")


def copy_override_on_node(connector: Connector, host: str, setup: PipelineSetup, path: str) -> None:
    """Copy `path`, a file on the node, to the setup's `override.cfg` unless already the same."""
    q = shlex.quote
    target = setup.override_path
    command = (
        f"mkdir -p {q(setup.home)} && (cmp -s {q(path)} {q(target)} || cp {q(path)} {q(target)})"
    )
    run_command(connector, host, command)


def run_task(
    connector: Connector,
    host: str,
    command: str,
    timeout: float,
    on_line: Callable[[str], None],
) -> CommandResult:
    """Run one task command (see `task_command`) in the foreground: `on_line` gets each line
    of its output (stdout and stderr merged) as it arrives; the exit status is returned, not
    raised. Raises `ConnectionLost` or `RemoteCommandTimeout` (remote.ssh)."""
    with open_session(connector, host) as session:
        return session.run(command, timeout=timeout, expect_success=False, on_line=on_line)


def start_task(
    connector: Connector,
    host: str,
    words: list[str],
    home: str,
    sudo_user: str | None,
    log_file: str,
) -> int:
    """Start one task detached (nohup), its output in `log_file` on the node; returns its pid."""
    q = shlex.quote
    detached = (
        f"mkdir -p {q(posixpath.dirname(log_file))} && nohup bash -c {q(task_inner(words, home))} "
        f"> {q(log_file)} 2>&1 < /dev/null & echo $!"
    )
    command = as_user(detached, sudo_user, connector.username)
    result = run_command(connector, host, command, timeout=60)
    return int(result.stdout.strip().splitlines()[-1])
