"""Idempotent host-setup steps over SSH (paramiko, host keys verified): check, then change.

Every step looks first and changes only what differs, returning a `StepResult` whose status is
`ok` (nothing to do) or `changed`; a second run of a successful setup is all `ok`. Secrets
(private keys, database passwords) come from blocks, travel over SFTP into files created with
mode 0600, and never appear in commands, logs or results.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import paramiko
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.ssh import SshIdentity, known_host_keys
from tasks.host_keys import (
    ConsoleKeys,
    fetch_host_key,
    known_hosts_label,
    known_hosts_with,
    parse_console_keys,
    verify_host_key,
)
from tasks.ssh import (
    check,
    execute,
    read_remote_file,
    remote_path,
    write_remote_file,
)

if TYPE_CHECKING:
    from openstack.connection import Connection

    from blocks.database import MySqlDatabase

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: What goes into the source archive of this project (what the wheel is built from).
PROJECT_FILES = ("pyproject.toml", "README.md")
PROJECT_PACKAGES = ("pipeline", "pipeline_config", "flows", "tasks", "blocks")
_SOURCE_SUFFIXES = (".py", ".cfg", ".template", ".c")
#: Marker in the virtualenv recording what was installed into it.
MARKER = ".edx-ops-flows-installed"


@dataclass(frozen=True)
class StepResult:
    """One step on one host: `ok` (already as wanted) or `changed` (made so now)."""

    step: str
    host: str
    status: Literal["ok", "changed"]
    detail: str = ""


# -- host keys -------------------------------------------------------------------------------------


def console_keys(conn: Connection, server_id: str) -> ConsoleKeys:
    """cloud-init's host key fingerprints from the server's Nova console log (empty if none)."""
    output = conn.compute.get_server_console_output(server_id)
    text = output.get("output", "") if isinstance(output, dict) else str(output or "")
    return parse_console_keys(text or "")


@task(name="verify-host-key", task_run_name="verify-host-key {address}", cache_policy=NO_CACHE)
def verify_and_record_host_key(
    conn: Connection | None,
    identity: SshIdentity,
    server_id: str | None,
    address: str,
    trust_on_first_use: bool = False,
    timeout: float = 15,
) -> tuple[StepResult, str]:
    """Check the key `address` presents; return the step and the (maybe extended) known_hosts.

    Raises HostKeyMismatch (a changed key) or HostKeyNotVerified (see tasks.host_keys).
    """
    trusted = identity.host_keys()
    known = known_host_keys(trusted, known_hosts_label(address, identity.port))
    presented = fetch_host_key(address, identity.port, timeout, known)
    # a known host is judged by known_hosts alone: the console only vouches for new hosts
    console = console_keys(conn, server_id) if not known and conn and server_id else ConsoleKeys()
    verdict = verify_host_key(
        address, identity.port, presented, trusted, console, trust_on_first_use=trust_on_first_use
    )
    detail = f"{verdict.key_type} {verdict.fingerprint} ({verdict.source})"
    text = identity.known_hosts
    if verdict.status == "changed":
        text = known_hosts_with(text, verdict.label, presented)
        get_run_logger().info("%s: recorded host key %s", verdict.label, detail)
    return StepResult("host key", address, verdict.status, detail), text


# -- keys ----------------------------------------------------------------------------------------


def public_key_line(identity: SshIdentity, comment: str = "") -> str:
    """`<type> <base64> [comment]` of the identity's private key."""
    key = identity.load_private_key()
    return " ".join(filter(None, [key.get_name(), key.get_base64(), comment]))


def _sftp(identity: SshIdentity, host: str) -> tuple[paramiko.SSHClient, paramiko.SFTPClient]:
    client = identity.connect(host)
    try:
        sftp = client.open_sftp()
        channel = sftp.get_channel()
        if channel is not None:
            channel.settimeout(identity.command_timeout)
    except BaseException:
        client.close()
        raise
    return client, sftp


def _ensure_dir(sftp: paramiko.SFTPClient, path: str, mode: int) -> bool:
    """Create `path` with `mode` (missing parents 0755) when missing; True if it was created."""
    try:
        sftp.stat(path)
        return False
    except FileNotFoundError:
        parent = posixpath.dirname(path.rstrip("/"))
        if parent and parent != path:
            _ensure_dir(sftp, parent, 0o755)
        sftp.mkdir(path, mode)
        sftp.chmod(path, mode)
        return True


@task(name="ensure-authorized-key", task_run_name="authorized-key {host}", cache_policy=NO_CACHE)
def ensure_authorized_key(
    identity: SshIdentity,
    host: str,
    public_key: str,
    authorized_keys: str = "~/.ssh/authorized_keys",
) -> StepResult:
    """`ssh-copy-id`: append `public_key` to `authorized_keys` unless that key is listed."""
    kind, b64 = public_key.split()[:2]
    client, sftp = _sftp(identity, host)
    try:
        path = remote_path(sftp, authorized_keys)
        _ensure_dir(sftp, posixpath.dirname(path), 0o700)
        current = (read_remote_file(sftp, path) or b"").decode(errors="replace")
        listed = any(_lists_key(line, kind, b64) for line in current.splitlines())
        if listed:
            return StepResult("authorized key", host, "ok", f"{kind} key listed in {path}")
        text = current if not current or current.endswith("\n") else current + "\n"
        write_remote_file(sftp, path, (text + public_key + "\n").encode(), 0o600)
        return StepResult("authorized key", host, "changed", f"{kind} key added to {path}")
    finally:
        client.close()


