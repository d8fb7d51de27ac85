"""HA control-plane health: the assessments of :mod:`domain.ha_health`, where data engineers
look for them (``from tasks.ha_health import assess_pacemaker``).

The assessments, and the topology lint of an inventory (:mod:`domain.ha_topology`), are
Prefect-free and live in ``domain/`` (pure functions over the commands' output and the
inventory); this module re-exports them so that callers need not know where.
"""

from __future__ import annotations

from domain.ha_clustercheck import assess_galera_http
from domain.ha_corosync import assess_corosync_quorum
from domain.ha_haproxy import assess_haproxy
from domain.ha_health import (
    CRITICAL,
    WARNING,
    Finding,
    any_critical,
    assess_galera,
    assess_galera_cluster,
    assess_pacemaker,
    assess_rabbitmq,
    parse_wsrep_status,
)
from domain.ha_topology import lint_topology

__all__ = [
    "CRITICAL",
    "WARNING",
    "Finding",
    "any_critical",
    "assess_corosync_quorum",
    "assess_galera",
    "assess_galera_cluster",
    "assess_galera_http",
    "assess_haproxy",
    "assess_pacemaker",
    "assess_rabbitmq",
    "lint_topology",
    "parse_wsrep_status",
]
