"""Small naming rules used in several places: one definition each."""

from __future__ import annotations

import ipaddress
import re


def is_address(text: str) -> bool:
    """Whether `text` is an IPv4 or IPv6 address (not a host name)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def known_hosts_label(address: str, port: int) -> str:
    """How OpenSSH's known_hosts names a host: `address`, or `[address]:port` off port 22."""
    return address if port == 22 else f"[{address}]:{port}"


def artifact_key(text: str, fallback: str) -> str:
    """`text` as a Prefect artifact key (lowercase letters and digits joined by single
    dashes), or `fallback` when nothing of it is left."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or fallback
