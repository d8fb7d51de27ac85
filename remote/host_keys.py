"""Whether a new host's key may be trusted: known_hosts, then the cloud-init fingerprints in the
server's Nova console log, then (only when the operator opted in) trust on first use. Pure logic,
Prefect-free: the key exchange that fetches the key is `remote.ssh.fetch_host_key`, reading the
console log is the cloud's (`tasks.host_setup.console_keys`).

cloud-init prints, on the server's console at first boot (so into Nova's console log, which
only the cloud and the project can read)::

    -----BEGIN SSH HOST KEY FINGERPRINTS-----
    256 SHA256:Hk3n...Kq0 root@analytics (ED25519)
    -----END SSH HOST KEY FINGERPRINTS-----
    -----BEGIN SSH HOST KEY KEYS-----
    ssh-ed25519 AAAAC3Nz... root@analytics
    -----END SSH HOST KEY KEYS-----

(lines may carry a prefix such as ``ec2:`` or a kernel timestamp). `verify_host_key` decides:
a host already in known_hosts must present one of its keys there, whatever the type (else
`HostKeyMismatch`: a host known under RSA that presents ed25519 has changed, it is not new); a
new host's key must match the console's fingerprint or key of its type (else
`HostKeyNotVerified`), and without any console fingerprints it is trusted on first use only
when the operator opted in.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

import paramiko

from domain.names import known_hosts_label
from pipeline.errors import Refused
from remote.ssh import SshError, check_host_key, sha256_fingerprint

_FINGERPRINT_LINE = re.compile(
    r"(?P<bits>\d+)\s+(?P<fp>(?:SHA256:[A-Za-z0-9+/]+=*)|(?:(?:MD5:)?(?:[0-9a-f]{2}:){15}[0-9a-f]{2}))"
    r"(?:\s+.*?)?\s*\((?P<type>[A-Z0-9-]+)\)\s*$"
)
_KEY_LINE = re.compile(
    r"(?P<type>ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+)\s+(?P<b64>[A-Za-z0-9+/]+=*)"
)


class HostKeyNotVerified(SshError, Refused):
    """The host's key could not be verified against a trusted source: it was not recorded."""


#: How a flow's operator accepts a key the console cannot confirm (`verify_host_key`'s remedy).
FLOW_REMEDY = (
    "and rerun with trust_on_first_use=True, or add its line to the SSH block's known_hosts"
)


@dataclass(frozen=True)
class ConsoleKeys:
    """What a console log says about a server's host keys."""

    fingerprints: tuple[tuple[str, str], ...] = ()  # (family, fingerprint) e.g. ("ED25519", ...)
    keys: tuple[tuple[str, str], ...] = ()  # (key type, base64)

    def __bool__(self) -> bool:
        return bool(self.fingerprints or self.keys)


@dataclass(frozen=True)
class HostKeyCheck:
    """The outcome for one host: `status` ok (already known) or changed (recorded now)."""

    host: str
    label: str  # as written in known_hosts: address, or [address]:port
    key_type: str
    fingerprint: str
    source: Literal["known_hosts", "console", "trust-on-first-use"]
    status: Literal["ok", "changed"]


def key_family(key_type: str) -> str:
    """`ssh-ed25519` -> ED25519, `ecdsa-sha2-nistp256` -> ECDSA, `ssh-rsa` -> RSA."""
    if key_type == "ssh-ed25519":
        return "ED25519"
    if key_type.startswith("ecdsa-"):
        return "ECDSA"
    if key_type in ("ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"):
        return "RSA"
    return key_type.upper()


