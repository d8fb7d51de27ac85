"""SSH without Prefect: verified connections, the command pumps and SFTP files.

Shared by the Prefect blocks and tasks (`blocks.ssh`, `tasks.ssh`) and by the `remote-task`
command line, which runs without Prefect. Host keys are always verified against a known_hosts
text (hashed names and `[host]:port` entries work): an unknown host or a changed key is refused
with its SHA256 fingerprint and how to check it, before anything is authenticated or run
(never paramiko's AutoAddPolicy, never `StrictHostKeyChecking no`).

Everything runs in an `SshSession` (`open_session(connector, host)`, or `SshIdentity.session`
in the block): one verified connection, its commands and its SFTP files, closed on leaving the
`with`. Every command goes through one channel pump (`execute`), which collects the output or
streams it line by line, under one deadline for the whole command. Results come back as plain
data (`CommandResult`). Every failure raises an `SshError` naming the host and the command: a
non-zero exit status (`RemoteCommandFailed`), a connection that ended without an exit status,
e.g. cut mid-command (`ConnectionLost`), or a command that outlived its own timeout
(`RemoteCommandTimeout`).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import io
import os
import posixpath
import select
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import paramiko

from domain.names import known_hosts_label
from pipeline.errors import InvalidInput, OperationFailed, OperationTimeout, Refused

#: How much of a failed command's stderr/stdout an error message quotes.
OUTPUT_TAIL_CHARS = 1500
#: After the exit status, how long to wait for the end of the output.
EOF_GRACE_SECONDS = 2.0


class SshError(OperationFailed):
    """Anything that went wrong reaching or using a host over SSH; `host` names it."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message)
        self.host = host


class UnknownHostKey(SshError, Refused):
    """The host is not in the trusted known_hosts: nothing was sent to it."""


class HostKeyMismatch(SshError, Refused):
    """The host presented a different key than known_hosts holds (rebuilt, or intercepted)."""


class SshConnectFailed(SshError):
    """The host could not be reached or refused the login."""


class Connector(Protocol):
    """What the shared remote steps need: a verified, logged-in connection per call (an
    `SshIdentity` block, or the `remote-task` command line's login); see `open_session`."""

    username: str
    command_timeout: float

    def connect(self, host: str, port: int | None = None) -> paramiko.SSHClient: ...


# -- host keys and logging in ----------------------------------------------------------------------


def parse_known_hosts(text: str) -> paramiko.HostKeys:
    """The host keys of a known_hosts text (OpenSSH's format, hashed host names too).

    Raises:
        InvalidInput: naming the line, for a malformed line or a marker (@cert-authority,
            @revoked): paramiko cannot honour them, and silently trusting a revoked key
            would be worse than refusing the host.
    """
    keys = paramiko.HostKeys()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            raise InvalidInput(f"known_hosts line {number}: markers ({line.split()[0]}) "
                               "are not supported; list the host keys themselves")  # fmt: skip
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, lineno=number)
        except paramiko.SSHException as error:
            raise InvalidInput(f"known_hosts line {number} is not valid: {error}") from None
        if entry is None:  # a key type paramiko does not know (e.g. DSA since paramiko 4)
            continue
        for hostname in entry.hostnames:
            keys.add(hostname, entry.key.get_name(), entry.key)
    return keys


def load_private_key(text: str, passphrase: str | None, owner: str) -> paramiko.PKey:
    """`text` (OpenSSH or PEM: ed25519, ECDSA, RSA) as a paramiko key; errors never quote it.

    Args:
        owner: Names the key in errors, e.g. "SSH identity 'ubuntu'" or a file name.
    """
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise InvalidInput(
                f"the private key of {owner} is encrypted: give its passphrase"
            ) from None
        except (paramiko.SSHException, ValueError, IndexError):
            continue
    raise InvalidInput(
        f"the private key of {owner} is not an ed25519, ECDSA or RSA key in OpenSSH/PEM "
        "format (or the passphrase is wrong)"
    )


