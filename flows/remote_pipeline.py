"""Pipeline tasks on the analytics node, the way `remote-task` runs them: ``run-remote-pipeline``.

The story: check every task command line first; unless ``skip_setup``, make sure the node's
virtualenv ``<base>/<remote-name>/venv`` has the pipeline (the host-setup step, a no-op when
it is up to date) and put the override config in place; then run each task in turn,
``cd <base>/<remote-name> && . venv/bin/activate && launch-task ...``, as ``sudo_user`` when
given. With ``wait`` the output streams into the Prefect log line by line as it arrives and
the remote exit status decides the task's state: the first failing task fails the flow, and
the tasks after it do not run. Without ``wait`` each task is started detached (nohup), its log
under ``<log_dir>/<remote-name>/``, and the flow reports the process ids.

The seed's two remote-task calls are one run:
``tasks=["TotalEventsDailyTask --interval 2016 --output-root hdfs://localhost:9000/output/
--local-scheduler", "CourseEnrollmentEventsTask --interval 2016 --local-scheduler"]``.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
import shlex

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, field_validator

from blocks.ssh import SshIdentity
from flows.host_setup import PipelineSetup, setup_pipeline_venv
from pipeline_config.fields import NonEmptyStr
from pipeline_config.render import OverrideSettings, render_override_cfg
from tasks.host_setup import ensure_remote_file
from tasks.ssh import RemoteCommandFailed, check, execute, stream_command

FLOW_NAME = "run-remote-pipeline"
_TASK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class RemoteRun(BaseModel):
    """How the tasks run on the node (remote-task's options)."""

    wait: bool = Field(
        default=True, description="Run in the foreground, streaming the output (--wait)."
    )
    sudo_user: NonEmptyStr | None = Field(
        default="hadoop", description="Run as this user with sudo -Hu (None: the SSH login)."
    )
    log_dir: NonEmptyStr = Field(
        default="/var/log/analytics-tasks",
        description="Detached runs log under `<log_dir>/<remote-name>/`.",
    )
    task_timeout_seconds: float = Field(default=86400, gt=0, description="Per task.")

    @field_validator("sudo_user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z_][a-z0-9_-]*", value):
            raise ValueError(f"sudo_user {value!r} is not a user name")
        return value


def parse_task_line(line: str) -> list[str]:
    """`TaskName --param value ...` as words; the first must be a task name.

    Raises:
        ValueError: naming the line (unbalanced quotes, no task name).
    """
    try:
        words = shlex.split(line)
    except ValueError as error:
        raise ValueError(f"task line {line!r}: {error}") from None
    if not words or not _TASK_NAME.fullmatch(words[0]):
        raise ValueError(
            f"task line {line!r}: expected a task name first, e.g. TotalEventsDailyTask"
        )
    return words


def task_inner(words: list[str], home: str) -> str:
    """`cd <home> && . <home>/venv/bin/activate && launch-task ...` (words quoted)."""
    q = shlex.quote
    venv = posixpath.join(home, "venv")
    return f"cd {q(home)} && . {q(venv)}/bin/activate && " + shlex.join(["launch-task", *words])


def task_command(words: list[str], home: str, sudo_user: str | None) -> str:
    """The shell command that runs launch-task in `home` with its venv, maybe as `sudo_user`."""
    return _as_user(task_inner(words, home), sudo_user)


def _as_user(inner: str, sudo_user: str | None) -> str:
    if sudo_user:
        return f"sudo -n -Hu {shlex.quote(sudo_user)} bash -c {shlex.quote(inner)}"
    return f"bash -c {shlex.quote(inner)}"


@task(
    name="remote-launch-task",
    task_run_name="launch-task {words[0]} on {host}",
    cache_policy=NO_CACHE,
    retries=0,  # a rerun is the operator's call: Luigi targets make it redo only what failed
)
def run_remote_task(
    identity: SshIdentity, host: str, words: list[str], command: str, timeout: float
) -> dict:
    """Run one pipeline task, streaming its output into the log; non-zero exit -> failed."""
    logger = get_run_logger()
    logger.info("%s: %s", host, command)
    client = identity.connect(host)
    try:
        result = stream_command(
            client, command, host=host, timeout=timeout,
            on_line=lambda line: logger.info("%s | %s", host, line),
        )  # fmt: skip
    finally:
        client.close()
    if not result.ok:
        raise RemoteCommandFailed(result)
    logger.info("%s: %s exited 0 after %.1fs", host, words[0], result.seconds)
    return {"task": words[0], "exit_status": 0, "seconds": round(result.seconds, 2)}


@task(name="start-remote-task", task_run_name="start {words[0]} on {host}", cache_policy=NO_CACHE)
def start_remote_task(
    identity: SshIdentity,
    host: str,
    words: list[str],
    inner: str,
    log_file: str,
    sudo_user: str | None,
) -> dict:
    """Start one task detached (nohup); returns its pid and log file."""
    q = shlex.quote
    detached = (
        f"mkdir -p {q(posixpath.dirname(log_file))} && nohup bash -c {q(inner)} "
        f"> {q(log_file)} 2>&1 < /dev/null & echo $!"
    )
    client = identity.connect(host)
    try:
        result = check(execute(client, _as_user(detached, sudo_user), host=host, timeout=60))
    finally:
        client.close()
    pid = result.stdout.strip().splitlines()[-1]
    get_run_logger().info("%s: started %s (pid %s), log %s", host, words[0], pid, log_file)
    return {"task": words[0], "pid": int(pid), "log": log_file}


@flow(name=FLOW_NAME)
def run_remote_pipeline(
    host: NonEmptyStr,
    tasks: list[NonEmptyStr],
    ssh_block: NonEmptyStr = "analytics-ssh",
    setup: PipelineSetup = PipelineSetup(),  # noqa: B008 - read-only parameter models
    skip_setup: bool = False,
    override_config: OverrideSettings | None = None,
    override_config_path: NonEmptyStr | None = None,
    run: RemoteRun = RemoteRun(),  # noqa: B008
) -> list[dict]:
    """Run pipeline tasks on the analytics node, one after the other.

    Args:
        host: The node's address, as in the SSH block's known_hosts.
        tasks: Task command lines, e.g. "TotalEventsDailyTask --interval 2016
            --local-scheduler" (launch-task's arguments; quoted like a shell).
        ssh_block: SSH Identity block (login, key, verified host keys).
        setup: The virtualenv (base dir, remote name, source, installer) remote-task builds.
        skip_setup: Do not check or install the virtualenv (--skip-setup).
        override_config: Settings rendered into `<base>/<remote-name>/override.cfg`.
        override_config_path: Or a file on the node copied there (--override-config).
        run: wait, sudo_user, log_dir and the per-task timeout.

    Returns:
        One row per task: exit status and seconds, or pid and log when not waiting.
    """
    logger = get_run_logger()
    parsed = [parse_task_line(line) for line in tasks]
    if not parsed:
        raise ValueError("tasks is empty: give at least one task command line")
    if override_config is not None and override_config_path:
        raise ValueError("give override_config or override_config_path, not both")
    identity = SshIdentity.load(ssh_block)
    home = setup.home
    override = posixpath.join(home, "override.cfg")
    if not skip_setup:
        setup_pipeline_venv(identity, host, setup)
    if override_config is not None:
        text = render_override_cfg(override_config).encode()
        ensure_remote_file(identity, host, override, text, 0o644, "override.cfg")
    elif override_config_path:
        q = shlex.quote
        copy = (
            f"mkdir -p {q(home)} && (cmp -s {q(override_config_path)} {q(override)} || "
            f"cp {q(override_config_path)} {q(override)})"
        )
        check(execute_once(identity, host, copy))
    rows: list[dict] = []
    try:
        for words in parsed:
            if run.wait:
                command = task_command(words, home, run.sudo_user)
                rows.append(
                    run_remote_task(identity, host, words, command, run.task_timeout_seconds)
                )
            else:
                stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
                log_file = posixpath.join(run.log_dir, setup.remote_name, f"{words[0]}-{stamp}.log")
                inner = task_inner(words, home)
                rows.append(
                    start_remote_task(identity, host, words, inner, log_file, run.sudo_user)
                )
    except BaseException as error:
        if len(rows) < len(parsed):
            failed = parsed[len(rows)][0]
            rows.append({"task": failed, "error": f"{type(error).__name__}: {error}"[:500]})
            rows += [{"task": w[0], "error": "not run"} for w in parsed[len(rows) :]]
        raise
    finally:
        create_table_artifact(
            key=f"remote-pipeline-{re.sub(r'[^a-z0-9]+', '-', setup.remote_name.lower())}",
            table=rows or [{"task": "-", "error": "nothing ran"}],
            description=f"**{FLOW_NAME}** on {host} ({setup.remote_name})",
        )
    logger.info("%s: %d tasks %s", host, len(rows), "done" if run.wait else "started")
    return rows


def execute_once(identity: SshIdentity, host: str, command: str):
    client = identity.connect(host)
    try:
        return execute(client, command, host=host, timeout=identity.command_timeout)
    finally:
        client.close()
