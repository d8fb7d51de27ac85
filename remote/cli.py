"""``remote-task``: run a pipeline task on another machine, with upstream's command line.

    remote-task --host 192.168.122.120 --user ubuntu --remote-name analyticstack \\
        --override-config override.cfg --wait \\
        TotalEventsDailyTask --interval 2016 --output-root /edx/var/hadoop/output/ --local-scheduler

Every argument that is not one of remote-task's options goes to ``launch-task`` on the node.
On AWS, ``--job-flow-id J`` or ``--job-flow-name NAME`` replaces ``--host``: the node is the
master of EMR cluster J, or of the newest cluster NAME that is not terminated (``--port``,
``--region``; credentials from the standard AWS chain); a master not in known_hosts must
present the key cloud-init printed on its console output.
Unless ``--skip-setup``, the node's virtualenv ``<base>/<remote-name>/venv`` is made to hold the
pipeline first (this project's source, or ``--repo``/``--branch``; a no-op when up to date).
The host key is always verified against ``--known-hosts`` (default ``~/.ssh/known_hosts``):
an unknown or changed key is refused before anything is sent. With ``--wait`` the output
streams here and the exit status is the remote task's; without it the task starts detached on
the node. The same steps as the ``run-remote-pipeline`` flow (``remote.setup``, ``remote.run``).

Exit status: the remote task's (with --wait); 2 for a bad command line; 255 when the host
cannot be reached, is not trusted, or the connection was lost; 1 when the setup failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
from dataclasses import dataclass
from pathlib import Path

import paramiko
from pydantic import ValidationError

from domain.names import known_hosts_label
from remote.emr import (
    EmrClusterNotFound,
    EmrMasterUnavailable,
    console_output,
    find_master,
    master_host_keys,
)
from remote.host_keys import HostKeyNotVerified
from remote.run import (
    RemoteRun,
    detached_log_file,
    put_override,
    run_task,
    start_task,
    task_command,
    task_words,
)
from remote.setup import PipelineSetup, ensure_venv
from remote.ssh import (
    ConnectionLost,
    RemoteCommandFailed,
    RemoteCommandTimeout,
    SshError,
    connect,
    known_host_keys,
    load_private_key,
    parse_known_hosts,
)

#: Exit statuses of remote-task itself (ssh uses 255 for its own failures too).
EXIT_USAGE, EXIT_SETUP, EXIT_SSH = 2, 1, 255


@dataclass
class Login:
    """The command line's SSH login: a key file (or the agent) and the verified host keys."""

    username: str
    pkey: paramiko.PKey | None
    trusted: paramiko.HostKeys
    known_hosts: str  # where `trusted` comes from, for messages
    port: int = 22
    connect_timeout: float = 15
    command_timeout: float = 600

    def connect(self, host: str, port: int | None = None) -> paramiko.SSHClient:
        return connect(
            host, port or self.port, self.username, self.pkey, self.trusted,
            timeout=self.connect_timeout, known_hosts=self.known_hosts,
            fix_changed=f"replace its line in {self.known_hosts} "
                        f"(`ssh-keygen -R '{host}' -f {self.known_hosts}` removes the old one)",
        )  # fmt: skip