def how_to_verify(address: str, port: int) -> str:
    """The out-of-band check an operator does before trusting a host key."""
    return (
        f"compare `ssh-keyscan -p {port} {address} | ssh-keygen -lf -` with the fingerprints "
        "the server itself shows (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on its "
        "console, or cloud-init's lines in its console log)"
    )


def sha256_fingerprint(key: paramiko.PKey) -> str:
    """`SHA256:<base64>`, as `ssh-keygen -l` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_host_keys(trusted: paramiko.HostKeys, label: str) -> list[paramiko.PKey]:
    """Every key known_hosts lists for `label` (`address` or `[address]:port`, maybe hashed)."""
    return list((trusted.lookup(label) or {}).values())


def preferred_key_types(known: Iterable[paramiko.PKey], offered: Iterable[str]) -> list[str]:
    """`offered` host key algorithms with those of the `known` keys first.

    The server picks the first algorithm of the client's list it has a key for, so a host
    that still has a known key presents that one rather than another of its keys; an RSA key
    (`ssh-rsa` in known_hosts) is asked for with its SHA-2 signature algorithms first.
    """
    offered = list(offered)
    wanted: list[str] = []
    for key in known:
        name = key.get_name()
        wanted += ["rsa-sha2-512", "rsa-sha2-256", name] if name == "ssh-rsa" else [name]
    first = [name for name in dict.fromkeys(wanted) if name in offered]
    return first + [name for name in offered if name not in first]


def check_host_key(
    label: str,
    presented: paramiko.PKey,
    trusted: paramiko.HostKeys,
    *,
    known_hosts: str = "the SSH block's known_hosts",
    fix: str = "verify its new key out of band (e.g. the fingerprints cloud-init printed on "
    "its console), then replace its line(s) in the SSH block's known_hosts and run again",
) -> bool:
    """True when `presented` is one of the keys known_hosts lists for `label`; False when it
    lists none (an unknown host).

    Raises:
        HostKeyMismatch: known_hosts lists keys for `label`, and `presented` is none of them,
            whatever its type: a host known under RSA presenting ed25519 has changed too.
    """
    known = known_host_keys(trusted, label)
    if not known:
        return False
    if any(key == presented for key in known):
        return True
    listed = ", ".join(f"{key.get_name()} {sha256_fingerprint(key)}" for key in known)
    raise HostKeyMismatch(
        label,
        f"host key of {label} CHANGED: it presents {presented.get_name()} "
        f"{sha256_fingerprint(presented)}, which does not match known_hosts ({listed}) in "
        f"{known_hosts}. Refusing it: if the server was rebuilt, {fix}.",
    )


def connect(
    host: str,
    port: int,
    username: str,
    pkey: paramiko.PKey | None,
    trusted: paramiko.HostKeys,
    *,
    timeout: float,
    known_hosts: str,
    fix_changed: str,
) -> paramiko.SSHClient:
    """A logged-in paramiko client for `host`, whose key must be in `trusted`.

    The key is checked right after the key exchange, before authentication: a refused host
    never sees a login attempt nor a command.

    Args:
        pkey: The login key; None: the SSH agent and ~/.ssh/id_* (as `ssh` does).
        known_hosts: Where the trusted keys come from, for messages ("/root/.ssh/known_hosts").
        fix_changed: What to do about a changed key once it is verified, for messages.

    Raises:
        UnknownHostKey: `host` is not in `trusted` (the message has its SHA256 fingerprint).
        HostKeyMismatch: `host` presented another key.
        SshConnectFailed: unreachable, timed out, or the login was refused.
    """
    label = known_hosts_label(host, port)
    known = known_host_keys(trusted, label)
    client = paramiko.SSHClient()
    # paramiko's client is given no keys, so every host goes through the policy, which compares
    # with all the host's keys (paramiko itself compares one key type only)
    client.set_missing_host_key_policy(_VerifyHostKey(trusted, known_hosts, port, fix_changed))
    try:
        client.connect(
            host,
            port=port,
            username=username,
            pkey=pkey,
            look_for_keys=pkey is None,
            allow_agent=pkey is None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            transport_factory=lambda sock, **options: _transport(sock, known, **options),
        )
    except (UnknownHostKey, HostKeyMismatch):
        client.close()
        raise
    except paramiko.AuthenticationException as error:
        client.close()
        raise SshConnectFailed(
            label, f"login to {label} as {username!r} was refused: {error}"
        ) from None
    except (OSError, EOFError, paramiko.SSHException) as error:
        # socket.timeout and NoValidConnectionsError are OSErrors
        client.close()
        reason = "timed out" if isinstance(error, socket.timeout) else str(error) or "failed"
        raise SshConnectFailed(
            label, f"cannot connect to {label}: {type(error).__name__}: {reason}"
        ) from None
    except BaseException:
        client.close()
        raise
    return client


def _transport(sock, known: list[paramiko.PKey], **options) -> paramiko.Transport:
    """A client transport asking first for the key types the host is known under."""
    transport = paramiko.Transport(sock, **options)
    security = transport.get_security_options()
    security.key_types = preferred_key_types(known, security.key_types)
    return transport


class _VerifyHostKey(paramiko.MissingHostKeyPolicy):
    """Accepts a host's key only when it is one of the host's keys in `trusted`; refuses
    anything else with an error that says which host, its fingerprint and what to do."""

    def __init__(
        self, trusted: paramiko.HostKeys, known_hosts: str, port: int, fix_changed: str
    ) -> None:
        self.trusted, self.known_hosts, self.port = trusted, known_hosts, port
        self.fix_changed = fix_changed

    def missing_host_key(self, client, hostname, key):
        address = hostname[1:].rsplit("]:", 1)[0] if hostname.startswith("[") else hostname
        if check_host_key(
            hostname, key, self.trusted, known_hosts=self.known_hosts,
            fix=f"{how_to_verify(address, self.port)}, then {self.fix_changed}",
        ):  # fmt: skip
            return
        raise UnknownHostKey(
            hostname,
            f"{hostname} is not in known_hosts ({self.known_hosts}); it presented "
            f"{key.get_name()} {sha256_fingerprint(key)}. Refusing to connect: "
            f"{how_to_verify(address, self.port)}; if they match, add its line "
            f"(`ssh-keyscan -p {self.port} {address}`) to {self.known_hosts}.",
        )


# -- the host's key, without logging in -------------------------------------------------------


def fetch_host_key(
    address: str,
    port: int = 22,
    timeout: float = 15,
    known: list[paramiko.PKey] | None = None,
) -> paramiko.PKey:
    """The key the host presents, from a key exchange only (no authentication, no command).

    The types of the `known` keys are asked for first (as OpenSSH does), so a host that still
    has its known key presents it even if it has other keys too.

    Raises:
        SshConnectFailed: unreachable, or the SSH handshake failed.
    """
    label = known_hosts_label(address, port)
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as error:
        raise SshConnectFailed(label, f"cannot connect to {label}: {error}") from None
    transport = _transport(sock, known or [])
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as error:
        raise SshConnectFailed(label, f"SSH handshake with {label} failed: {error}") from None
    finally:
        transport.close()


# -- commands ----------------------------------------------------------------------------------


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
        output = output_tail(result.stderr) or output_tail(result.stdout) or "(no output)"
        super().__init__(
            result.host,
            f"`{result.command}` on {result.host} failed with exit status "
            f"{result.exit_status}: {output}",
        )
        self.result = result


class ConnectionLost(SshError):
    """The connection ended before the command reported an exit status; it may still run."""


class RemoteCommandTimeout(SshError, OperationTimeout):
    """The command did not finish within its timeout; the channel was closed (the command may
    run on: sshd does not stop it)."""


class _Collected:
    """Collect mode of the pump: stdout whole."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed(self, data: bytes) -> None:
        self.data += data

    def finish(self) -> str:
        return self.data.decode(errors="replace")


