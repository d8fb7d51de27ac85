"""Health of the HA control plane, judged from the commands' own output (Prefect-free).

Each ``assess_*`` function takes what an operator's command printed and returns a list of
:class:`Finding` (empty: healthy). What healthy means is the operations reference's "HA
control plane" section (seeds 002 and 003):

- :func:`assess_pacemaker`: ``crm_mon --one-shot --inactive --output-as=xml`` (root
  ``<pacemaker-result>``) or the older ``--as-xml`` (root ``<crm_mon>``): a DC with quorum,
  every node online and neither standby, unclean, pending nor in maintenance, no failed or
  blocked resource, no failed action, a promotable Galera clone promoted everywhere, each VIP
  on exactly one node.
- :func:`assess_rabbitmq`: ``rabbitmqctl cluster_status --formatter json``: every disk node
  running, no partitions, no alarms, no node in maintenance.
- :func:`assess_galera`: ``SHOW GLOBAL STATUS LIKE 'wsrep_%'`` of one node: Primary, Synced,
  ready, connected, the expected cluster size; :func:`assess_galera_cluster` adds what only
  all nodes together show (a node that does not answer, two cluster state UUIDs).

Output that cannot be parsed, is empty, or is the command's error report (crm_mon's exit 102,
"not connected") is a critical finding, never an exception: a health check must report the
broken thing, not crash on it.

Example:
    ```python
    from domain.ha_health import assess_rabbitmq

    for finding in assess_rabbitmq(output, expected_nodes=3):
        print(finding.severity, finding.subject, finding.message)
    ```
"""

from __future__ import annotations

import ipaddress
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.errors import InvalidInput

Severity = Literal["critical", "warning"]
CRITICAL: Severity = "critical"
WARNING: Severity = "warning"
SEVERITIES = (CRITICAL, WARNING)

VIP = "vip"
PACEMAKER = "pacemaker"
RABBITMQ = "rabbitmq"
GALERA = "galera"

#: Roles of a promoted instance of a promotable clone (``Master`` up to Pacemaker 2.0).
PROMOTED_ROLES = frozenset({"Promoted", "Master"})
#: Resource agents whose resource is a virtual IP (must run on exactly one node).
VIP_AGENTS = ("ocf:heartbeat:IPaddr2", "ocf:heartbeat:IPaddr", "ocf::heartbeat:IPaddr2")


@dataclass(frozen=True)
class Finding:
    """One thing wrong with the control plane.

    Attributes:
        component: The system judged: ``pacemaker``, ``rabbitmq``, ``galera``, ``topology``...
        severity: ``critical`` (an operator must act now) or ``warning``.
        subject: What is concerned, by its own name: a node, a resource, a setting, a group.
        message: What is wrong, with the values seen.

    Example:
        >>> Finding("galera", "critical", "node1", "wsrep_ready is OFF, expected ON").critical
        True
    """

    component: str
    severity: Severity
    subject: str
    message: str

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise InvalidInput(
                f"finding severity {self.severity!r}: expected one of {', '.join(SEVERITIES)}"
            )

    @property
    def critical(self) -> bool:
        return self.severity == CRITICAL

    def as_row(self) -> dict[str, str]:
        """The finding as one row of a table (artifact, report)."""
        return {
            "component": self.component,
            "severity": self.severity,
            "subject": self.subject,
            "message": self.message,
        }


def any_critical(findings: Iterable[Finding]) -> bool:
    """Whether any of ``findings`` is critical."""
    return any(finding.critical for finding in findings)


def _critical(component: str, subject: str, message: str) -> Finding:
    return Finding(component, CRITICAL, subject, message)


def excerpt(text: str | None, limit: int = 200) -> str:
    """The start of unusable output, on one line, for a message (``empty output`` if none)."""
    flat = " ".join((text or "").split())
    if not flat:
        return "empty output"
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


_excerpt = excerpt


# -- Pacemaker ---------------------------------------------------------------------------------