def _lists_key(line: str, kind: str, b64: str) -> bool:
    """An authorized_keys line (options may come first) holding exactly this key."""
    if line.lstrip().startswith("#"):
        return False
    words = line.split()
    return any(words[i : i + 2] == [kind, b64] for i in range(len(words) - 1))


@task(name="ensure-key-pair", task_run_name="key-pair {host}", cache_policy=NO_CACHE)
def ensure_key_pair(
    identity: SshIdentity, host: str, key_pair: SshIdentity, directory: str, name: str
) -> StepResult:
    """Put `key_pair`'s private key and public key at `<directory>/<name>` and `.pub`, both 0600
    (the seed's `scp ~/.ssh/id_rsa* $ip:.ssh/`); content and mode are checked first."""
    private = key_pair.private_key.get_secret_value().encode()
    if not private.endswith(b"\n"):
        private += b"\n"
    public = (public_key_line(key_pair) + "\n").encode()
    client, sftp = _sftp(identity, host)
    changed = []
    try:
        base = remote_path(sftp, directory)
        if _ensure_dir(sftp, base, 0o700):
            changed.append(f"created {base}")
        for filename, data in ((name, private), (f"{name}.pub", public)):
            path = posixpath.join(base, filename)
            if read_remote_file(sftp, path) != data:
                write_remote_file(sftp, path, data, 0o600)
                changed.append(f"wrote {path}")
            elif sftp.stat(path).st_mode & 0o777 != 0o600:
                sftp.chmod(path, 0o600)
                changed.append(f"chmod 0600 {path}")
    finally:
        client.close()
    if changed:
        return StepResult("key pair", host, "changed", "; ".join(changed))
    return StepResult("key pair", host, "ok", f"{name} and {name}.pub in {base}, 0600")


# -- files -----------------------------------------------------------------------------------------


@task(name="ensure-remote-file", task_run_name="file {path} on {host}", cache_policy=NO_CACHE)
def ensure_remote_file(
    identity: SshIdentity, host: str, path: str, data: bytes, mode: int, step: str
) -> StepResult:
    """`path` holds exactly `data` with `mode` (parent directories are created). Not for
    secrets: see `ensure_credentials_file`."""
    return put_file(identity, host, path, data, mode, step)


@task(name="ensure-credentials-file", task_run_name="credentials {path} on {host}",
      cache_policy=NO_CACHE)  # fmt: skip
def ensure_credentials_file(
    identity: SshIdentity, host: str, path: str, database: MySqlDatabase
) -> StepResult:
    """Upstream's JSON credentials file for `database` at `path`, 0600. The password goes from
    the block to the file inside this task: it is never a task argument of its own."""
    return put_file(identity, host, path, credentials_json(database), 0o600, "credentials")


def put_file(
    identity: SshIdentity, host: str, path: str, data: bytes, mode: int, step: str
) -> StepResult:
    """`path` holds exactly `data` with `mode` (parent directories are created)."""
    client, sftp = _sftp(identity, host)
    try:
        path = remote_path(sftp, path)
        check(execute(client, f"mkdir -p {shlex.quote(posixpath.dirname(path))}", host=host,
                      timeout=identity.command_timeout))  # fmt: skip
        if read_remote_file(sftp, path) == data:
            if sftp.stat(path).st_mode & 0o777 == mode:
                return StepResult(step, host, "ok", f"{path} up to date")
            sftp.chmod(path, mode)
            return StepResult(step, host, "changed", f"chmod {mode:o} {path}")
        write_remote_file(sftp, path, data, mode)
        return StepResult(step, host, "changed", f"wrote {path} ({len(data)} bytes)")
    finally:
        client.close()


def credentials_json(database: MySqlDatabase) -> bytes:
    """Upstream's credentials file for a MySQL block (written 0600; never logged)."""
    return (
        json.dumps(
            {
                "host": database.host,
                "port": database.port,
                "username": database.username,
                "password": database.password.get_secret_value(),
            },
            sort_keys=True,
        )
        + "\n"
    ).encode()


@task(name="run-if-needed", task_run_name="{step} on {host}", cache_policy=NO_CACHE)
def run_if_needed(
    identity: SshIdentity, host: str, step: str, check_command: str, command: str, timeout: float
) -> StepResult:
    """Run `command` only when `check_command` exits non-zero; then the check must pass."""
    client = identity.connect(host)
    try:
        probe = execute(client, check_command, host=host, timeout=timeout)
        if probe.ok:
            return StepResult(step, host, "ok", f"`{check_command}` passed")
        check(execute(client, command, host=host, timeout=timeout))
        check(execute(client, check_command, host=host, timeout=timeout))
        return StepResult(step, host, "changed", f"ran `{command}`")
    finally:
        client.close()


