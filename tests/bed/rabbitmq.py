"""A real RabbitMQ cluster on loopback (Debian `rabbitmq-server`), for the health assessments.

Each node is `rabbitmq-server` from `/usr/lib/rabbitmq/bin` (Debian's `/usr/sbin` wrapper
switches to the `rabbitmq` user and its fixed directories), with its own data, log and pid
files under the cluster's directory, AMQP and distribution ports that are free on 127.0.0.1,
no plugins, and one Erlang cookie (`$HOME/.erlang.cookie`, HOME being the cluster's
directory). The cluster owns its `epmd` on a free port (`ERL_EPMD_PORT`), so it never meets a
system RabbitMQ or another test's cluster, and stops it at the end.

The nodes start in parallel; the second and later ones then `join_cluster` the first
(`stop_app`, `join_cluster`, `start_app`): about 20 s for three nodes on the 2-core machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.bed.ports import free_port

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
PROGRAMS = {
    str(RABBITMQ_BIN / "rabbitmq-server"): "rabbitmq-server",
    str(RABBITMQ_BIN / "rabbitmqctl"): "rabbitmq-server",
    "epmd": "erlang-base",
}


def missing_rabbitmq_programs() -> dict[str, str]:
    return {p: pkg for p, pkg in PROGRAMS.items() if shutil.which(p) is None}


@dataclass
class RabbitNode:
    """One node of the cluster: `bed<N>@localhost` with its own ports and directories."""

    cluster: RabbitCluster
    number: int
    amqp_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return f"bed{self.number}@localhost"

    @property
    def directory(self) -> Path:
        return self.cluster.base_dir / f"node{self.number}"

    @property
    def pid_file(self) -> Path:
        return self.directory / "pid"

    def env(self) -> dict[str, str]:
        """The environment of this node's server and of `rabbitmqctl` talking to it."""
        d = self.directory
        return {
            **self.cluster.env(),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            # Inter-node traffic on loopback only (it listens on every interface otherwise).
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(d / "plugins-expand"),
        }

    def start(self) -> None:
        """Start the server process (returns at once; :meth:`wait` waits for it)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        out = (self.directory / "server.out").open("ab")
        self.process = subprocess.Popen(
            [str(RABBITMQ_BIN / "rabbitmq-server")], env=self.env(), cwd=self.directory,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def ctl(
        self, *args: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess:
        """`rabbitmqctl <args>` against this node."""
        done = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "--node", self.name, *args],
            env=self.env(), capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)} on {self.name} exited {done.returncode}: "
                f"{done.stderr.strip() or done.stdout.strip()}\n{self._log_tail()}"
            )
        return done

    def wait(self, timeout: float = 90) -> None:
        """Until the node runs the `rabbit` application."""
        self.ctl("wait", "--timeout", str(int(timeout)), str(self.pid_file), timeout=timeout + 10)

    def cluster_status_json(self) -> str:
        """`rabbitmqctl cluster_status --formatter json` as this node prints it."""
        return self.ctl("cluster_status", "--formatter", "json").stdout

    def stop(self) -> None:
        """Stop the whole node (the Erlang VM exits), as `rabbitmqctl stop` does."""
        if self.process is None or self.process.poll() is not None:
            return
        self.ctl("stop", str(self.pid_file), check=False)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)
            self.process.wait()

    def _log_tail(self, lines: int = 20) -> str:
        logs = sorted((self.directory / "log").glob("*.log")) + [self.directory / "server.out"]
        tails = []
        for log in logs:
            if log.is_file():
                tails.append(f"--- {log}\n" + "\n".join(log.read_text().splitlines()[-lines:]))
        return "\n".join(tails)


@dataclass
class RabbitCluster:
    """`size` RabbitMQ nodes on 127.0.0.1 clustered with the first; :meth:`stop` ends all."""

    base_dir: Path
    size: int = 3
    epmd_port: int = field(default_factory=free_port)
    nodes: list[RabbitNode] = field(default_factory=list)
    epmd: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.base_dir),
            "LANG": "C.UTF-8",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base_dir / "enabled_plugins"),
        }

    def start(self) -> RabbitCluster:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        cookie = self.base_dir / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        (self.base_dir / "enabled_plugins").write_text("[].\n")
        # Our own epmd (in the foreground, so it is a child we stop), before any node needs it.
        self.epmd = subprocess.Popen(
            ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.nodes = [RabbitNode(self, number) for number in range(1, self.size + 1)]
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
        self.wait_running(len(self.nodes))
        return self

    def wait_running(self, count: int, timeout: float = 60) -> None:
        """Until the first running node sees `count` running nodes."""
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process is None or node.process.poll() is not None:
                    continue
                done = node.ctl("cluster_status", "--formatter", "json", check=False)
                seen = done.stdout
                if done.returncode == 0 and _running(seen) == count:
                    return
                break
            time.sleep(0.5)
        raise TimeoutError(f"RabbitMQ cluster: not {count} running nodes after {timeout}s: {seen}")

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
        if self.epmd is not None and self.epmd.poll() is None:
            self.epmd.terminate()
            self.epmd.wait(10)


def _running(cluster_status_json: str) -> int:
    running = json.loads(cluster_status_json).get("running_nodes") or []
    return len(running) if isinstance(running, list) else len(running.split())
