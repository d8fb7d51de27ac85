"""Idempotent host-setup steps over SSH (paramiko, host keys verified): check, then change.

Every step looks first and changes only what differs, returning a `StepResult` whose status is
`ok` (nothing to do) or `changed`; a second run of a successful setup is all `ok`. Secrets
(private keys, database passwords) come from blocks, travel over SFTP into files created with
mode 0600, and never appear in commands, logs or results.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from blocks.database import MySqlDatabase
from blocks.ssh import SshIdentity, known_host_keys
from domain.names import known_hosts_label
from pipeline_config.fields import NonEmptyStr
from pipeline_config.render import OverrideSettings, render_override_cfg
from remote.host_keys import ConsoleKeys, known_hosts_with, parse_console_keys, verify_host_key
from remote.setup import PipelineSetup, StepResult, ensure_dir, ensure_venv, put_file
from remote.ssh import fetch_host_key

if TYPE_CHECKING:
    from openstack.connection import Connection

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

    Raises HostKeyMismatch (a changed key) or HostKeyNotVerified (see remote.host_keys).
    """
    read = (lambda: console_keys(conn, server_id)) if conn and server_id else None
    return record_host_key(identity, address, read, trust_on_first_use, timeout)


def record_host_key(
    identity: SshIdentity,
    address: str,
    read_console: Callable[[], ConsoleKeys] | None,
    trust_on_first_use: bool = False,
    timeout: float = 15,
) -> tuple[StepResult, str]:
    """The host-key step whatever the cloud: `read_console` gives the fingerprints cloud-init
    printed on the server's console (Nova's console log, EC2's console output), and is asked
    only for a host known_hosts does not list yet.

    Raises HostKeyMismatch (a changed key) or HostKeyNotVerified (see remote.host_keys).
    """
    trusted = identity.host_keys()
    known = known_host_keys(trusted, known_hosts_label(address, identity.port))
    presented = fetch_host_key(address, identity.port, timeout, known)
    # a known host is judged by known_hosts alone: the console only vouches for new hosts
    console = read_console() if not known and read_console else ConsoleKeys()
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


@task(name="ensure-authorized-key", task_run_name="authorized-key {host}", cache_policy=NO_CACHE)
def ensure_authorized_key(
    identity: SshIdentity,
    host: str,
    public_key: str,
    authorized_keys: str = "~/.ssh/authorized_keys",
) -> StepResult:
    """`ssh-copy-id`: append `public_key` to `authorized_keys` unless that key is listed."""
    kind, b64 = public_key.split()[:2]
    with identity.session(host) as session:
        path = session.path(authorized_keys)
        ensure_dir(session.sftp, posixpath.dirname(path), 0o700)
        current = (session.read_file(path) or b"").decode(errors="replace")
        listed = any(_lists_key(line, kind, b64) for line in current.splitlines())
        if listed:
            return StepResult("authorized key", host, "ok", f"{kind} key listed in {path}")
        text = current if not current or current.endswith("\n") else current + "\n"
        session.write_file(path, (text + public_key + "\n").encode(), 0o600)
        return StepResult("authorized key", host, "changed", f"{kind} key added to {path}")


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
    changed = []
    with identity.session(host) as session:
        base = session.path(directory)
        if ensure_dir(session.sftp, base, 0o700):
            changed.append(f"created {base}")
        for filename, data in ((name, private), (f"{name}.pub", public)):
            path = posixpath.join(base, filename)
            if session.read_file(path) != data:
                session.write_file(path, data, 0o600)
                changed.append(f"wrote {path}")
            elif session.sftp.stat(path).st_mode & 0o777 != 0o600:
                session.sftp.chmod(path, 0o600)
                changed.append(f"chmod 0600 {path}")
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
    return put_file(identity, host, path, database.credentials_payload(), 0o600, "credentials")


@task(name="run-if-needed", task_run_name="{step} on {host}", cache_policy=NO_CACHE)
def run_if_needed(
    identity: SshIdentity, host: str, step: str, check_command: str, command: str, timeout: float
) -> StepResult:
    """Run `command` only when `check_command` exits non-zero; then the check must pass."""
    with identity.session(host) as session:
        if session.run(check_command, timeout=timeout, expect_success=False).ok:
            return StepResult(step, host, "ok", f"`{check_command}` passed")
        session.run(command, timeout=timeout)
        session.run(check_command, timeout=timeout)
        return StepResult(step, host, "changed", f"ran `{command}`")


