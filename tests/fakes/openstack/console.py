"""Nova console logs as cloud-init writes them, with the SSH host key fingerprints it printed.

setup-analytics-host verifies a new server's host key against these lines, so the fake's
servers (seeded, or created by Heat through :meth:`OpenStackFake.set_boot_console`) need them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path


def fingerprint_of(public_key: Path) -> str:
    """`256 SHA256:... comment (ED25519)`, exactly as ssh-keygen (and cloud-init) print it.

    Raises:
        ValueError: ssh-keygen could not read `public_key` (its message says why).
    """
    result = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(public_key)], capture_output=True, text=True, timeout=30
    )
    if result.returncode != 0:
        raise ValueError(f"ssh-keygen -l -f {public_key}: {result.stderr.strip()}")
    return result.stdout.strip()


def console_log(fingerprint_lines: Iterable[str], key_lines: Iterable[str] = ()) -> str:
    """A console log (kernel and cloud-init prefixes included) printing these fingerprints and,
    when given, these public keys."""
    fingerprints = "".join(f"ec2: {line}\n" for line in fingerprint_lines)
    keys = "".join(f"{line}\n" for line in key_lines)
    return (
        "[    0.000000] Linux version 6.1.0-13-cloud-amd64\n"
        "[   12.345678] cloud-init[812]: Cloud-init v. 23.1 running 'modules:config'\n"
        "ec2: \nec2: #############################################################\n"
        "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
        f"{fingerprints}"
        "ec2: -----END SSH HOST KEY FINGERPRINTS-----\n"
        "ec2: #############################################################\n"
        + (f"-----BEGIN SSH HOST KEY KEYS-----\n{keys}-----END SSH HOST KEY KEYS-----\n"
           if keys else "")
    )  # fmt: skip