def assess_pacemaker(crm_mon_xml: str, *, expected_nodes: int | None = None) -> list[Finding]:
    """Judge one ``crm_mon --one-shot --inactive`` XML report.

    Args:
        crm_mon_xml: The command's standard output: ``--output-as=xml`` (``<pacemaker-result>``)
            or the older ``--as-xml`` (``<crm_mon>``); an error report or non-XML text gives a
            critical finding.
        expected_nodes: How many cluster nodes there should be (the inventory's count); fewer
            configured or online is critical. None: only what crm_mon itself reports counts.

    Returns:
        The findings; empty when the cluster is healthy.
    """
    component = PACEMAKER
    root = _parse_xml(crm_mon_xml)
    if isinstance(root, str):
        return [_critical(component, "crm_mon", root)]
    if root.tag not in ("pacemaker-result", "crm_mon"):
        return [_critical(component, "crm_mon", f"unexpected XML root <{root.tag}>")]
    status = root.find("status")
    if status is not None and status.get("code", "0") != "0":
        errors = "; ".join(e.text.strip() for e in status.iter("error") if e.text)
        detail = f": {errors}" if errors else ""
        return [
            _critical(
                component,
                "crm_mon",
                f"crm_mon failed with code {status.get('code')} "
                f"({status.get('message', 'no message')}){detail}",
            )
        ]
    summary = root.find("summary")
    nodes = root.find("nodes")
    if summary is None or nodes is None:
        return [_critical(component, "crm_mon", "no <summary> or <nodes> in crm_mon's report")]

    findings: list[Finding] = []
    dc = summary.find("current_dc")
    if dc is None or dc.get("present") != "true":
        findings.append(_critical(component, "cluster", "no designated controller (DC)"))
    elif dc.get("with_quorum") != "true":
        findings.append(
            _critical(component, "cluster", f"no quorum (DC {dc.get('name', '?')} without it)")
        )
    options = summary.find("cluster_options")
    if options is not None:
        for option in ("maintenance-mode", "stop-all-resources"):
            if options.get(option) == "true":
                findings.append(_critical(component, option, f"cluster option {option} is true"))
    findings += _pacemaker_nodes(nodes, expected_nodes)
    resources = root.find("resources")
    if resources is not None:
        findings += _pacemaker_resources(resources)
    failures = root.find("failures")
    for failure in failures if failures is not None else ():
        findings.append(
            _critical(
                component,
                failure.get("op_key", "?"),
                f"failed action {failure.get('op_key', '?')} on {failure.get('node', '?')}: "
                f"{failure.get('exitstatus', '?')} (exit code {failure.get('exitcode', '?')}, "
                f"status {failure.get('status', '?')}"
                + (f", {failure.get('exitreason')}" if failure.get("exitreason") else "")
                + ")",
            )
        )
    return findings


def _parse_xml(text: str) -> ET.Element | str:
    """The root element, or why there is none (as a message)."""
    if not isinstance(text, str) or not text.strip():
        return "empty output (is Pacemaker installed and running here?)"
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        return f"output is not XML ({exc}): {_excerpt(text)}"


# Node attributes that each make a node unusable, and what to say about them.
_NODE_FLAGS = (
    ("standby", "in standby"),
    ("standby_onfail", "in standby after a failure"),
    ("maintenance", "in maintenance"),
    ("pending", "pending (joining)"),
    ("unclean", "unclean (needs fencing)"),
    ("shutdown", "shutting down"),
)


def _pacemaker_nodes(nodes: ET.Element, expected_nodes: int | None) -> list[Finding]:
    findings = []
    members = [n for n in nodes.findall("node") if n.get("type", "member") == "member"]
    online = 0
    for node in nodes.findall("node"):
        name = node.get("name", "?")
        if node.get("online") != "true":
            findings.append(_critical(PACEMAKER, name, f"node {name} is offline"))
            continue
        if node in members:
            online += 1
        for flag, words in _NODE_FLAGS:
            if node.get(flag) == "true":
                findings.append(_critical(PACEMAKER, name, f"node {name} is {words}"))
    if expected_nodes is not None:
        if len(members) < expected_nodes:
            findings.append(
                _critical(
                    PACEMAKER,
                    "cluster",
                    f"{len(members)} cluster nodes configured, expected {expected_nodes}",
                )
            )
        elif online < expected_nodes:
            findings.append(
                _critical(
                    PACEMAKER, "cluster", f"{online} of {expected_nodes} expected nodes online"
                )
            )
    return findings


def _pacemaker_resources(resources: ET.Element) -> list[Finding]:
    findings = []
    for element in resources:
        if element.tag == "resource":
            findings += _primitive(element)
        elif element.tag in ("clone", "group", "bundle"):
            findings += _collective(element)
    return findings