class _Lines:
    """Stream mode of the pump: each complete line to `on_line` as it arrives; the last
    `tail_lines` lines kept for the result."""

    def __init__(self, on_line: Callable[[str], None], tail_lines: int) -> None:
        self.on_line = on_line
        self.pending = b""
        self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines)

    def feed(self, data: bytes) -> None:
        *lines, self.pending = (self.pending + data).split(b"\n")
        for raw in lines:
            self._emit(raw)

    def finish(self) -> str:
        if self.pending:  # a last line without a newline
            self._emit(self.pending)
            self.pending = b""
        return "\n".join(self.tail)

    def _emit(self, raw: bytes) -> None:
        line = raw.decode(errors="replace").rstrip("\r")
        self.tail.append(line)
        self.on_line(line)


def execute(
    client: paramiko.SSHClient,
    command: str,
    *,
    host: str,
    timeout: float,
    on_line: Callable[[str], None] | None = None,
    tail_lines: int = 40,
) -> CommandResult:
    """Run `command` on an open connection within `timeout` seconds: the one channel pump.

    Collect mode (no `on_line`): stdout and stderr come back whole. Stream mode: stderr is
    merged into stdout (in the order the command wrote them) and `on_line` gets each line as it
    arrives; the result keeps the last `tail_lines` lines as its stdout. Either way the output
    has ended once the channel reported EOF (stdout and stderr alike: SSH has one EOF per
    channel) and the exit status is known. A non-zero exit status is returned, not raised (see
    `check`).

    Raises:
        ConnectionLost: the channel or connection closed without an exit status.
        RemoteCommandTimeout: `timeout` passed first (opening the channel included); the
            channel is closed. The deadline is our own: a Prefect timeout cannot interrupt a
            blocked read.
    """
    started = time.monotonic()
    deadline = started + timeout
    out = _Collected() if on_line is None else _Lines(on_line, tail_lines)
    err = bytearray()
    transport, channel = _start(client, command, host=host, timeout=timeout,
                                merged=on_line is not None)  # fmt: skip
    exited_at = None

    def drain() -> None:
        while channel.recv_ready():
            out.feed(channel.recv(65536))
        while channel.recv_stderr_ready():
            err.extend(channel.recv_stderr(65536))

    try:
        while True:
            drain()
            if channel.eof_received and channel.exit_status_ready():
                break
            if channel.closed or not transport.is_active():
                break
            if channel.exit_status_ready():
                # sshd may report the exit before it has forwarded all output: read on until
                # EOF, but not forever (a daemon the command started may hold the pipe open)
                exited_at = exited_at or time.monotonic()
                if time.monotonic() - exited_at > EOF_GRACE_SECONDS:
                    break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RemoteCommandTimeout(
                    host, f"`{command}` on {host} did not finish within {timeout:g}s"
                )
            if channel.eof_received:
                # after EOF the channel's fd stays readable: waiting on it would spin
                time.sleep(min(remaining, 0.01))
            else:
                # the fd becomes readable on stdout data or EOF; stderr and the exit status
                # do not wake it, hence the short cap
                select.select([channel], [], [], min(remaining, 0.05))
        drain()  # what arrived with the EOF or the close
        exit_status = channel.exit_status if channel.exit_status_ready() else -1
    finally:
        channel.close()
    stdout = out.finish()
    result = CommandResult(host, command, exit_status, stdout,
                           err.decode(errors="replace"), time.monotonic() - started)  # fmt: skip
    if exit_status == -1:
        raise ConnectionLost(
            host,
            f"connection to {host} was lost while running `{command}` (no exit status; the "
            f"command may have been killed or may still be running): "
            f"{output_tail(result.stderr or stdout)}",
        )
    return result


