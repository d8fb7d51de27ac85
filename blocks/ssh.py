"""How the flows log in to the machines they operate, as a Prefect block: `SshIdentity`.

Host keys are always verified against the block's own `known_hosts` text: an unknown host or
a changed key is refused with an error naming the host (never paramiko's AutoAddPolicy, never
`StrictHostKeyChecking no`, never the worker's ~/.ssh/known_hosts). A host is known by all its
keys, as OpenSSH knows it: the key types known_hosts lists for it are asked for first, and a key
of another type from a host known under some type is a changed key, not a new one.
"""

from __future__ import annotations

import paramiko
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from remote.ssh import (
    HostKeyMismatch,
    SshConnectFailed,
    SshError,
    SshSession,
    UnknownHostKey,
    check_host_key,
    connect,
    known_host_keys,
    load_private_key,
    open_session,
    parse_known_hosts,
    preferred_key_types,
    sha256_fingerprint,
)

__all__ = [
    "HostKeyMismatch",
    "SshConnectFailed",
    "SshError",
    "SshIdentity",
    "SshSession",
    "UnknownHostKey",
    "check_host_key",
    "known_host_keys",
    "preferred_key_types",
    "sha256_fingerprint",
]


class SshIdentity(Block):
    """A login (user + private key) and the verified host keys of the machines it may reach.

    `private_key` is the text of an OpenSSH or PEM private key (ed25519, ECDSA or RSA); it and
    its `passphrase` stay secrets. `known_hosts` is the text of a known_hosts file whose keys were
    checked out of band (e.g. `ssh-keyscan` output compared with the fingerprints the console
    log of each server prints); hosts on a port other than 22 are written `[address]:port`.

    Example:
        ```python
        from pathlib import Path
        from blocks.ssh import SshIdentity

        SshIdentity(username="ubuntu", private_key=Path("id_ed25519").read_text(),
                    known_hosts=Path("known_hosts").read_text()).save("backend-ssh")
        with SshIdentity.load("backend-ssh").session("192.168.122.112") as session:
            print(session.run("uptime").stdout)
        ```
    """

    _block_type_name = "SSH Identity"
    _description = "An SSH login (user and private key) and the verified host keys it trusts."

    username: str = Field(..., description="User to log in as.")
    private_key: SecretStr = Field(
        ..., description="Private key text (OpenSSH or PEM format: ed25519, ECDSA or RSA)."
    )
    passphrase: SecretStr | None = Field(
        default=None, description="Passphrase of the private key, if it is encrypted."
    )
    known_hosts: str = Field(
        ...,
        description="known_hosts lines of every host this identity may reach, verified out "
        "of band. Hosts not listed are refused.",
    )
    port: int = Field(default=22, ge=1, le=65535, description="SSH port of the hosts.")
    connect_timeout: float = Field(
        default=15, gt=0, description="Seconds to connect, exchange banners and log in."
    )
    command_timeout: float = Field(
        default=600, gt=0, description="Default seconds a remote command may run."
    )

    def host_keys(self) -> paramiko.HostKeys:
        """The trusted host keys parsed from `known_hosts` (hashed host names work too)."""
        return parse_known_hosts(self.known_hosts)

    def load_private_key(self) -> paramiko.PKey:
        """The private key as a paramiko key; errors never quote the key or passphrase."""
        password = self.passphrase.get_secret_value() if self.passphrase else None
        return load_private_key(
            self.private_key.get_secret_value(), password, f"SSH identity {self.username!r}"
        )

    def connect(self, host: str, port: int | None = None) -> paramiko.SSHClient:
        """A logged-in paramiko client for `host`, whose key must match `known_hosts`.

        Args:
            host: Address or name, exactly as written in `known_hosts`.
            port: Overrides the block's port.

        Raises:
            UnknownHostKey: `host` is not in `known_hosts`.
            HostKeyMismatch: `host` presented a key that is none of its keys in known_hosts
                (of any type).
            SshConnectFailed: unreachable, timed out, or the login was refused.
        """
        return connect(
            host, port or self.port, self.username, self.load_private_key(), self.host_keys(),
            timeout=self.connect_timeout, known_hosts="the SSH block's known_hosts",
            fix_changed="replace its line in the SSH block's known_hosts",
        )  # fmt: skip

    def session(
        self, host: str, port: int | None = None, sftp_timeout: float | None = None
    ) -> SshSession:
        """A verified, logged-in session on `host` (a context manager: closed on leaving the
        `with`): its commands go through the one channel pump, its files through SFTP.

        Args:
            host: Address or name, exactly as written in `known_hosts`.
            port: Overrides the block's port.
            sftp_timeout: Seconds an SFTP read may wait; default: `command_timeout`.

        Raises:
            UnknownHostKey, HostKeyMismatch, SshConnectFailed: as `connect`.
        """
        return open_session(self, host, port=port, sftp_timeout=sftp_timeout)
