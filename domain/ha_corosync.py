"""Corosync's quorum, judged from ``corosync-quorumtool -s`` (Prefect-free).

The tool's exit status means different things in different versions (Corosync 3.1 exits 2
when the partition is not quorate, 1 when Corosync does not run; older versions exit 0 for
both), so only the text counts, as the operations reference says: ``Quorate: Yes``. The
fields read are the ``Key: value`` lines of its "Quorum information" and "Votequorum
information" sections::

    Nodes:            1
    Quorate:          No
    Expected votes:   3
    Total votes:      1
    Quorum:           2 Activity blocked

Example:
    ```python
    from domain.ha_corosync import assess_corosync_quorum

    for finding in assess_corosync_quorum(output, expected_nodes=3, node="db1"):
        print(finding.severity, finding.subject, finding.message)
    ```
"""

from __future__ import annotations

from domain.ha_health import CRITICAL, Finding, excerpt

COROSYNC = "corosync"

#: What corosync-quorumtool prints when no Corosync answers on this host.
_NOT_RUNNING = ("Cannot initialize CMAP service", "Cannot initialize QUORUM service")


def _critical(subject: str, message: str) -> Finding:
    return Finding(COROSYNC, CRITICAL, subject, message)


def parse_quorumtool(text: str) -> dict[str, str]:
    """The ``Key: value`` lines of ``corosync-quorumtool -s`` as key -> value.

    Example:
        >>> parse_quorumtool("Quorate:          Yes\\nNodes:  3\\n")
        {'Quorate': 'Yes', 'Nodes': '3'}
    """
    fields = {}
    for line in (text or "").splitlines():
        key, colon, value = line.partition(":")
        # Only the aligned fields: the membership table and headers have no "Key: value".
        if colon and key.strip() and not key.startswith(" ") and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def assess_corosync_quorum(
    quorumtool_output: str, *, expected_nodes: int | None = None, node: str | None = None
) -> list[Finding]:
    """Judge one host's ``corosync-quorumtool -s``.

    Args:
        quorumtool_output: What the tool printed (standard output, or its error text).
        expected_nodes: The cluster's size in the inventory; fewer nodes in the membership is
            critical. None: only the quorum counts.
        node: The host that ran the tool, for the findings' subject (default ``quorum``).

    Returns:
        The findings; empty when the host's partition is quorate with every expected node.
        Empty, error or unreadable output is a critical finding, never an exception.
    """
    subject = node or "quorum"
    text = quorumtool_output if isinstance(quorumtool_output, str) else ""
    if not text.strip():
        return [_critical(subject, "corosync-quorumtool printed nothing")]
    for marker in _NOT_RUNNING:
        if marker in text:
            return [
                _critical(
                    subject,
                    f"corosync does not run on {subject} (corosync-quorumtool: {marker})",
                )
            ]
    fields = parse_quorumtool(text)
    quorate = fields.get("Quorate")
    if quorate is None:
        return [
            _critical(
                subject, f"no 'Quorate:' line in corosync-quorumtool's output: {excerpt(text)}"
            )
        ]
    findings = []
    if quorate.lower() != "yes":
        votes = ", ".join(
            f"{key.lower()} {fields[key]}"
            for key in ("Total votes", "Expected votes", "Quorum")
            if key in fields
        )
        findings.append(
            _critical(
                subject,
                f"{subject}'s partition is not quorate (Quorate: {quorate}"
                + (f"; {votes}" if votes else "")
                + ")",
            )
        )
    members = fields.get("Nodes", "")
    if expected_nodes is not None and members.isdigit() and int(members) < expected_nodes:
        findings.append(
            _critical(
                subject,
                f"{members} nodes in {subject}'s membership, expected {expected_nodes}",
            )
        )
    return findings
