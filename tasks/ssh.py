"""Prefect tasks and helpers that run commands on hosts over SSH (host keys always verified).

Results come back as plain data (`CommandResult`). Every failure raises an `SshError` naming the
host and the command: a non-zero exit status (`RemoteCommandFailed`), a connection that ended
without an exit status, e.g. cut mid-command (`ConnectionLost`), or a command that outlived its
own timeout (`RemoteCommandTimeout`). Secrets never appear: commands are settings, not secrets,
and the identity's key stays in its block.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import os
import posixpath
import re
import select
import time
from collections.abc import Callable
from dataclasses import dataclass

import paramiko
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.ssh import SshError, SshIdentity

#: How much of a failed command's stderr/stdout an error message quotes.
OUTPUT_TAIL_CHARS = 1500
#: After the exit status, how long to wait for the end of the output.
EOF_GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class CommandResult:
    """What a remote command returned."""

    host: str
    command: str
    exit_status: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class RemoteCommandFailed(SshError):
    """The command ran and exited non-zero."""

    def __init__(self, result: CommandResult) -> None:
        output = _tail(result.stderr) or _tail(result.stdout) or "(no output)"
        super().__init__(
            result.host,
            f"`{result.command}` on {result.host} failed with exit status "
            f"{result.exit_status}: {output}",
        )
        self.result = result


class ConnectionLost(SshError):
    """The connection ended before the command reported an exit status; it may still run."""


class RemoteCommandTimeout(SshError):
    """The command did not finish within its timeout; the channel was closed."""


def execute(
    client: paramiko.SSHClient, command: str, *, host: str, timeout: float
) -> CommandResult:
    """Run `command` on an open connection and collect its output, within `timeout` seconds.

    A non-zero exit status is returned, not raised (see `check`). Raises `ConnectionLost` when the
    channel closes without an exit status (paramiko's -1), `RemoteCommandTimeout` when the
    deadline passes. The deadline is our own: a Prefect timeout cannot interrupt a blocked read.
    """
    started = time.monotonic()
    deadline = started + timeout
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise ConnectionLost(host, f"connection to {host} is closed; `{command}` was not run")
    try:
        channel = transport.open_session(timeout=min(timeout, 30))
        channel.exec_command(command)
        channel.shutdown_write()  # no stdin: commands waiting for input get EOF, not a hang
    except (paramiko.SSHException, EOFError, OSError) as error:
        raise ConnectionLost(host, f"connection to {host} failed starting `{command}`: "
                                   f"{type(error).__name__}: {error}") from None  # fmt: skip
    stdout, stderr = bytearray(), bytearray()
    exited_at = None
    try:
        while True:
            while channel.recv_ready():
                stdout += channel.recv(65536)
            while channel.recv_stderr_ready():
                stderr += channel.recv_stderr(65536)
            if channel.closed or not transport.is_active():
                break
            if channel.exit_status_ready():
                # sshd may report the exit before it has forwarded all output: read on until
                # EOF, but not forever (a daemon the command started may hold the pipe open)
                exited_at = exited_at or time.monotonic()
                if channel.eof_received or time.monotonic() - exited_at > EOF_GRACE_SECONDS:
                    break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RemoteCommandTimeout(
                    host, f"`{command}` on {host} did not finish within {timeout:g}s"
                )
            # the channel's fd becomes readable on stdout data or close; stderr and the exit
            # status do not wake it, hence the short cap
            select.select([channel], [], [], min(remaining, 0.05))
        while channel.recv_ready():  # what arrived with the EOF or the close
            stdout += channel.recv(65536)
        while channel.recv_stderr_ready():
            stderr += channel.recv_stderr(65536)
        exit_status = channel.exit_status if channel.exit_status_ready() else -1
    finally:
        channel.close()
    result = CommandResult(
        host=host,
        command=command,
        exit_status=exit_status,
        stdout=stdout.decode(errors="replace"),
        stderr=stderr.decode(errors="replace"),
        seconds=time.monotonic() - started,
    )
    if exit_status == -1:
        raise ConnectionLost(
            host,
            f"connection to {host} was lost while running `{command}` (no exit status; the "
            f"command may have been killed or may still be running): {_tail(result.stderr)}",
        )
    return result


def check(result: CommandResult) -> CommandResult:
    """`result` unchanged if the command succeeded; `RemoteCommandFailed` otherwise."""
    if not result.ok:
        raise RemoteCommandFailed(result)
    return result


def run_command(
    identity: SshIdentity,
    host: str,
    command: str,
    *,
    timeout: float | None = None,
    expect_success: bool = True,
) -> CommandResult:
    """Connect to `host`, run one command, disconnect. Plain function behind the task.

    A fresh connection per command means a cut connection costs one command, never the next:
    the restart after a failed backup always gets a new session.
    """
    client = identity.connect(host)
    try:
        result = execute(client, command, host=host, timeout=timeout or identity.command_timeout)
    finally:
        client.close()
    return check(result) if expect_success else result


@task(
    name="run-remote-command",
    task_run_name="ssh {host}: {command}",
    cache_policy=NO_CACHE,  # the identity holds a key: never hash or store it
    retries=0,  # remote commands are not all idempotent: the caller decides (with_options)
)
def run_remote_command(
    identity: SshIdentity,
    host: str,
    command: str,
    timeout: float | None = None,
    expect_success: bool = True,
) -> CommandResult:
    """Run `command` on `host` over SSH (its own connection and its own timeout).

    Args:
        identity: The SSH block (login, key, trusted host keys).
        host: Address or name as listed in the block's known_hosts.
        command: A shell command line; it is logged, so it must not contain secrets.
        timeout: Seconds the command may run; default: the block's `command_timeout`.
        expect_success: Raise `RemoteCommandFailed` on a non-zero exit status.

    Returns:
        The exit status, output and duration.
    """
    logger = get_run_logger()
    result = run_command(identity, host, command, timeout=timeout, expect_success=False)
    logger.info("%s: `%s` exited %s after %.2fs", host, command, result.exit_status, result.seconds)
    if result.stderr.strip():
        logger.debug("%s: stderr of `%s`: %s", host, command, _tail(result.stderr))
    return check(result) if expect_success else result


@dataclass(frozen=True)
class HostFacts:
    """What a host says about itself: its name and every address on its interfaces."""

    host: str
    hostname: str
    addresses: tuple[str, ...]

    def has_address(self, address: str) -> bool:
        wanted = ipaddress.ip_address(address)
        return any(ipaddress.ip_address(mine) == wanted for mine in self.addresses)


def parse_ip_addresses(text: str) -> tuple[str, ...]:
    """Addresses in `ip -o addr show` (or `ip addr`) output, e.g. `inet 10.0.0.5/24 ...`."""
    found = []
    for match in re.finditer(r"\binet6?\s+([0-9A-Fa-f:.]+)(?:/\d+)?", text):
        with contextlib.suppress(ValueError):
            found.append(str(ipaddress.ip_address(match.group(1))))
    return tuple(dict.fromkeys(found))


@task(name="read-host-facts", task_run_name="read-host-facts {host}", cache_policy=NO_CACHE)
def read_host_facts(
    identity: SshIdentity,
    host: str,
    address_command: str = "ip -o addr show",
    timeout: float = 60,
) -> HostFacts:
    """Ask the host itself for its hostname and addresses (e.g. to see whether it holds a VIP).

    Raises:
        SshError: the command failed, or listed no address at all (an empty list must never
            pass for "does not hold the VIP").
    """
    result = run_command(identity, host, f"hostname && {address_command}", timeout=timeout)
    hostname, _, rest = result.stdout.partition("\n")
    addresses = parse_ip_addresses(rest)
    if not addresses:
        raise SshError(host, f"`{address_command}` on {host} listed no addresses: {_tail(rest)}")
    return HostFacts(host=host, hostname=hostname.strip(), addresses=addresses)


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= OUTPUT_TAIL_CHARS else "..." + text[-OUTPUT_TAIL_CHARS:]


# -- files over SFTP and streamed commands (host setup, remote pipeline runs) -------------------


def remote_path(sftp: paramiko.SFTPClient, path: str) -> str:
    """`path` with a leading `~/` made absolute (SFTP starts in the login's home directory)."""
    if path == "~" or path.startswith("~/"):
        return sftp.normalize(".").rstrip("/") + path[1:]
    return path


def read_remote_file(sftp: paramiko.SFTPClient, path: str) -> bytes | None:
    """The file's content, or None when it does not exist."""
    try:
        with sftp.open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_remote_file(sftp: paramiko.SFTPClient, path: str, data: bytes, mode: int) -> None:
    """Write `data` to `path` atomically (a temporary file with `mode` from the start, renamed
    over the target), so a reader never sees half a file nor a secret with loose permissions."""
    directory = posixpath.dirname(path) or "."
    temporary = posixpath.join(directory, f".{posixpath.basename(path)}.{os.getpid()}.tmp")
    handle = sftp.open(temporary, "wb")
    try:
        sftp.chmod(temporary, mode)
        handle.write(data)
    finally:
        handle.close()
    try:
        sftp.posix_rename(temporary, path)
    except OSError:
        sftp.remove(temporary)
        raise


def stream_command(
    client: paramiko.SSHClient,
    command: str,
    *,
    host: str,
    timeout: float,
    on_line: Callable[[str], None],
    tail_lines: int = 40,
) -> CommandResult:
    """Run `command`, calling `on_line` with each line of its output (stdout and stderr merged,
    in order) as it arrives. Returns the exit status and the last `tail_lines` lines as stdout.

    Raises `ConnectionLost` (no exit status) and `RemoteCommandTimeout` like `execute`.
    """
    started = time.monotonic()
    deadline = started + timeout
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise ConnectionLost(host, f"connection to {host} is closed; `{command}` was not run")
    try:
        channel = transport.open_session(timeout=min(timeout, 30))
        channel.set_combine_stderr(True)
        channel.exec_command(command)
        channel.shutdown_write()
    except (paramiko.SSHException, EOFError, OSError) as error:
        raise ConnectionLost(host, f"connection to {host} failed starting `{command}`: "
                                   f"{type(error).__name__}: {error}") from None  # fmt: skip
    pending = b""
    exited_at = None
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)

    def emit(raw: bytes) -> None:
        line = raw.decode(errors="replace").rstrip("\r")
        tail.append(line)
        on_line(line)

    try:
        while True:
            if channel.recv_ready():
                pending += channel.recv(65536)
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    emit(raw)
                continue
            if channel.closed or not transport.is_active() or channel.eof_received:
                break
            if channel.exit_status_ready():  # a daemon it started may hold the output open
                exited_at = exited_at or time.monotonic()
                if time.monotonic() - exited_at > EOF_GRACE_SECONDS:
                    break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RemoteCommandTimeout(
                    host, f"`{command}` on {host} did not finish within {timeout:g}s"
                )
            select.select([channel], [], [], min(remaining, 0.2))
        while channel.recv_ready():
            pending += channel.recv(65536)
        *lines, pending = pending.split(b"\n")
        for raw in [*lines, pending] if pending else lines:
            emit(raw)
        # the exit status follows EOF closely; wait for it a little, never forever
        grace = time.monotonic() + EOF_GRACE_SECONDS
        while not channel.exit_status_ready() and transport.is_active():
            if time.monotonic() > grace:
                break
            time.sleep(0.01)
        exit_status = channel.exit_status if channel.exit_status_ready() else -1
    finally:
        channel.close()
    result = CommandResult(
        host, command, exit_status, "\n".join(tail), "", time.monotonic() - started
    )
    if exit_status == -1:
        raise ConnectionLost(
            host,
            f"connection to {host} was lost while running `{command}` (no exit status; the "
            f"command may have been killed or may still be running): {_tail(result.stdout)}",
        )
    return result