# -- the pipeline's virtualenv -----------------------------------------------------------------


def project_source_files(root: Path = PROJECT_ROOT) -> list[Path]:
    """The files this project's package is built from, sorted (no caches, no build output)."""
    files = [root / name for name in PROJECT_FILES if (root / name).is_file()]
    for package in PROJECT_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix in _SOURCE_SUFFIXES:
                files.append(path)
    return sorted(files)


def project_digest(root: Path = PROJECT_ROOT) -> str:
    """sha256 over the source files' paths and contents: what a venv marker records."""
    digest = hashlib.sha256()
    for path in project_source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def project_archive(root: Path = PROJECT_ROOT) -> bytes:
    """A .tar.gz of the project's source files (installable with pip or uv)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in project_source_files(root):
            info = archive.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with path.open("rb") as handle:
                archive.addfile(info, handle)
    return buffer.getvalue()


def install_commands(
    installer: Literal["pip", "uv"], python: str, venv: str, package: str, options: list[str]
) -> list[str]:
    """Shell commands that create `venv` if missing and (re)install `package` into it."""
    q = shlex.quote
    extra = " ".join(q(option) for option in options)
    if installer == "uv":
        return [
            f"test -x {q(venv)}/bin/python || uv venv -q --python {q(python)} {q(venv)}",
            f"uv pip install -q --python {q(venv)}/bin/python --reinstall-package edx-ops-flows "
            f"{extra} {q(package)}".replace("  ", " "),
        ]
    return [
        f"test -x {q(venv)}/bin/python || {q(python)} -m venv {q(venv)}",
        f"{q(venv)}/bin/pip install -q {extra} {q(package)}".replace("  ", " "),
        f"{q(venv)}/bin/pip install -q --force-reinstall --no-deps {q(package)}",
    ]


@task(name="ensure-pipeline-venv", task_run_name="pipeline venv on {host}", cache_policy=NO_CACHE)
def ensure_pipeline_venv(
    identity: SshIdentity,
    host: str,
    base_dir: str,
    remote_name: str,
    source: Literal["project", "git"] = "project",
    repo: str | None = None,
    branch: str = "master",
    installer: Literal["pip", "uv"] = "pip",
    python: str = "python3",
    install_options: list[str] | None = None,
    timeout: float = 1800,
) -> StepResult:
    """The virtualenv `<base>/<remote_name>/venv` with the pipeline (`launch-task`) installed.

    `project`: this project's source, uploaded as an archive; `git`: `repo` at `branch`, cloned
    into `<base>/<remote_name>/repo`. A marker in the venv records what was installed (the
    source digest, or the commit); nothing is reinstalled while it matches.
    """
    logger = get_run_logger()
    q = shlex.quote
    home = posixpath.join(base_dir, remote_name)
    venv = posixpath.join(home, "venv")
    client, sftp = _sftp(identity, host)

    def run(command: str) -> str:
        return check(execute(client, command, host=host, timeout=timeout)).stdout

    try:
        run(f"mkdir -p {q(home)}")
        if source == "git":
            if not repo:
                raise ValueError("source 'git' needs a repository URL (repo)")
            heads = run(f"git ls-remote {q(repo)} {q('refs/heads/' + branch)}").split()
            if not heads:
                raise ValueError(f"repository {repo} has no branch {branch!r}")
            wanted = f"git {repo} {branch} {heads[0]}"
        else:
            wanted = f"project {project_digest()}"
        marker = posixpath.join(venv, MARKER)
        present = read_remote_file(sftp, marker)
        launcher = run(f"test -x {q(venv)}/bin/launch-task && echo yes || echo no").strip()
        if present is not None and present.decode().strip() == wanted and launcher == "yes":
            return StepResult("pipeline venv", host, "ok", f"{venv}: {wanted[:60]}")
        if source == "git":
            checkout = posixpath.join(home, "repo")
            commit = wanted.split()[-1]
            run(
                f"if [ -d {q(checkout)}/.git ]; then git -C {q(checkout)} fetch -q origin "
                f"{q(branch)}; else git clone -q --branch {q(branch)} {q(repo)} {q(checkout)}; fi"
                f" && git -C {q(checkout)} checkout -q --detach {q(commit)}"
            )  # fmt: skip
            package = checkout
        else:
            package = posixpath.join(home, "src")
            archive = posixpath.join(home, "src.tar.gz")
            write_remote_file(sftp, archive, project_archive(), 0o644)
            run(f"rm -rf {q(package)} && mkdir -p {q(package)} && tar -xzf {q(archive)} "
                f"-C {q(package)}")  # fmt: skip
        for command in install_commands(installer, python, venv, package, install_options or []):
            logger.info("%s: %s", host, command)
            run(command)
        run(f"test -x {q(venv)}/bin/launch-task")
        write_remote_file(sftp, marker, (wanted + "\n").encode(), 0o644)
        return StepResult("pipeline venv", host, "changed", f"{venv}: installed {wanted[:60]}")
    finally:
        client.close()