def _start(
    client: paramiko.SSHClient, command: str, *, host: str, timeout: float, merged: bool
) -> tuple[paramiko.Transport, paramiko.Channel]:
    """A channel running `command` (stderr merged into stdout when `merged`), stdin closed."""
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise ConnectionLost(host, f"connection to {host} is closed; `{command}` was not run")
    try:
        channel = transport.open_session(timeout=min(timeout, 30))
    except (paramiko.SSHException, EOFError, OSError) as error:
        raise ConnectionLost(host, f"connection to {host} failed starting `{command}`: "
                                   f"{type(error).__name__}: {error}") from None  # fmt: skip
    try:
        channel.set_combine_stderr(merged)
        channel.exec_command(command)
        channel.shutdown_write()  # no stdin: commands waiting for input get EOF, not a hang
    except (paramiko.SSHException, EOFError, OSError) as error:
        channel.close()
        raise ConnectionLost(host, f"connection to {host} failed starting `{command}`: "
                                   f"{type(error).__name__}: {error}") from None  # fmt: skip
    return transport, channel


def check(result: CommandResult) -> CommandResult:
    """`result` unchanged if the command succeeded; `RemoteCommandFailed` otherwise."""
    if not result.ok:
        raise RemoteCommandFailed(result)
    return result


