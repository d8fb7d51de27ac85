"""Galera's HTTP check (``clustercheck`` on port 9200), judged from its answer (Prefect-free).

haproxy sends Galera traffic only to a node whose check answers ``200`` (the operations
reference: 200 "synced", 503 otherwise; Percona's ``clustercheck`` under xinetd is the usual
form). The input is the raw HTTP answer with its headers, as ``curl --include`` prints it, or
as the ``clustercheck`` script itself prints it when run as a command::

    HTTP/1.1 503 Service Unavailable
    Content-Type: text/plain
    ...

    Percona XtraDB Cluster Node is not synced.

Example:
    ```python
    from domain.ha_clustercheck import assess_galera_http

    for finding in assess_galera_http(output, node="db1"):
        print(finding.severity, finding.subject, finding.message)
    ```
"""

from __future__ import annotations

import re

from domain.ha_health import CRITICAL, Finding, excerpt

CLUSTERCHECK = "clustercheck"

_STATUS_LINE = re.compile(r"^HTTP/\d(?:\.\d)?\s+(\d{3})\s*(.*)$")


def parse_http_answer(text: str) -> tuple[int, str, str] | None:
    """(status code, reason, body) of the last HTTP answer in ``text``, or None.

    The last one counts: ``curl --include`` prints an interim ``100 Continue`` first when a
    server sends one.

    Example:
        >>> parse_http_answer("HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nok\\r\\n")
        (200, 'OK', 'ok')
    """
    lines = (text or "").replace("\r\n", "\n").split("\n")
    found = [(i, m) for i, line in enumerate(lines) if (m := _STATUS_LINE.match(line.strip()))]
    if not found:
        return None
    start, match = found[-1]
    rest = lines[start + 1 :]
    body = rest[rest.index("") + 1 :] if "" in rest else []
    return int(match.group(1)), match.group(2).strip(), " ".join("\n".join(body).split())


def assess_galera_http(answer: str, *, node: str) -> list[Finding]:
    """Judge one node's Galera HTTP check.

    Args:
        answer: The HTTP answer with headers (``curl --silent --show-error --include``), or
            the error the command printed when nothing answered.
        node: The node checked, the findings' subject.

    Returns:
        Empty for ``200``; a critical finding naming the node for any other status (with the
        check's own words) and for no HTTP answer at all (nothing listens on 9200, xinetd
        down): haproxy then sends this node no traffic.
    """
    parsed = parse_http_answer(answer if isinstance(answer, str) else "")
    if parsed is None:
        why = excerpt(answer if isinstance(answer, str) else "")
        return [
            Finding(
                CLUSTERCHECK,
                CRITICAL,
                node,
                f"no HTTP answer from the Galera check on {node}: {why}",
            )
        ]
    code, reason, body = parsed
    if code == 200:
        return []
    said = f": {body[:200]}" if body else ""
    return [
        Finding(
            CLUSTERCHECK,
            CRITICAL,
            node,
            f"the Galera check on {node} answered {code} {reason}{said} (haproxy sends it no "
            "traffic)",
        )
    ]