def parse_console_keys(text: str) -> ConsoleKeys:
    """The fingerprints and keys inside cloud-init's BEGIN/END blocks (the last boot's win)."""
    fingerprints: list[tuple[str, str]] = []
    keys: list[tuple[str, str]] = []
    section = None
    for line in text.splitlines():
        if "-----BEGIN SSH HOST KEY FINGERPRINTS-----" in line:
            section, fingerprints = "fp", []
        elif "-----BEGIN SSH HOST KEY KEYS-----" in line:
            section, keys = "keys", []
        elif "-----END SSH HOST KEY" in line:
            section = None
        elif section == "fp":
            match = _FINGERPRINT_LINE.search(line)
            if match:
                fp = match.group("fp")
                if not fp.startswith("SHA256:") and not fp.startswith("MD5:"):
                    fp = "MD5:" + fp
                fingerprints.append((match.group("type"), fp.rstrip("=")))
        elif section == "keys":
            match = _KEY_LINE.search(line)
            if match:
                keys.append((match.group("type"), match.group("b64")))
    return ConsoleKeys(tuple(fingerprints), tuple(keys))


def md5_fingerprint(key: paramiko.PKey) -> str:
    return "MD5:" + ":".join(f"{b:02x}" for b in hashlib.md5(key.asbytes()).digest())  # noqa: S324


def console_matches(key: paramiko.PKey, console: ConsoleKeys) -> bool | None:
    """True/False when the console lists keys or fingerprints of the key's family; None when it
    lists none of that family (nothing to compare with)."""
    family = key_family(key.get_name())
    same_keys = [b64 for kind, b64 in console.keys if key_family(kind) == family]
    if same_keys and key.get_base64() not in same_keys:
        return False
    mine = {sha256_fingerprint(key), md5_fingerprint(key)}
    same_fps = [fp for kind, fp in console.fingerprints if kind == family]
    if same_fps:
        return any(fp in mine for fp in same_fps)
    return True if same_keys else None


def verify_host_key(
    address: str,
    port: int,
    presented: paramiko.PKey,
    trusted: paramiko.HostKeys,
    console: ConsoleKeys,
    *,
    trust_on_first_use: bool = False,
    remedy: str = FLOW_REMEDY,
) -> HostKeyCheck:
    """Decide whether `presented` may be trusted for `address` (see the module docstring).

    `remedy` ends the refusal of a key the console cannot confirm: what the caller's user can
    do (the flows' parameters by default; remote-task names its own options).

    Raises:
        HostKeyMismatch: known_hosts lists keys of that host and the presented key is none of
            them, of whatever type (trust on first use or not).
        HostKeyNotVerified: new, and the console contradicts it or (without TOFU) is silent.
    """
    label = known_hosts_label(address, port)
    fingerprint = sha256_fingerprint(presented)
    key_type = presented.get_name()
    if check_host_key(label, presented, trusted):
        return HostKeyCheck(address, label, key_type, fingerprint, "known_hosts", "ok")
    verdict = console_matches(presented, console)
    if verdict is True:
        return HostKeyCheck(address, label, key_type, fingerprint, "console", "changed")
    if verdict is False:
        listed = ", ".join(f"{kind} {fp}" for kind, fp in console.fingerprints) or "keys only"
        raise HostKeyNotVerified(
            label,
            f"host key of {label} ({key_type} {fingerprint}) does NOT match the fingerprints "
            f"cloud-init printed on the server's console ({listed}). Refusing it: something "
            "else answers on that address, or the server is not the one you think.",
        )
    if trust_on_first_use:
        return HostKeyCheck(address, label, key_type, fingerprint, "trust-on-first-use", "changed")
    why = "lists none of its type" if console else "has no SSH host key fingerprints"
    raise HostKeyNotVerified(
        label,
        f"cannot verify the host key of {label} ({key_type} {fingerprint}): the server's console "
        f"log {why} (rotated away, or the image does not print them). Compare the fingerprint "
        f"with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the server's console {remedy}.",
    )


def known_hosts_with(text: str, label: str, key: paramiko.PKey) -> str:
    """`text` plus a line for `label` (nothing added when that exact line is there)."""
    line = f"{label} {key.get_name()} {key.get_base64()}"
    lines = [existing for existing in text.splitlines() if existing.strip()]
    if line in lines:
        return text
    return "\n".join([*lines, line]) + "\n"