def _primitive(resource: ET.Element, within: str | None = None) -> list[Finding]:
    rid = resource.get("id", "?")
    label = f"{rid} (in {within})" if within else rid
    findings = []
    where = ", ".join(n.get("name", "?") for n in resource.findall("node")) or "no node"
    if resource.get("failed") == "true":
        findings.append(_critical(PACEMAKER, rid, f"resource {label} failed on {where}"))
    if resource.get("blocked") == "true":
        findings.append(_critical(PACEMAKER, rid, f"resource {label} is blocked on {where}"))
    if resource.get("managed") == "false":
        findings.append(_critical(PACEMAKER, rid, f"resource {label} is unmanaged"))
    disabled = resource.get("target_role", "").lower() == "stopped"
    if resource.get("active") != "true" and not disabled and within is None:
        findings.append(
            _critical(PACEMAKER, rid, f"resource {label} is {resource.get('role', 'not active')}")
        )
    agent = resource.get("resource_agent", "")
    running_on = int(resource.get("nodes_running_on", "0") or 0)
    if agent in VIP_AGENTS and not disabled and running_on > 1:
        findings.append(
            _critical(PACEMAKER, rid, f"VIP {label} runs on {running_on} nodes: {where}")
        )
    return findings


def _collective(element: ET.Element) -> list[Finding]:
    """A clone, group or bundle: its members, and for a promotable Galera clone, roles."""
    cid = element.get("id", "?")
    findings = []
    if element.get("failed") == "true":
        findings.append(_critical(PACEMAKER, cid, f"{element.tag} {cid} failed"))
    if element.get("managed") == "false":
        findings.append(_critical(PACEMAKER, cid, f"{element.tag} {cid} is unmanaged"))
    members = element.findall("resource")
    disabled = element.get("disabled") == "true" or element.get("target_role", "") == "Stopped"
    for member in members:
        findings += _primitive(member, within=cid)
    if disabled:
        return findings
    inactive = [m for m in members if m.get("active") != "true"]
    if element.tag == "group" and inactive:
        findings.append(
            _critical(
                PACEMAKER,
                cid,
                f"group {cid}: not active: "
                + ", ".join(f"{m.get('id')} ({m.get('role', '?')})" for m in inactive),
            )
        )
    elif element.tag == "clone":
        if inactive:
            findings.append(
                _critical(
                    PACEMAKER,
                    cid,
                    f"clone {cid}: {len(inactive)} of {len(members)} instances "
                    f"not running ({', '.join(sorted({m.get('role', '?') for m in inactive}))})",
                )
            )
        promotable = element.get("multi_state") == "true" or element.get("promotable") == "true"
        galera = any("galera" in m.get("resource_agent", "") for m in members)
        if promotable and galera:
            for member in members:
                if member.get("active") == "true" and member.get("role") not in PROMOTED_ROLES:
                    where = ", ".join(n.get("name", "?") for n in member.findall("node"))
                    findings.append(
                        _critical(
                            PACEMAKER,
                            where or cid,
                            f"Galera clone {cid} is {member.get('role')} on {where or '?'}, "
                            "expected Promoted",
                        )
                    )
    return findings


# -- RabbitMQ ----------------------------------------------------------------------------------