def read_known_hosts(path: Path) -> tuple[paramiko.HostKeys, str]:
    """The host keys in `path` (none when it is missing) and how messages name it.

    Raises:
        ValueError: naming the file and line.
    """
    if not path.exists():
        return paramiko.HostKeys(), f"{path}, which does not exist"
    try:
        return parse_known_hosts(path.read_text()), str(path)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"--known-hosts {path}: {error}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remote-task",
        description="Run a launch-task command on another machine over SSH (host keys verified).",
        epilog="Every other argument is passed to launch-task on the node, e.g. "
        "TotalEventsDailyTask --interval 2016 --local-scheduler.",
        allow_abbrev=False,  # an abbreviation would swallow launch-task's own options
    )
    add = parser.add_argument
    add("--host", help="The node: HOST or HOST:PORT (default port 22).")
    add("--job-flow-id", metavar="J", help="Instead of --host: the master of EMR cluster J.")
    add(
        "--job-flow-name",
        metavar="NAME",
        help="Instead of --host: the master of the newest EMR cluster NAME not terminated.",
    )
    # No default: a --port beside --host would be ignored unseen, so it is refused instead.
    add("--port", type=int, help="SSH port with --job-flow-* (default 22; --host takes HOST:PORT).")
    add("--region", help="AWS region with --job-flow-* (default: the AWS configuration's).")
    add("--user", default=getpass.getuser(), help="Login user (default: yours).")
    add("--private-key", type=Path, help="Login key file (default: ssh-agent, ~/.ssh/id_*).")
    add(
        "--known-hosts",
        type=Path,
        default=Path("~/.ssh/known_hosts").expanduser(),
        help="Verified host keys, OpenSSH's format (default: ~/.ssh/known_hosts).",
    )
    add("--repo", help="Install this git repository on the node (default: this project).")
    add("--branch", default="master", help="Branch of --repo (default: master).")
    add(
        "--remote-name",
        default="analyticstack",
        help="The task's directory on the node, under --base-dir (default: analyticstack).",
    )
    add("--override-config", type=Path, help="Local config file put on the node as override.cfg.")
    add("--skip-setup", action="store_true", help="Use the node's virtualenv as it is.")
    add(
        "--wait",
        action="store_true",
        help="Run in the foreground, streaming the output; exit with the task's status.",
    )
    add(
        "--sudo-user",
        default="hadoop",
        help="Run the task as this user with sudo (default: hadoop; the login: no sudo).",
    )
    add(
        "--log-path",
        type=Path,
        help="Local directory that also receives the task's output (with --wait).",
    )
    add(
        "--base-dir",
        default="/var/lib/analytics-tasks",
        help="Where the tasks' directories are on the node (default: /var/lib/analytics-tasks).",
    )
    add(
        "--remote-log-dir",
        default="/var/log/analytics-tasks",
        help="Detached runs log under DIR/<remote-name>/ on the node.",
    )
    add("--installer", choices=("pip", "uv"), default="pip", help="Installer on the node.")
    add("--python", default="python3", help="Python the node's virtualenv is made with.")
    add(
        "--install-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="Extra installer option, e.g. --install-option=--offline (repeatable).",
    )
    add("--task-timeout", type=float, default=86400, help="Seconds the task may run (--wait).")
    add("--package", action="append", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, task_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        host, login, setup, run, words = _settings(args, task_args)
    except (ValueError, OSError) as error:
        print(f"remote-task: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if not args.host:
            host = _emr_master(args, login)
        return _remote_task(host, login, setup, run, words, args)
    except (EmrClusterNotFound, EmrMasterUnavailable) as error:  # or AWS would not say
        print(f"remote-task: {error}", file=sys.stderr)
        return EXIT_SSH
    except HostKeyNotVerified as error:
        print(f"remote-task: {error}", file=sys.stderr)
        return EXIT_SSH
    except (ConnectionLost, RemoteCommandTimeout) as error:
        print(f"remote-task: {error}", file=sys.stderr)
        return EXIT_SSH
    except RemoteCommandFailed as error:  # a setup step's command
        print(f"remote-task: setup failed: {error}", file=sys.stderr)
        return EXIT_SETUP
    except SshError as error:  # unknown or changed host key, unreachable, login refused
        print(f"remote-task: {error}", file=sys.stderr)
        return EXIT_SSH
    except ValueError as error:  # e.g. a git branch that does not exist
        print(f"remote-task: setup failed: {error}", file=sys.stderr)
        return EXIT_SETUP
    except KeyboardInterrupt:
        print("remote-task: interrupted; a task that had started may still run on the node",
              file=sys.stderr)  # fmt: skip
        return 130


def _settings(args, task_args: list[str]):
    """Everything checked before the first connection; ValueError names the bad option."""
    targets = [flag for flag, value in (("--host", args.host), ("--job-flow-id", args.job_flow_id),
               ("--job-flow-name", args.job_flow_name)) if value]  # fmt: skip
    if len(targets) != 1:
        raise ValueError("give one of --host, --job-flow-id, --job-flow-name"
                         + (f" (not {' and '.join(targets)})" if targets else ""))  # fmt: skip
    if args.package:
        raise ValueError(
            f"--package {args.package[0]}: extra packages are not supported; "
            "install them with --install-option or from --repo's dependencies"
        )
    if args.host:
        if args.port is not None:
            raise ValueError(f"--port {args.port} goes with --job-flow-*: give --host HOST:PORT")
        if args.region:
            raise ValueError(f"--region {args.region} goes with --job-flow-* (EMR), not --host")
        given = args.host
        host, _, port_text = given.rpartition(":") if ":" in given else (given, "", "22")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"--host {args.host!r}: expected HOST or HOST:PORT")
    elif args.port is not None and not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port}: expected 1-65535")
    else:  # the EMR master, looked up once the whole command line is checked
        host, port_text = None, str(args.port or 22)
    if not task_args:
        raise ValueError("no task given: e.g. remote-task --host H --wait TotalEventsDailyTask ...")
    words = task_words(task_args)
    pkey = _private_key(args.private_key) if args.private_key else None
    trusted, known_hosts = read_known_hosts(args.known_hosts)
    login = Login(args.user, pkey, trusted, known_hosts, int(port_text))
    try:
        setup = PipelineSetup(
            base_dir=args.base_dir, remote_name=args.remote_name,
            source="git" if args.repo else "project", repo=args.repo, branch=args.branch,
            installer=args.installer, python=args.python, install_options=args.install_option,
        )  # fmt: skip
        run = RemoteRun(wait=args.wait, sudo_user=args.sudo_user, log_dir=args.remote_log_dir,
                        task_timeout_seconds=args.task_timeout)  # fmt: skip
    except ValidationError as error:
        raise ValueError("; ".join(e["msg"].removeprefix("Value error, ")
                                   for e in error.errors())) from None  # fmt: skip
    override = args.override_config
    if override is not None and not override.is_file():
        raise ValueError(f"--override-config {override}: no such file")
    return host, login, setup, run, words


