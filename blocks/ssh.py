"""How the flows log in to the machines they operate, as a Prefect block: `SshIdentity`.

Host keys are always verified against the block's own `known_hosts` text: an unknown host or
a changed key is refused with an error naming the host (never paramiko's AutoAddPolicy, never
`StrictHostKeyChecking no`, never the worker's ~/.ssh/known_hosts).
"""

from __future__ import annotations

import io
import socket

import paramiko
from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class SshError(RuntimeError):
    """Anything that went wrong reaching or using a host over SSH; `host` names it."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message)
        self.host = host


class UnknownHostKey(SshError):
    """The host is not in the block's known_hosts: nothing was sent to it."""


class HostKeyMismatch(SshError):
    """The host presented a different key than known_hosts holds (rebuilt, or intercepted)."""


class SshConnectFailed(SshError):
    """The host could not be reached or refused the login."""


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
        client = SshIdentity.load("backend-ssh").connect("192.168.122.112")
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
        keys = paramiko.HostKeys()
        for number, raw in enumerate(self.known_hosts.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("@"):
                # @cert-authority / @revoked markers: paramiko cannot honour them, and
                # silently trusting a revoked key would be worse than refusing the host.
                raise ValueError(f"known_hosts line {number}: markers ({line.split()[0]}) "
                                 "are not supported; list the host keys themselves")  # fmt: skip
            try:
                entry = paramiko.hostkeys.HostKeyEntry.from_line(line, lineno=number)
            except paramiko.SSHException as error:
                raise ValueError(f"known_hosts line {number} is not valid: {error}") from None
            if entry is None:  # a key type paramiko does not know (e.g. DSA since paramiko 4)
                continue
            for hostname in entry.hostnames:
                keys.add(hostname, entry.key.get_name(), entry.key)
        return keys

    def load_private_key(self) -> paramiko.PKey:
        """The private key as a paramiko key; errors never quote the key or passphrase."""
        text = self.private_key.get_secret_value()
        password = self.passphrase.get_secret_value() if self.passphrase else None
        for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
            try:
                return key_class.from_private_key(io.StringIO(text), password=password)
            except paramiko.PasswordRequiredException:
                raise ValueError(
                    f"the private key of SSH identity {self.username!r} is encrypted: "
                    "set the block's passphrase"
                ) from None
            except (paramiko.SSHException, ValueError, IndexError):
                continue
        raise ValueError(
            f"the private key of SSH identity {self.username!r} is not an ed25519, ECDSA or "
            "RSA key in OpenSSH/PEM format (or the passphrase is wrong)"
        )

    def connect(self, host: str, port: int | None = None) -> paramiko.SSHClient:
        """A logged-in paramiko client for `host`, whose key must match `known_hosts`.

        Args:
            host: Address or name, exactly as written in `known_hosts`.
            port: Overrides the block's port.

        Raises:
            UnknownHostKey: `host` is not in `known_hosts`.
            HostKeyMismatch: `host` presented another key.
            SshConnectFailed: unreachable, timed out, or the login was refused.
        """
        port = port or self.port
        label = host if port == 22 else f"[{host}]:{port}"
        client = paramiko.SSHClient()
        trusted = self.host_keys()
        for hostname in trusted:
            for key_type, key in trusted[hostname].items():
                client.get_host_keys().add(hostname, key_type, key)
        client.set_missing_host_key_policy(_RefuseUnknownHost())
        try:
            client.connect(
                host,
                port=port,
                username=self.username,
                pkey=self.load_private_key(),
                look_for_keys=False,
                allow_agent=False,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                channel_timeout=self.connect_timeout,
            )
        except paramiko.BadHostKeyException as error:
            client.close()
            raise HostKeyMismatch(
                label,
                f"host key of {label} does not match known_hosts: it presented "
                f"{error.key.get_name()} {error.key.fingerprint}, known_hosts has "
                f"{error.expected_key.get_name()} {error.expected_key.fingerprint}. Refusing to "
                "connect: if the host was rebuilt, verify its new key and update the SSH block.",
            ) from None
        except UnknownHostKey:
            client.close()
            raise
        except paramiko.AuthenticationException as error:
            client.close()
            raise SshConnectFailed(
                label, f"login to {label} as {self.username!r} was refused: {error}"
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


class _RefuseUnknownHost(paramiko.RejectPolicy):
    """RejectPolicy with an error that says which host and what to do about it."""

    def missing_host_key(self, client, hostname, key):
        raise UnknownHostKey(
            hostname,
            f"{hostname} is not in the SSH block's known_hosts (it presented "
            f"{key.get_name()} {key.fingerprint}). Refusing to connect: verify the key out of "
            "band and add its line to the block's known_hosts.",
        )
