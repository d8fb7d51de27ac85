"""A real Corosync on loopback (Debian `corosync`), for `corosync-quorumtool -s` output.

`corosync -f` runs in the foreground with a config, state directory and log of its own under
the bed's directory; the knet link listens on 127.0.0.1 on a free UDP port (`mcastport`),
without encryption. Its IPC endpoints (`cmap`, `quorum`, ...) are libqb's abstract sockets,
one set per machine: only one bed Corosync runs at a time, and `corosync-quorumtool` run
anywhere on this machine (also through the bed's sshd) talks to it.

The node list decides the quorum: one node (this one) is a quorate single-node cluster; three
nodes of which only this one runs (the others' addresses answer nothing) is a cluster that
lost its quorum, as the survivor of a partition sees it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.bed import foreground
from tests.bed.ports import free_port

PROGRAMS = {"corosync": "corosync", "corosync-quorumtool": "corosync"}


def missing_corosync_programs() -> dict[str, str]:
    return {p: pkg for p, pkg in PROGRAMS.items() if shutil.which(p) is None}


def quorumtool() -> subprocess.CompletedProcess:
    """`corosync-quorumtool -s` against whichever Corosync runs on this machine."""
    return subprocess.run(["corosync-quorumtool", "-s"], capture_output=True, text=True, timeout=30)


@dataclass
class Corosync:
    """One Corosync whose node list has `nodes` members, only the first (127.0.0.1) running."""

    base_dir: Path
    nodes: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def config(self) -> Path:
        return self.base_dir / "corosync.conf"

    def _config_text(self) -> str:
        members = "".join(
            f"  node {{\n    ring0_addr: 127.0.0.{n}\n    nodeid: {n}\n    name: node{n}\n  }}\n"
            for n in range(1, self.nodes + 1)
        )
        return (
            "totem {\n  version: 2\n  cluster_name: bed\n  transport: knet\n"
            "  crypto_cipher: none\n  crypto_hash: none\n"
            f"  interface {{\n    linknumber: 0\n    mcastport: {self.port}\n  }}\n}}\n"
            f"nodelist {{\n{members}}}\n"
            "quorum {\n  provider: corosync_votequorum\n}\n"
            f"logging {{\n  to_stderr: no\n  to_syslog: no\n  to_logfile: yes\n"
            f"  logfile: {self.base_dir / 'corosync.log'}\n}}\n"
            f"system {{\n  state_dir: {self.base_dir / 'state'}\n}}\n"
        )

    def start(self, timeout: float = 30) -> Corosync:
        """Start it and wait until `corosync-quorumtool -s` reports its membership."""
        (self.base_dir / "state").mkdir(parents=True, exist_ok=True)
        self.config.write_text(self._config_text())
        self.process = foreground.spawn(
            ["corosync", "-f", "-c", str(self.config)], self.base_dir / "corosync.out"
        )
        # The membership line names this node once the ring has formed.
        foreground.wait_ready(
            self.process, lambda: "(local)" in quorumtool().stdout, what="corosync",
            logs=[self.base_dir / "corosync.log", self.base_dir / "corosync.out"],
            timeout=timeout, interval=0.2,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        foreground.stop(self.process)


def quorum_outputs(base_dir: Path) -> tuple[dict[str, subprocess.CompletedProcess], dict]:
    """`corosync-quorumtool -s` of real Corosyncs, one state after the other.

    `healthy`: a single-node cluster; `no_quorum`: three nodes configured, one running;
    `not_running`: no Corosync at all. Each Corosync is stopped before the next starts (one
    per machine).

    Returns:
        The tool's result per state, and the start-up seconds per started state.
    """
    outputs: dict[str, subprocess.CompletedProcess] = {}
    startup: dict[str, float] = {}
    for state, nodes in (("healthy", 1), ("no_quorum", 3)):
        corosync = Corosync(base_dir / state, nodes=nodes)
        try:
            started = time.perf_counter()
            corosync.start()
            startup[state] = time.perf_counter() - started
            outputs[state] = quorumtool()
        finally:
            corosync.stop()
    outputs["not_running"] = quorumtool()
    return outputs, startup