def _emr_master(args, login: Login) -> str:
    """The EMR master's address; its host key trusted (known_hosts, else the console's
    cloud-init fingerprints) in `login.trusted` for this run."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        session = boto3.session.Session(region_name=args.region)
        master = find_master(session.client("emr"), job_flow_id=args.job_flow_id,
                             name=args.job_flow_name)  # fmt: skip
        console = "" if known_host_keys(login.trusted, known_hosts_label(master.host, login.port)) \
            else console_output(session.client("ec2"), master.instance_id)  # fmt: skip
    except (BotoCoreError, ClientError) as error:
        raise EmrMasterUnavailable(f"asking AWS for the EMR cluster: {error}") from None
    print(f"remote-task: EMR cluster {master.cluster_id} ({master.cluster_name}, {master.state}): "
          f"master {master.host}", file=sys.stderr, flush=True)  # fmt: skip
    remedy = f"and, when it is the same, add the master's line to {login.known_hosts}"
    verdict = master_host_keys(master, login.port, login.trusted, console, remedy=remedy)
    if verdict is not None:
        print(f"remote-task: {verdict.label}: host key {verdict.key_type} {verdict.fingerprint} "
              "matches the master's console output (cloud-init)", file=sys.stderr)  # fmt: skip
    return master.host


def _private_key(path: Path) -> paramiko.PKey:
    """The key in `path`; an encrypted one asks for its passphrase on a terminal."""
    text = path.read_text()
    try:
        return load_private_key(text, None, str(path))
    except ValueError as error:
        if "encrypted" not in str(error):
            raise ValueError(f"--private-key {path}: {error}") from None
        if not sys.stdin.isatty():
            raise ValueError(
                f"--private-key {path} is encrypted: run on a terminal to type its "
                "passphrase, or leave --private-key out to use ssh-agent"
            ) from None
    return load_private_key(text, getpass.getpass(f"Passphrase for {path}: "), str(path))


def _remote_task(host, login, setup, run, words, args) -> int:
    def note(message: str) -> None:
        print(f"remote-task: {message}", file=sys.stderr, flush=True)

    if not args.skip_setup:
        step = ensure_venv(login, host, setup, log=note)
        note(f"setup {step.status}: {step.detail}")
    if args.override_config is not None:
        step = put_override(login, host, setup, args.override_config.read_bytes())
        note(f"override.cfg {step.status}: {step.detail}")
    if not run.wait:
        log_file = detached_log_file(run.log_dir, setup.remote_name, words[0])
        pid = start_task(login, host, words, setup.home, run.sudo_user, log_file)
        note(f"started {words[0]} on {host} (pid {pid}), log {log_file} there")
        if args.log_path:
            note("--log-path needs --wait: the output is in the log file on the node")
        return 0
    command = task_command(words, setup.home, run.sudo_user, login.username)
    note(f"{host}: {command}")
    log = None
    if args.log_path:
        args.log_path.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        log = (args.log_path / f"{setup.remote_name}-{words[0]}-{stamp}.log").open("w")

    def on_line(line: str) -> None:
        print(line, flush=True)
        if log is not None:
            log.write(line + "\n")
            log.flush()

    try:
        result = run_task(login, host, command, run.task_timeout_seconds, on_line)
    finally:
        if log is not None:
            log.close()
    note(f"{words[0]} on {host} exited {result.exit_status} after {result.seconds:.1f}s")
    return result.exit_status


if __name__ == "__main__":
    sys.exit(main())