def assess_rabbitmq(
    cluster_status_json: str, *, expected_nodes: int | None = None
) -> list[Finding]:
    """Judge ``rabbitmqctl cluster_status --formatter json``.

    Args:
        cluster_status_json: The command's standard output. ``running_nodes`` may be one
            string (RabbitMQ 4.1.0-4.1.3 print it so); it is taken as a list of one or more
            names separated by commas or white space.
        expected_nodes: How many disk nodes the cluster should have (the inventory's count).

    Returns:
        The findings; empty when every disk node runs, with no partition and no alarm.
    """
    component = RABBITMQ
    if not isinstance(cluster_status_json, str) or not cluster_status_json.strip():
        return [_critical(component, "cluster_status", "empty output (is RabbitMQ running?)")]
    try:
        status = json.loads(cluster_status_json)
    except ValueError as exc:
        return [
            _critical(
                component,
                "cluster_status",
                f"output is not JSON ({exc}): {_excerpt(cluster_status_json)}",
            )
        ]
    if not isinstance(status, Mapping) or "running_nodes" not in status:
        return [
            _critical(
                component,
                "cluster_status",
                f"no running_nodes in the output: {_excerpt(cluster_status_json)}",
            )
        ]
    running = _node_names(status.get("running_nodes"))
    disk = _node_names(status.get("disk_nodes"))
    findings = [
        _critical(component, node, f"disk node {node} is not running")
        for node in disk
        if node not in running
    ]
    if expected_nodes is not None and len(disk) < expected_nodes:
        findings.append(
            _critical(
                component,
                "cluster",
                f"{len(disk)} disk nodes ({', '.join(disk) or 'none'}), expected {expected_nodes}",
            )
        )
    partitions = status.get("partitions") or {}
    if isinstance(partitions, Mapping):
        for node, unreachable in partitions.items():
            findings.append(
                _critical(
                    component,
                    str(node),
                    f"network partition: {node} cannot see "
                    f"{', '.join(_node_names(unreachable)) or '?'}",
                )
            )
    elif partitions:
        findings.append(_critical(component, "cluster", f"network partitions: {partitions}"))
    for alarm in status.get("alarms") or ():
        node, what = _alarm(alarm)
        findings.append(_critical(component, node, f"alarm on {node}: {what}"))
    maintenance = status.get("maintenance_status") or {}
    if isinstance(maintenance, Mapping):
        for node, state in maintenance.items():
            if str(state).strip().lower() not in ("not under maintenance", "false", ""):
                findings.append(_critical(component, str(node), f"node {node} is {state}"))
    return findings


