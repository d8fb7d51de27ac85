"""Throwaway OpenSSH servers for tests: each `SshHost` is one "machine" a flow can SSH into.

Every host runs its own `/usr/sbin/sshd -D -e` with its own ed25519 host key, configuration,
authorized_keys and TCP port, on 127.0.0.1 or another loopback address (127.0.0.11, ...: Linux
routes all of 127.0.0.0/8 to the loopback interface). Commands run as a real local user (root in
CI), so they see the same files and sockets as the test, e.g. a test MariaDB server's socket.

Host keys are always verified: clients get the host's known_hosts line (`known_hosts_line`,
`write_known_hosts()`) and `connect()` uses paramiko's RejectPolicy. Fault controls:
`replace_host_key()` (clients holding the old line see a mismatch), `add_host_key("rsa")` (the
host then has keys of two types) and `cut_connections()` (kills the per-connection sshd
processes while the listener keeps accepting).

sshd starts in about 10 ms; generating a key with ssh-keygen takes a few ms.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import psutil

from tests.bed.ports import free_port

PRIVSEP_DIR = Path("/run/sshd")
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"


def find_binary(name: str) -> str | None:
    """Locate `name` on PATH or in the sbin directories (often missing from a user's PATH)."""
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:{SBIN_PATH}")


def missing_ssh_binaries() -> dict[str, str]:
    """Binaries the SSH bed needs that are not installed, mapped to their Debian package."""
    needed = {"sshd": "openssh-server", "ssh-keygen": "openssh-client"}
    return {name: package for name, package in needed.items() if find_binary(name) is None}


def current_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def generate_key(path: Path, comment: str = "test-bed", key_type: str = "ed25519") -> Path:
    """Create a key pair (`ssh-keygen -t key_type`, no passphrase) at `path` and `path`.pub;
    returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    subprocess.run(
        [find_binary("ssh-keygen") or "ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", comment,
         "-f", str(path)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return path


def generate_ed25519_key(path: Path, comment: str = "test-bed") -> Path:
    """Create an ed25519 key pair without passphrase at `path` and `path`.pub; returns `path`."""
    return generate_key(path, comment, "ed25519")


def public_key_line(path: Path) -> str:
    """`<type> <base64>` of the key pair at `path` (read from `path`.pub)."""
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


def known_hosts_name(address: str, port: int) -> str:
    """The host field OpenSSH and paramiko use in known_hosts: `[addr]:port` unless port 22."""
    return address if port == 22 else f"[{address}]:{port}"


def loopback_alias_usable(address: str) -> bool:
    """True if this machine lets us bind `address` (127.0.0.x aliases work on Linux)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


@dataclass
class CommandResult:
    """What a command run over SSH returned; `exit_status` is -1 if the connection was lost."""

    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass
class SshHost:
    """One sshd listener with its own host key, acting as a separate host for the flows.

    `client_key` is the private key clients log in with; several hosts may share one (as
    an operator's key is authorized on every machine). If not given, one is generated.
    """

    base_dir: Path
    name: str = "bed-host"
    address: str = "127.0.0.1"
    port: int = 0
    user: str = field(default_factory=current_user)
    client_key: Path | None = None
    #: Environment variables sshd sets for every session (`SetEnv`), e.g. a node's PATH.
    environment: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    # Commands left running by cut_connections(kill_commands=False); killed by stop().
    _orphans: list[psutil.Process] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir)
        if not self.port:
            self.port = free_port(self.address)

    # -- files -----------------------------------------------------------------------------

    @property
    def host_key(self) -> Path:
        return self.base_dir / "ssh_host_ed25519_key"

    @property
    def public_host_key(self) -> Path:
        return self.host_key.with_name(self.host_key.name + ".pub")

    @property
    def extra_host_keys(self) -> list[Path]:
        """Host keys of other types added by `add_host_key`."""
        return sorted(self.base_dir.glob("ssh_host_*_key_extra"))

    @property
    def config_file(self) -> Path:
        return self.base_dir / "sshd_config"

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "sshd.pid"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "sshd.log"

    @property
    def authorized_keys(self) -> Path:
        return self.base_dir / "authorized_keys"

    # -- identity ----------------------------------------------------------------------------

    @property
    def known_hosts_name(self) -> str:
        return known_hosts_name(self.address, self.port)

    @property
    def known_hosts_line(self) -> str:
        """This host's *current* key as a known_hosts line: `[127.0.0.1]:PORT ssh-ed25519 AAAA`."""
        return f"{self.known_hosts_name} {public_key_line(self.host_key)}"

    def write_known_hosts(self, path: Path | None = None) -> Path:
        """Write the current known_hosts line to `path` (default: `base_dir/known_hosts`)."""
        path = path or self.base_dir / "known_hosts"
        path.write_text(self.known_hosts_line + "\n")
        return path

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10) -> SshHost:
        """Generate missing keys, write the configuration and start sshd; returns when it serves."""
        if self.is_running():
            return self
        _ensure_privsep_dir()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            generate_ed25519_key(self.host_key, comment=f"{self.name} host key")
        if self.client_key is None:
            self.client_key = generate_ed25519_key(self.base_dir / "client_ed25519_key",
                                                   comment="test-bed client")  # fmt: skip
        self.authorized_keys.write_text(
            self.client_key.with_name(self.client_key.name + ".pub").read_text()
        )
        self.config_file.write_text(self._config_text())
        sshd = find_binary("sshd") or "/usr/sbin/sshd"
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sshd, "-D", "-e", "-f", str(self.config_file), "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        self._wait_serving(timeout)
        return self

    def stop(self, timeout: float = 10) -> None:
        """Kill every session and the commands they run, then stop the listener."""
        self.cut_connections(kill_commands=True)
        _kill_and_wait(self._orphans, timeout)
        self._orphans.clear()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> SshHost:
        """Stop the listener and start it again on the same address and port."""
        self.stop()
        return self.start()

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- fault controls ------------------------------------------------------------------------

    def replace_host_key(self) -> str:
        """Give the host a new key and restart sshd; returns the new known_hosts line.

        Clients still trusting the old line get a host key mismatch (paramiko:
        BadHostKeyException), like after a machine was rebuilt or an address reassigned.
        """
        generate_ed25519_key(self.host_key, comment=f"{self.name} host key (replaced)")
        self.restart()
        return self.known_hosts_line

    def add_host_key(self, key_type: str = "rsa") -> str:
        """Give the host a second key, of `key_type`, and restart sshd; returns its known_hosts
        line. The ed25519 key stays: which one a client sees depends on what it asks for."""
        key = generate_key(
            self.base_dir / f"ssh_host_{key_type}_key_extra", f"{self.name} host key", key_type
        )
        self.restart()
        return f"{self.known_hosts_name} {public_key_line(key)}"

    def session_processes(self) -> list[psutil.Process]:
        """The listener's descendants: per-connection sshd processes and the commands they run."""
        if not self.is_running():
            return []
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def cut_connections(self, kill_commands: bool = True) -> int:
        """Drop every open SSH connection at once, as if the network failed; the listener stays.

        The per-connection sshd processes are SIGKILLed, so clients see the connection end
        without an exit status (paramiko: `recv_exit_status()` returns -1). With
        `kill_commands=False` the remote commands keep running, as they often do when a
        connection drops; `stop()` kills them later. Returns the number of processes killed.
        """
        sessions = self.session_processes()
        victims = []
        for process in sessions:
            try:
                is_sshd = process.name() == "sshd"
            except psutil.NoSuchProcess:
                continue
            if is_sshd or kill_commands:
                victims.append(process)
            else:
                self._orphans.append(process)
        _kill_and_wait(victims, timeout=10)
        return len(victims)

    # -- clients -------------------------------------------------------------------------------

    def connect(
        self, known_hosts_line: str | None = None, timeout: float = 10
    ) -> paramiko.SSHClient:
        """A logged-in paramiko client that trusts only `known_hosts_line` (default: current key).

        Unknown or mismatching host keys are refused (RejectPolicy / BadHostKeyException).
        """
        client = paramiko.SSHClient()
        entry = paramiko.hostkeys.HostKeyEntry.from_line(known_hosts_line or self.known_hosts_line)
        for hostname in entry.hostnames:
            client.get_host_keys().add(hostname, entry.key.get_name(), entry.key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                self.address, port=self.port, username=self.user,
                key_filename=str(self.client_key), look_for_keys=False, allow_agent=False,
                timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
            )  # fmt: skip
        except BaseException:
            client.close()
            raise
        return client

    def run(self, command: str, timeout: float = 60) -> CommandResult:
        """Run `command` on this host over SSH (a fresh connection) and collect its output."""
        client = self.connect(timeout=min(timeout, 10))
        try:
            _stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            return CommandResult(stdout.channel.recv_exit_status(), out, err)
        finally:
            client.close()

    def ssh_argv(self, command: str | None = None, known_hosts: Path | None = None) -> list[str]:
        """An OpenSSH client command line for this host, with strict host key checking."""
        known_hosts = known_hosts or self.write_known_hosts()
        argv = [
            "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes", "-i", str(self.client_key),
            "-p", str(self.port), f"{self.user}@{self.address}",
        ]  # fmt: skip
        return [*argv, command] if command is not None else argv

    # -- internals -----------------------------------------------------------------------------

    def _config_text(self) -> str:
        return "\n".join([
            f"# sshd for test-bed host {self.name}; generated by tests/bed/sshd.py",
            f"ListenAddress {self.address}",
            f"HostKey {self.host_key}",
            *(f"HostKey {key}" for key in self.extra_host_keys),
            f"PidFile {self.pid_file}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"AllowUsers {self.user}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "MaxStartups 50:30:100",
            "MaxSessions 50",
            "Subsystem sftp internal-sftp",
            # One line: sshd takes the first SetEnv line only (first value wins, sshd_config(5)).
            *([f"SetEnv {_set_env(self.environment)}"] if self.environment else []),
            "",
        ])  # fmt: skip

    def _wait_serving(self, timeout: float) -> None:
        """Wait until the listener answers with an SSH banner."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd for {self.name} exited early:\n{self._log_tail()}")
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as probe:
                    if probe.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            time.sleep(0.01)
        raise TimeoutError(
            f"sshd for {self.name} not serving after {timeout}s:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no sshd log)"


def _set_env(environment: dict[str, str]) -> str:
    return " ".join(f'{name}="{value}"' for name, value in environment.items())


def known_hosts_text(hosts: list[SshHost]) -> str:
    """A known_hosts file body trusting the current keys of all `hosts`."""
    return "".join(host.known_hosts_line + "\n" for host in hosts)


def _ensure_privsep_dir() -> None:
    """sshd refuses to start without its privilege separation directory."""
    if PRIVSEP_DIR.is_dir():
        return
    try:
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
    except PermissionError as error:
        raise RuntimeError(
            f"sshd needs {PRIVSEP_DIR}; create it as root: mkdir -p {PRIVSEP_DIR}"
        ) from error


def _kill_and_wait(processes: list[psutil.Process], timeout: float) -> None:
    """SIGKILL `processes` and wait until each is gone (or a zombie nobody has reaped yet)."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + timeout
    for process in processes:
        while time.monotonic() < deadline and process_alive(process):
            time.sleep(0.01)


def process_alive(process: psutil.Process) -> bool:
    """True if the process exists and is not a zombie waiting for its parent to reap it."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
