"""haproxy's backends, judged from its stats socket (Prefect-free).

The input is what the stats socket answers to ``show stat;show table`` (e.g.
``echo 'show stat;show table' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock``; a socket
at ``level user`` is enough): the ``show stat`` CSV, whose header line starts ``# pxname,``,
then one ``# table: NAME, type: ..., size:..., used:...`` line per stick table. Only
``show stat`` is required; without ``show table`` no stick table is known.

Healthy (operations reference, "HA control plane"; seed 003's load balancer):
- every server of every backend UP: a server DOWN is critical naming ``backend/server``, one
  in maintenance or draining is a warning;
- every backend with a server UP (its ``BACKEND`` row not DOWN) and every frontend OPEN;
- Galera's backends send writes to one node at a time: at most one active (non-backup)
  server UP, unless a stick table pins the connections to one of them (``stick on dst``).
  More is a warning: the cluster still works, but writes on several nodes contend for the
  same rows (seed 003: "active/passive ... to avoid lock contention"). A Galera backend
  without health checks ("no check") is a warning too: haproxy would keep sending to a node
  that left the cluster.

Example:
    ```python
    from domain.ha_haproxy import assess_haproxy

    for finding in assess_haproxy(output, galera_backends=["galera"], node="lb1"):
        print(finding.severity, finding.subject, finding.message)
    ```
"""

from __future__ import annotations

import csv
from collections.abc import Collection
from dataclasses import dataclass

from domain.ha_health import CRITICAL, WARNING, Finding, Severity, excerpt

HAPROXY = "haproxy"

_HEADER = "# pxname,"
_TABLE = "# table:"


@dataclass(frozen=True)
class HaproxyStats:
    """``show stat`` rows (column -> value) and the stick tables' names of ``show table``."""

    rows: tuple[dict[str, str], ...]
    stick_tables: frozenset[str]


def parse_haproxy_stats(text: str) -> HaproxyStats | None:
    """The stats socket's answer, or None when it holds no ``show stat`` CSV header.

    Example:
        >>> stats = parse_haproxy_stats("# pxname,svname,status\\ngalera,db1,UP\\n\\n"
        ...                             "# table: galera, type: ip, size:1, used:0\\n")
        >>> stats.rows[0]["status"], sorted(stats.stick_tables)
        ('UP', ['galera'])
    """
    header: list[str] | None = None
    lines: list[str] = []
    tables = set()
    for line in (text or "").splitlines():
        if line.startswith(_HEADER) and header is None:
            header = next(csv.reader([line[2:]]))
        elif line.startswith(_TABLE):
            tables.add(line[len(_TABLE) :].split(",", 1)[0].strip())
        elif header is not None and line.strip() and not line.startswith("#"):
            lines.append(line)
    if header is None:
        return None
    rows = tuple(dict(zip(header, values, strict=False)) for values in csv.reader(lines))
    return HaproxyStats(rows=rows, stick_tables=frozenset(tables))


def assess_haproxy(
    stats_output: str,
    *,
    galera_backends: Collection[str] = ("galera",),
    node: str | None = None,
) -> list[Finding]:
    """Judge one haproxy's ``show stat`` (and ``show table``) answer.

    Args:
        stats_output: What the stats socket answered (or the error the command printed).
        galera_backends: Names of the backends (or ``listen`` sections) in front of Galera,
            which must send writes to one node at a time; one missing from the stats is a
            warning.
        node: The host whose haproxy answered, named in the messages (default: ``haproxy``).

    Returns:
        The findings; empty when every server is UP and Galera has one writer. Output without
        the stats CSV (socket missing, haproxy down, permission denied) is one critical
        finding, never an exception.
    """
    where = node or "haproxy"
    stats = parse_haproxy_stats(stats_output if isinstance(stats_output, str) else "")
    if stats is None:
        why = excerpt(stats_output if isinstance(stats_output, str) else "")
        return [_finding(CRITICAL, where, f"no stats from haproxy on {where}: {why}")]
    findings: list[Finding] = []
    seen_backends = set()
    for row in stats.rows:
        proxy, name, status = row.get("pxname", "?"), row.get("svname", "?"), row.get("status", "")
        if name == "FRONTEND":
            if status != "OPEN":
                findings.append(
                    _finding(CRITICAL, proxy, f"frontend {proxy} is {status} on {where}")
                )
            continue
        if name == "BACKEND":
            seen_backends.add(proxy)
            if status.startswith("DOWN"):
                findings.append(
                    _finding(CRITICAL, proxy, f"backend {proxy} has no server UP on {where}")
                )
            continue
        findings += _server(row, proxy, name, status, where, galera=proxy in galera_backends)
    for backend in galera_backends:
        if backend not in seen_backends:
            findings.append(
                _finding(WARNING, backend, f"no Galera backend {backend} in haproxy on {where}")
            )
            continue
        findings += _one_writer(stats, backend, where)
    return findings


def _finding(severity: Severity, subject: str, message: str) -> Finding:
    return Finding(HAPROXY, severity, subject, message)


def _server(
    row: dict[str, str], proxy: str, name: str, status: str, where: str, *, galera: bool
) -> list[Finding]:
    subject = f"{proxy}/{name}"
    check = ", ".join(value for value in (row.get("check_status"), row.get("check_desc")) if value)
    detail = f" ({check})" if check else ""
    if status.startswith("DOWN"):
        return [_finding(CRITICAL, subject, f"server {subject} is {status} on {where}{detail}")]
    if status.startswith("MAINT"):
        return [_finding(WARNING, subject, f"server {subject} is in maintenance on {where}")]
    if status.startswith("DRAIN"):
        return [_finding(WARNING, subject, f"server {subject} is draining on {where}")]
    if galera and status == "no check":
        return [
            _finding(
                WARNING,
                subject,
                f"Galera server {subject} has no health check on {where}: haproxy keeps "
                "sending to it when it leaves the cluster",
            )
        ]
    return []


def _one_writer(stats: HaproxyStats, backend: str, where: str) -> list[Finding]:
    """Galera's one writer at a time: one active UP server, or a stick table choosing one."""
    writers = [
        row.get("svname", "?")
        for row in stats.rows
        if row.get("pxname") == backend
        and row.get("svname") not in ("FRONTEND", "BACKEND")
        and row.get("bck") != "1"
        and (row.get("status", "").startswith("UP") or row.get("status") == "no check")
    ]
    if len(writers) <= 1 or backend in stats.stick_tables:
        return []
    return [
        _finding(
            WARNING,
            backend,
            f"Galera backend {backend} on {where} sends writes to {len(writers)} servers at "
            f"once ({', '.join(writers)}): one writer at a time needs the others marked "
            "backup or a stick table (stick on dst)",
        )
    ]