def output_tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= OUTPUT_TAIL_CHARS else "..." + text[-OUTPUT_TAIL_CHARS:]


# -- sessions ----------------------------------------------------------------------------------


class SshSession:
    """One verified, logged-in connection to `host`: its commands (all through `execute`) and
    its SFTP files. A context manager: the connection is closed on leaving the `with`.

    Example:
        ```python
        with identity.session("192.168.122.112") as session:
            session.run("systemctl is-active mariadb")
            data = session.read_file("~/.my.cnf")
        ```
    """

    def __init__(
        self, client: paramiko.SSHClient, host: str, command_timeout: float,
        sftp_timeout: float | None = None,
    ) -> None:  # fmt: skip
        self.client, self.host = client, host
        self.command_timeout = command_timeout
        self.sftp_timeout = sftp_timeout or command_timeout
        self._sftp: paramiko.SFTPClient | None = None

    def __enter__(self) -> SshSession:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close the SFTP session (if one was opened) and the connection."""
        self.client.close()

    def run(
        self,
        command: str,
        *,
        timeout: float | None = None,
        expect_success: bool = True,
        on_line: Callable[[str], None] | None = None,
    ) -> CommandResult:
        """Run `command` (see `execute`: collected, or streamed to `on_line`).

        Args:
            timeout: Seconds for the whole command; default: the connector's command_timeout.
            expect_success: Raise `RemoteCommandFailed` on a non-zero exit status.
        """
        result = execute(self.client, command, host=self.host,
                         timeout=timeout or self.command_timeout, on_line=on_line)  # fmt: skip
        return check(result) if expect_success else result

    @property
    def sftp(self) -> paramiko.SFTPClient:
        """The connection's SFTP session, opened on first use (its reads time out after
        `sftp_timeout`)."""
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
            channel = self._sftp.get_channel()
            if channel is not None:
                channel.settimeout(self.sftp_timeout)
        return self._sftp

    def path(self, path: str) -> str:
        """`path` with a leading `~/` made absolute (see `remote_path`)."""
        return remote_path(self.sftp, path)

    def read_file(self, path: str) -> bytes | None:
        """The content of `path` (`~/` allowed), or None when it does not exist."""
        return read_remote_file(self.sftp, self.path(path))

    def write_file(self, path: str, data: bytes, mode: int) -> None:
        """Write `data` to `path` (`~/` allowed) atomically, with `mode` from the start."""
        write_remote_file(self.sftp, self.path(path), data, mode)


def open_session(
    connector: Connector, host: str, *, port: int | None = None, sftp_timeout: float | None = None
) -> SshSession:
    """A session on `host` through `connector` (an `SshIdentity`, or the command line's login).

    Raises:
        UnknownHostKey, HostKeyMismatch, SshConnectFailed: see `connect`.
    """
    return SshSession(connector.connect(host, port), host, connector.command_timeout, sftp_timeout)


def run_command(
    connector: Connector, host: str, command: str, *, timeout: float | None = None,
    expect_success: bool = True,
) -> CommandResult:  # fmt: skip
    """Connect to `host`, run one command, disconnect.

    A fresh connection per command means a cut connection costs one command, never the next:
    the restart after a failed backup always gets a new session.
    """
    with open_session(connector, host) as session:
        return session.run(command, timeout=timeout, expect_success=expect_success)


# -- files over SFTP ---------------------------------------------------------------------------


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