# -- the pipeline's virtualenv -----------------------------------------------------------------


@task(name="ensure-pipeline-venv", task_run_name="pipeline venv on {host}", cache_policy=NO_CACHE)
def ensure_pipeline_venv(identity: SshIdentity, host: str, setup: PipelineSetup) -> StepResult:
    """The virtualenv `<base>/<remote_name>/venv` with the pipeline installed (remote.setup)."""
    logger = get_run_logger()
    return ensure_venv(identity, host, setup, log=logger.info)


# -- the setup steps after the host key, in order ----------------------------------------------

_INSIGHTS = (
    "sudo -n -Hu insights bash -c 'cd && . venvs/insights/bin/activate && . insights_env && "
    "cd edx_analytics_dashboard && ./manage.py migrate {options} "
    "--settings=analytics_dashboard.settings.production'"
)


class KeyDistribution(BaseModel):
    """The deploy key: authorized on the node, and its pair copied there (as the seed did)."""

    deploy_key_block: NonEmptyStr | None = Field(
        default=None,
        description="SSH Identity block holding the deploy key pair; None: skip both key steps.",
    )
    authorized_keys: NonEmptyStr = Field(
        default="~/.ssh/authorized_keys",
        description="The login's authorized_keys on the node: the deploy public key goes there.",
    )
    copy_key_pair: bool = Field(default=True, description="Also copy the pair to the node.")
    key_pair_directory: NonEmptyStr = Field(
        default="~/.ssh", description="Directory on the node the key pair is copied into (0700)."
    )
    key_pair_name: str = Field(
        default="id_rsa",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="File name of the copied private key; the public key gets `.pub` added.",
    )


class InsightsMigration(BaseModel):
    """The Insights migration fix of the seed (tables missing behind a 500 on /courses)."""

    enabled: bool = Field(
        default=False, description="Run the fix when the check command says it is needed."
    )
    check_command: NonEmptyStr = Field(
        default=_INSIGHTS.format(options="--check"),
        description="Exits 0 when nothing needs migrating.",
    )
    command: NonEmptyStr = Field(
        default=_INSIGHTS.format(options="--run-syncdb"),
        description="The fix, as the insights user.",
    )
    timeout_seconds: float = Field(
        default=600, gt=0, description="Seconds the check and the fix may each take."
    )


def run_setup_steps(
    identity: SshIdentity,
    host: str,
    keys: KeyDistribution,
    pipeline: PipelineSetup,
    override: OverrideSettings | None,
    database_credentials: dict[str, str] | None,
    insights: InsightsMigration,
    results: list[StepResult],
) -> None:
    """The steps of setup-analytics-host after the host key, on a host whose key is known:
    deploy key and key pair, override.cfg, credentials files, the venv, the Insights fix.

    Each step's result is appended to `results` as it is done, so that a failed step still
    leaves the table of those before it.
    """
    if keys.deploy_key_block:
        deploy = SshIdentity.load(keys.deploy_key_block)
        public = public_key_line(deploy, "deploy")
        results.append(ensure_authorized_key(identity, host, public, keys.authorized_keys))
        if keys.copy_key_pair:
            directory, name = keys.key_pair_directory, keys.key_pair_name
            results.append(ensure_key_pair(identity, host, deploy, directory, name))
    if override is not None:
        text = render_override_cfg(override).encode()
        path = pipeline.override_path
        results.append(ensure_remote_file(identity, host, path, text, 0o644, "override.cfg"))
    for path, block in (database_credentials or {}).items():
        database = MySqlDatabase.load(block)
        results.append(ensure_credentials_file(identity, host, path, database))
    if pipeline.enabled:
        results.append(ensure_pipeline_venv(identity, host, pipeline))
    if insights.enabled:
        results.append(run_if_needed(
            identity, host, "insights migration", insights.check_command, insights.command,
            insights.timeout_seconds,
        ))  # fmt: skip


def publish_steps(key: str, title: str, results: list[StepResult]) -> None:
    """The step table as an artifact (`title`: `**flow** of host`); a failure here must not
    hide the run's own error."""
    try:
        create_table_artifact(
            key=key,
            table=[r.__dict__ for r in results] or [{"step": "-", "status": "nothing done"}],
            description=f"{title}: "
            f"{sum(r.status == 'changed' for r in results)} of {len(results)} steps changed",
        )
    except Exception as error:
        get_run_logger().warning("could not publish the step table: %s", error)
