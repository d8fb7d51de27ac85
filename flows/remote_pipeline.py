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

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from blocks.ssh import SshIdentity
from domain.names import artifact_key
from pipeline.errors import InvalidInput
from pipeline_config.fields import NonEmptyStr
from pipeline_config.render import OverrideSettings, render_override_cfg
from remote.run import (
    RemoteRun,
    copy_override_on_node,
    detached_log_file,
    parse_task_line,
    run_task,
    start_task,
    task_command,
)
from remote.setup import PipelineSetup
from tasks.host_setup import ensure_pipeline_venv, ensure_remote_file
from tasks.parameters import fill_from_deployment
from tasks.ssh import RemoteCommandFailed

__all__ = ["RemoteRun", "parse_task_line", "run_remote_pipeline", "task_command"]

FLOW_NAME = "run-remote-pipeline"


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
    result = run_task(identity, host, command, timeout,
                      on_line=lambda line: logger.info("%s | %s", host, line))  # fmt: skip
    if not result.ok:
        raise RemoteCommandFailed(result)
    logger.info("%s: %s exited 0 after %.1fs", host, words[0], result.seconds)
    return {"task": words[0], "exit_status": 0, "seconds": round(result.seconds, 2)}


@task(name="start-remote-task", task_run_name="start {words[0]} on {host}", cache_policy=NO_CACHE)
def start_remote_task(
    identity: SshIdentity,
    host: str,
    words: list[str],
    home: str,
    log_file: str,
    sudo_user: str | None,
) -> dict:
    """Start one task detached (nohup); returns its pid and log file."""
    pid = start_task(identity, host, words, home, sudo_user, log_file)
    get_run_logger().info("%s: started %s (pid %s), log %s", host, words[0], pid, log_file)
    return {"task": words[0], "pid": pid, "log": log_file}


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
    setup, override_config, run = fill_from_deployment(
        setup=setup, override_config=override_config, run=run
    )
    logger = get_run_logger()
    parsed = [parse_task_line(line) for line in tasks]
    if not parsed:
        raise InvalidInput("tasks is empty: give at least one task command line")
    if override_config is not None and override_config_path:
        raise InvalidInput("give override_config or override_config_path, not both")
    identity = SshIdentity.load(ssh_block)
    home = setup.home
    if not skip_setup:
        ensure_pipeline_venv(identity, host, setup)
    if override_config is not None:
        text = render_override_cfg(override_config).encode()
        ensure_remote_file(identity, host, setup.override_path, text, 0o644, "override.cfg")
    elif override_config_path:
        copy_override_on_node(identity, host, setup, override_config_path)
    rows: list[dict] = []
    try:
        for words in parsed:
            if run.wait:
                command = task_command(words, home, run.sudo_user, identity.username)
                rows.append(
                    run_remote_task(identity, host, words, command, run.task_timeout_seconds)
                )
            else:
                log_file = detached_log_file(run.log_dir, setup.remote_name, words[0])
                rows.append(start_remote_task(identity, host, words, home, log_file, run.sudo_user))
    except BaseException as error:
        if len(rows) < len(parsed):
            failed = parsed[len(rows)][0]
            rows.append({"task": failed, "error": f"{type(error).__name__}: {error}"[:500]})
            rows += [{"task": w[0], "error": "not run"} for w in parsed[len(rows) :]]
        raise
    finally:
        create_table_artifact(
            key=f"remote-pipeline-{artifact_key(setup.remote_name, 'pipeline')}",
            table=rows or [{"task": "-", "error": "nothing ran"}],
            description=f"**{FLOW_NAME}** on {host} ({setup.remote_name})",
        )
    logger.info("%s: %d tasks %s", host, len(rows), "done" if run.wait else "started")
    return rows