def _node_names(value: Any) -> list[str]:
    """Node names from a list or from one string (``rabbit@a`` or ``rabbit@a, rabbit@b``)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [name for name in value.replace(",", " ").split() if name]
    if isinstance(value, Iterable):
        return [str(name) for name in value]
    return [str(value)]


def _alarm(alarm: Any) -> tuple[str, str]:
    """(node, description) of one entry of ``alarms``, in the shapes the JSON formatter prints."""
    if isinstance(alarm, Mapping):
        node = str(alarm.get("node", "cluster"))
        what = alarm.get("resource") or alarm.get("type") or json.dumps(alarm, sort_keys=True)
        return node, f"{what} alarm"
    return "cluster", str(alarm)


# -- Galera ------------------------------------------------------------------------------------

#: Status values of a healthy Galera node (variable -> expected value).
GALERA_EXPECTED = {
    "wsrep_cluster_status": "Primary",
    "wsrep_local_state_comment": "Synced",
    "wsrep_ready": "ON",
    "wsrep_connected": "ON",
}


def assess_galera(
    status: Mapping[str, str],
    *,
    expected_size: int,
    node: str | None = None,
    expected_members: Sequence[str] | None = None,
) -> list[Finding]:
    """Judge one node's ``SHOW GLOBAL STATUS LIKE 'wsrep_%'``.

    Args:
        status: Variable name -> value, as the statement returns them (names in any case).
        expected_size: The cluster's size in the inventory; ``wsrep_cluster_size`` below it is
            critical (above it too: a node nobody knows joined).
        node: The node's name for the findings' subject (default: ``galera``; the status
            itself does not name the node).
        expected_members: Addresses (``host:port`` as the nodes announce them) that must be
            in ``wsrep_incoming_addresses``; each one missing is a critical finding naming it.

    Returns:
        The findings; empty when the node is Primary, Synced, ready, connected and in a
        cluster of the expected size.
    """
    values = {str(k).lower(): "" if v is None else str(v) for k, v in (status or {}).items()}
    subject = node or "galera"
    if not values:
        return [_critical(GALERA, subject, "no wsrep status (is this a Galera node?)")]
    if values.get("wsrep_on", "ON").upper() == "OFF":
        return [_critical(GALERA, subject, f"wsrep is off on {subject}")]
    findings = []
    for name, expected in GALERA_EXPECTED.items():
        value = values.get(name)
        if value is None:
            findings.append(_critical(GALERA, subject, f"{name} missing from the status"))
        elif value.lower() != expected.lower():
            findings.append(
                _critical(
                    GALERA,
                    subject,
                    f"{name} is {value or 'empty'} on {subject}, expected {expected}",
                )
            )
    size = values.get("wsrep_cluster_size")
    if size is None or not size.strip().isdigit():
        findings.append(_critical(GALERA, subject, f"wsrep_cluster_size is {size!r} on {subject}"))
    elif int(size) != expected_size:
        findings.append(
            _critical(
                GALERA,
                subject,
                f"wsrep_cluster_size is {size} on {subject}, expected {expected_size}",
            )
        )
    if expected_members is not None:
        present = {
            a.strip() for a in values.get("wsrep_incoming_addresses", "").split(",") if a.strip()
        }
        for member in expected_members:
            if member not in present:
                findings.append(
                    _critical(
                        GALERA,
                        member,
                        f"{member} is not in the cluster seen from {subject} "
                        f"(wsrep_incoming_addresses: {', '.join(sorted(present)) or 'none'})",
                    )
                )
    return findings


def assess_galera_cluster(
    statuses: Mapping[str, Mapping[str, str] | None | str], *, expected_size: int
) -> list[Finding]:
    """Judge every node of one Galera cluster together.

    Args:
        statuses: Node name -> its wsrep status, or None or an error message (a string) when
            the node could not be asked (down, refused): that is a critical finding naming it.
        expected_size: The cluster's size in the inventory.

    Returns:
        Each node's findings (:func:`assess_galera`), then those of the cluster as a whole:
        fewer nodes than expected, nodes in different clusters (``wsrep_cluster_state_uuid``).
    """
    findings = []
    uuids: dict[str, list[str]] = {}
    for node, status in statuses.items():
        if status is None or isinstance(status, str):
            why = f": {status}" if status else ""
            findings.append(_critical(GALERA, node, f"node {node} did not answer{why}"))
            continue
        findings += assess_galera(status, expected_size=expected_size, node=node)
        values = {str(k).lower(): v for k, v in status.items()}
        uuid = values.get("wsrep_cluster_state_uuid")
        if uuid:
            uuids.setdefault(uuid, []).append(node)
    if len(statuses) < expected_size:
        findings.append(
            _critical(
                GALERA, "cluster", f"{len(statuses)} nodes to check, expected {expected_size}"
            )
        )
    if len(uuids) > 1:
        findings.append(
            _critical(
                GALERA,
                "cluster",
                "nodes in different clusters (wsrep_cluster_state_uuid): "
                + "; ".join(f"{uuid}: {', '.join(nodes)}" for uuid, nodes in sorted(uuids.items())),
            )
        )
    return findings


def parse_wsrep_status(text: str) -> dict[str, str]:
    """``mariadb --batch -e "SHOW GLOBAL STATUS LIKE 'wsrep_%'"`` output as name -> value.

    Tab-separated lines; a ``Variable_name``/``Value`` header (without
    ``--skip-column-names``) and lines without a tab are left out, so an error message gives
    an empty mapping (which :func:`assess_galera` reports).

    Example:
        >>> parse_wsrep_status("Variable_name\\tValue\\nwsrep_ready\\tON\\n")
        {'wsrep_ready': 'ON'}
    """
    status = {}
    for line in (text or "").splitlines():
        name, tab, value = line.partition("\t")
        if tab and name != "Variable_name":
            status[name.strip()] = value.strip()
    return status


def assess_vip(
    vip: str, addresses: Mapping[str, Iterable[str] | str], *, name: str | None = None
) -> list[Finding]:
    """Judge where a virtual IP is: it must be on exactly one node.

    Args:
        vip: The virtual IP (e.g. one of the inventory's ``vips``, or its ``galera_vip``).
        name: The VIP's name in the inventory, said in the messages (``VIP galera
            (192.0.2.10)``); None or the address itself: the address alone.
        addresses: Node -> the addresses on its interfaces (``ip -o addr`` parsed), or a
            string saying why they could not be read (then the node is not counted).

    Returns:
        A critical finding naming the VIP when it is on two or more nodes, or on none.
    """
    try:
        wanted = ipaddress.ip_address(vip)
    except ValueError:
        return [_critical(VIP, str(vip), f"{vip!r} is not an IP address")]
    holders, unknown = [], []
    for node, listed in addresses.items():
        if isinstance(listed, str):
            unknown.append(node)
            continue
        mine = set()
        for address in listed:
            try:
                mine.add(ipaddress.ip_address(address))
            except ValueError:
                continue
        if wanted in mine:
            holders.append(node)
    label = f"{name} ({vip})" if name and name != vip else vip
    if len(holders) > 1:
        return [
            _critical(VIP, vip, f"VIP {label} is on {len(holders)} nodes: {', '.join(holders)}")
        ]
    if not holders:
        unasked = f" ({', '.join(unknown)} could not be asked)" if unknown else ""
        return [_critical(VIP, vip, f"VIP {label} is on no node{unasked}")]
    return []
