"""Nova's view of a server's addresses, read once for every caller (inventory, cloud tasks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

FIXED, FLOATING = "fixed", "floating"


def nova_addresses(
    addresses: Mapping[str, Sequence[Mapping[str, Any]]] | None,
) -> tuple[tuple[str, str, str], ...]:
    """``(network, address, type)`` for each entry of a Nova server's ``addresses``
    (``{"net": [{"addr": ..., "OS-EXT-IPS:type": "fixed"|"floating"}]}``), in Nova's order.

    An entry without a type is fixed (older Nova leaves the extension out); one without an
    address has ``""``.

    Example:
        >>> nova_addresses({"net": [{"addr": "10.0.0.5"},
        ...                         {"addr": "203.0.113.5", "OS-EXT-IPS:type": "floating"}]})
        (('net', '10.0.0.5', 'fixed'), ('net', '203.0.113.5', 'floating'))
    """
    return tuple(
        (network, entry.get("addr", ""), entry.get("OS-EXT-IPS:type", FIXED))
        for network, entries in (addresses or {}).items()
        for entry in entries
    )


def addresses_of_kind(
    addresses: Mapping[str, Sequence[Mapping[str, Any]]] | None, kind: str
) -> list[str]:
    """The non-empty addresses of type `kind` (`fixed` or `floating`), in Nova's order."""
    return [address for _, address, found in nova_addresses(addresses) if found == kind and address]
