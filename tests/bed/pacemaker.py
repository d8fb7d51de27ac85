"""Real crm_mon output without a cluster: CIBs built and run by Pacemaker's own tools.

Debian's `pacemaker-cli-utils` ships `cibadmin`, `crm_simulate`, `crm_attribute` and `crm_mon`.
`cibadmin --empty` starts a CIB file; `cibadmin --create` (with `CIB_file`) adds nodes, a VIP
and a promotable Galera clone; `crm_simulate -S -O` brings the nodes up and runs the
cluster's own transition (so the status section is Pacemaker's, not ours); `crm_mon` renders
the result as `--output-as=xml` or the older `--as-xml`. Faults are Pacemaker's own events:
`crm_simulate --node-down`, `--op-inject` (a monitor that found the VIP stopped), `--op-fail`
(its stop failing too: the resource blocked), `crm_attribute` (standby), and the CIB's
`have-quorum` attribute (crm_simulate keeps the quorum the input has).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.bed.programs import require_programs

PROGRAMS = ("cibadmin", "crm_simulate", "crm_mon", "crm_attribute")
NODES = ("node1", "node2", "node3")
VIP = "vip"
GALERA_CLONE = "galera-clone"


def missing_pacemaker_programs() -> dict[str, str]:
    return {p: "pacemaker-cli-utils" for p in PROGRAMS if shutil.which(p) is None}


def _run(argv: list[str], cib: Path | None = None, check: bool = True) -> str:
    env = dict(os.environ)
    env.pop("CIB_file", None)
    if cib is not None:
        env["CIB_file"] = str(cib)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def build_cib(path: Path) -> Path:
    """A CIB with three nodes, a VIP and a promotable Galera clone (no status yet)."""
    path.write_text(_run(["cibadmin", "--empty"]))
    create = ["cibadmin", "--create", "-o"]
    # No fencing devices here; without this the cluster would refuse to start anything.
    _run(["cibadmin", "--modify", "-o", "crm_config", "--xml-text",
          '<crm_config><cluster_property_set id="cib-bootstrap-options">'
          '<nvpair id="opt-stonith" name="stonith-enabled" value="false"/>'
          "</cluster_property_set></crm_config>"], path)  # fmt: skip
    for number, name in enumerate(NODES, start=1):
        _run([*create, "nodes", "--xml-text", f'<node id="{number}" uname="{name}"/>'], path)
    _run([*create, "resources", "--xml-text",
          f'<primitive id="{VIP}" class="ocf" provider="heartbeat" type="IPaddr2">'
          '<instance_attributes id="vip-ia"><nvpair id="vip-ip" name="ip" value="192.168.122.110"/>'
          '</instance_attributes><operations><op id="vip-monitor" name="monitor" interval="10s"/>'
          "</operations></primitive>"], path)  # fmt: skip
    _run([*create, "resources", "--xml-text",
          f'<clone id="{GALERA_CLONE}"><meta_attributes id="gc-meta">'
          '<nvpair id="gc-promotable" name="promotable" value="true"/>'
          f'<nvpair id="gc-promoted-max" name="promoted-max" value="{len(NODES)}"/>'
          '</meta_attributes><primitive id="galera" class="ocf" provider="heartbeat" type="galera">'
          '<operations><op id="galera-monitor" name="monitor" interval="20s"/></operations>'
          "</primitive></clone>"], path)  # fmt: skip
    # The galera agent sets promotion scores at run time; in a simulation, constraints do.
    for number, name in enumerate(NODES, start=1):
        _run([*create, "constraints", "--xml-text",
              f'<rsc_location id="promote-{number}" rsc="{GALERA_CLONE}" role="Promoted" '
              f'node="{name}" score="100"/>'], path)  # fmt: skip
    # crm_mon names the DC and the quorum from the CIB's root attributes.
    _run(["cibadmin", "--modify", "--xml-text", '<cib dc-uuid="1" have-quorum="1"/>'], path)
    return path


def simulate(source: Path, target: Path, *events: str) -> Path:
    """`crm_simulate -S` on `source` with `events` (its options), saved to `target`."""
    _run(["crm_simulate", "-x", str(source), *events, "-S", "-O", str(target)])
    return target


def crm_mon(cib: Path, legacy: bool = False) -> str:
    """`crm_mon --one-shot --inactive` of a CIB file, as XML (the older `--as-xml` if legacy)."""
    form = "--as-xml" if legacy else "--output-as=xml"
    return _run(["crm_mon", "--one-shot", "--inactive", form], cib)


def crm_mon_not_connected() -> tuple[int, str]:
    """What crm_mon prints where no cluster runs (exit 102): (exit status, standard output)."""
    env = {k: v for k, v in os.environ.items() if k != "CIB_file"}
    done = subprocess.run(["crm_mon", "--one-shot", "--output-as=xml"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    return done.returncode, done.stdout


def cluster_states(directory: Path) -> dict[str, Path]:
    """CIB files of the cluster in each state the health assessment must tell apart."""
    require_programs(missing_pacemaker_programs(), "Pacemaker")
    directory.mkdir(parents=True, exist_ok=True)
    base = build_cib(directory / "base.xml")
    up = ["-u", *" -u ".join(NODES).split()]
    healthy = simulate(base, directory / "healthy.xml", *up)
    states = {"healthy": healthy}
    states["node_down"] = simulate(healthy, directory / "node-down.xml", "-d", NODES[2])
    states["failed_action"] = simulate(
        healthy, directory / "failed-action.xml", "-i", f"{VIP}_monitor_10000@{NODES[0]}=7"
    )
    states["blocked"] = simulate(
        healthy, directory / "blocked.xml",
        "-i", f"{VIP}_monitor_10000@{NODES[0]}=7", "-F", f"{VIP}_stop_0@{NODES[0]}=1",
    )  # fmt: skip
    no_quorum = directory / "no-quorum.xml"
    shutil.copy(healthy, no_quorum)
    _run(["cibadmin", "--modify", "--xml-text", '<cib have-quorum="0"/>'], no_quorum)
    states["no_quorum"] = no_quorum
    standby = directory / "standby.xml"
    shutil.copy(healthy, standby)
    _run(["crm_attribute", "--node", NODES[1], "--name", "standby", "--update", "on"], standby)
    states["standby"] = standby
    maintenance = directory / "maintenance.xml"
    shutil.copy(healthy, maintenance)
    _run(["crm_attribute", "--node", NODES[1], "--name", "maintenance", "--update", "true"],
         maintenance)  # fmt: skip
    states["maintenance"] = maintenance
    # A probe finding the VIP already running on a second node, saved before the cluster
    # reacts (no -S): the VIP is active on two nodes at once.
    two = directory / "vip-twice.xml"
    _run(["crm_simulate", "-x", str(healthy), "-i", f"{VIP}_monitor_0@{NODES[1]}=0",
          "-O", str(two)])  # fmt: skip
    states["vip_twice"] = two
    return states
