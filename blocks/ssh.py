"""How the flows log in to the machines they operate, as a Prefect block: `SshIdentity`.

Host keys are always verified against the block's own `known_hosts` text: an unknown host or
a changed key is refused with an error naming the host (never paramiko's AutoAddPolicy, never
`StrictHostKeyChecking no`, never the worker's ~/.ssh/known_hosts). A host is known by all its
keys, as OpenSSH knows it: the key types known_hosts lists for it are asked for first, and a key
of another type from a host known under some type is a changed key, not a new one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import socket
from collections.abc import Iterable

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


def check_host_key(label: str, presented: paramiko.PKey, trusted: paramiko.HostKeys) -> bool:
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
        f"{sha256_fingerprint(presented)}, which does not match known_hosts ({listed}). "
        "Refusing it: if the server was rebuilt, verify its new key out of band (e.g. the "
        "fingerprints cloud-init printed on its console), then replace its line(s) in the SSH "
        "block's known_hosts and run again.",
    )


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
            HostKeyMismatch: `host` presented a key that is none of its keys in known_hosts
                (of any type).
            SshConnectFailed: unreachable, timed out, or the login was refused.
        """
        port = port or self.port
        label = host if port == 22 else f"[{host}]:{port}"
        trusted = self.host_keys()
        known = known_host_keys(trusted, label)
        client = paramiko.SSHClient()
        # paramiko's client is given no keys, so every host goes through the policy, which
        # compares with all the host's keys (paramiko itself compares one key type only).
        client.set_missing_host_key_policy(_VerifyHostKey(trusted))
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
                transport_factory=lambda sock, **options: _transport(sock, known, **options),
            )
        except (UnknownHostKey, HostKeyMismatch):
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


def _transport(sock, known: list[paramiko.PKey], **options) -> paramiko.Transport:
    """A client transport asking first for the key types the host is known under."""
    transport = paramiko.Transport(sock, **options)
    security = transport.get_security_options()
    security.key_types = preferred_key_types(known, security.key_types)
    return transport


class _VerifyHostKey(paramiko.MissingHostKeyPolicy):
    """Accepts a host's key only when it is one of the host's keys in the block's known_hosts;
    refuses anything else with an error that says which host and what to do about it."""

    def __init__(self, trusted: paramiko.HostKeys) -> None:
        self.trusted = trusted

    def missing_host_key(self, client, hostname, key):
        if check_host_key(hostname, key, self.trusted):
            return
        raise UnknownHostKey(
            hostname,
            f"{hostname} is not in the SSH block's known_hosts (it presented "
            f"{key.get_name()} {sha256_fingerprint(key)}). Refusing to connect: verify the key "
            "out of band and add its line to the block's known_hosts.",
        )
