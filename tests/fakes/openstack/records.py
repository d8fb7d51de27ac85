"""Records of the OpenStack fake (servers, volumes, snapshots, the identity) and helpers.

Plain dataclasses: :class:`~.state.CloudState` stores them and applies the rules; the API
modules turn them into JSON views.
"""

from __future__ import annotations

import random
import string
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Snapshot outcomes a test can force: reach ``error``, or stay ``creating`` forever.
SNAPSHOT_ERROR = "error"
SNAPSHOT_STUCK = "stuck"


class ApiError(Exception):
    """An error answer of an API: status code, message and (for Heat) an error type."""

    def __init__(self, status: int, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


def new_id() -> str:
    """A fresh UUID, as Nova, Cinder and Heat use for resource ids."""
    return str(uuid.uuid4())


def short_id(length: int = 12) -> str:
    """Random lowercase letters and digits, like the suffix of Heat's physical names."""
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=length))


def timestamp() -> str:
    """The current UTC time as the APIs print it (``2026-11-03T10:15:02.123456``)."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


@dataclass
class Identity:
    """The one user and project the fake knows, and the region of its catalog."""

    username: str = "admin"
    password: str = "secret"
    project_name: str = "demo"
    domain_name: str = "Default"
    region_name: str = "RegionOne"
    user_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    project_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class Server:
    """A Nova server. ``addresses`` is in Nova's format: ``{network: [{"addr": ...}, ...]}``."""

    id: str
    name: str
    status: str = "ACTIVE"
    addresses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    console_output: str = ""
    image_id: str = ""
    flavor: str = "m1.large"
    key_name: str | None = None
    created_at: str = field(default_factory=timestamp)
    updated_at: str = field(default_factory=timestamp)


@dataclass
class Volume:
    """A Cinder volume. Each attachment is ``{"server_id", "attachment_id", "device", ...}``."""

    id: str
    name: str
    size: int = 10
    status: str = "available"
    attachments: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    volume_type: str = "__DEFAULT__"
    created_at: str = field(default_factory=timestamp)
    updated_at: str = field(default_factory=timestamp)


@dataclass
class Snapshot:
    """A Cinder snapshot. While ``creating`` it becomes ``outcome`` at ``ready_at``
    (a ``time.monotonic()`` value); ``ready_at`` None means it never leaves ``creating``."""

    id: str
    name: str | None
    volume_id: str
    size: int
    status: str = "creating"
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: str = field(default_factory=timestamp)
    updated_at: str = field(default_factory=timestamp)
    ready_at: float | None = None
    outcome: str = "available"


def normalise_addresses(addresses: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    """Accept ``{"net": ["10.0.0.5", {"addr": "172.24.4.9", "OS-EXT-IPS:type": "floating"}]}``
    and return Nova's full address format (version, type and MAC filled in)."""
    result: dict[str, list[dict[str, Any]]] = {}
    for network, entries in (addresses or {}).items():
        if isinstance(entries, str | dict):
            entries = [entries]
        items = []
        for entry in entries:
            item = {"addr": entry} if isinstance(entry, str) else dict(entry)
            item.setdefault("version", 6 if ":" in item["addr"] else 4)
            item.setdefault("OS-EXT-IPS:type", "fixed")
            item.setdefault("OS-EXT-IPS-MAC:mac_addr", random_mac())
            items.append(item)
        result[network] = items
    return result


def random_mac() -> str:
    """A locally administered MAC address in OpenStack's ``fa:16:3e`` range."""
    return "fa:16:3e:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))
