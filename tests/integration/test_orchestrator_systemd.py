"""`install-orchestrator` in its systemd mode, with a real systemd: this machine's own Debian
booted in systemd-nspawn (tests/bed/systemd_container.py), the install run inside it as root
on PostgreSQL (the bed's throwaway cluster on the host, whose socket directory is bound into the
container). The units are written to the container's /etc/systemd/system, enabled and started
by the install; the server logs to the journal and answers; a killed server comes back
(Restart=on-failure); after a reboot of the container the units are enabled and active again;
an upgrade-style rerun (the recorded version changed) stops the workers and the server before
the schema's migration and starts them after it.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path

import pytest

from domain.orchestrator_units import read_environment_file
from domain.polling import wait_until
from remote.orchestrator import VERSION_MARKER, OrchestratorInstall
from tests.bed.ports import free_port
from tests.bed.systemd_container import SystemdContainer, nspawn_missing, quote
from tests.integration.test_orchestrator_install import postgres, statuses  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTINGS_PATH = "/etc/edx-ops-flows/site.json"


@pytest.fixture(scope="module")
def container(postgres):  # noqa: F811 (the module fixture imported above)
    missing = nspawn_missing()
    if missing:
        pytest.fail(missing)
    # the bed's cluster is the database: Debian's own cluster, which the server unit Wants,
    # stays masked (it would listen on the host's 127.0.0.1:5432, the network being shared)
    box = SystemdContainer(binds=(postgres.socket_dir,))
    try:
        seconds = box.boot()
        print(f"\nsystemd-nspawn boot of this machine's Debian (systemd as PID 1): {seconds:.1f} s")
        box.run("systemctl mask --now postgresql.service")
        yield box
    finally:
        box.remove()


@pytest.fixture(scope="module")
def settings(container, postgres) -> OrchestratorInstall:  # noqa: F811
    """Defaults of a deploy node (units in /etc/systemd/system, root-only files in
    /etc/edx-ops-flows, Prefect's home in /var/lib), except the user (root: the checkout's
    virtualenv lives under /root) and the ports."""
    site = OrchestratorInstall.model_validate({
        "site": {"user": "root", "checkout": str(REPO_ROOT), "port": free_port(),
                 "worker_query_seconds": 2},
        "database": {"port": postgres.port, "superuser": postgres.user,
                     "socket_dir": str(postgres.socket_dir)},
        "services": "systemd",
        "install_packages": False,
    })  # fmt: skip
    path = container.root / SETTINGS_PATH.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(site.model_dump_json())
    return site


def install(container: SystemdContainer, *args: str) -> list[tuple[str, str]]:
    """The command line inside the container; (status, step) of each row."""
    return statuses(install_output(container, *args))


def install_output(container: SystemdContainer, *args: str) -> str:
    """The command line inside the container; what it printed."""
    command = quote(str(REPO_ROOT / "scripts/install-orchestrator"), "--settings", SETTINGS_PATH,
                    *args)  # fmt: skip
    done = container.run(command, check=False)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done.stdout


def unit_names(settings: OrchestratorInstall) -> list[str]:
    site = settings.site
    return [site.server_unit, *(site.worker_unit(pool) for pool in site.pools)]


def unit_property(container: SystemdContainer, unit: str, name: str) -> str:
    return container.run(quote("systemctl", "show", "--value", "-p", name, unit)).stdout.strip()


def assert_enabled_and_active(container: SystemdContainer, units: list[str]) -> None:
    for unit in units:
        enabled = container.run(f"systemctl is-enabled {unit}", check=False).stdout.strip()
        active = container.run(f"systemctl is-active {unit}", check=False).stdout.strip()
        assert (enabled, active) == ("enabled", "active"), (unit, enabled, active)


def server_health(container: SystemdContainer, settings: OrchestratorInstall) -> bool:
    """The server's /health with the basic auth of its root-only EnvironmentFile, from the
    host (the container shares its network)."""
    env_file = container.root / settings.site.environment_file.lstrip("/")
    auth = read_environment_file(env_file.read_text())["PREFECT_SERVER_API_AUTH_STRING"]
    request = urllib.request.Request(
        f"{settings.site.api_url}/health",
        headers={"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200 and json.loads(response.read()) is True
    except OSError:
        return False


def wait_for_server(container: SystemdContainer, settings: OrchestratorInstall,
                    timeout: float = 180) -> float:  # fmt: skip
    """Seconds until the server answers."""
    started = time.perf_counter()

    def late():
        log = container.run(f"journalctl -u {settings.site.server_unit} -n 40 --no-pager",
                            check=False).stdout  # fmt: skip
        raise AssertionError(f"the server did not answer within {timeout:.0f} s:\n{log}")

    wait_until(lambda: server_health(container, settings) or None, timeout=timeout,
               interval=1, on_timeout=late)  # fmt: skip
    return time.perf_counter() - started


def journal(container: SystemdContainer, since: float) -> list[tuple[float, str]]:
    """systemd's own messages (PID 1: Starting, Started, Stopping, Stopped) since `since`."""
    out = container.run(f"journalctl _PID=1 --since=@{int(since)} -o json --no-pager").stdout
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [(int(e["__REALTIME_TIMESTAMP"]) / 1e6, e.get("MESSAGE", "")) for e in entries]


def first(entries: list[tuple[float, str]], prefix: str, unit: str) -> float:
    found = [at for at, message in entries if message.startswith(f"{prefix} {unit}")]
    assert found, f"no '{prefix} {unit}' in the journal: {[m for _, m in entries]}"
    return found[0]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_install_enables_and_starts_the_units_under_systemd(container, settings):
    units = unit_names(settings)
    started = time.perf_counter()
    rows = install(container)
    print(f"install (all phases) under systemd: {time.perf_counter() - started:.1f} s")
    changed = {step for status, step in rows if status == "changed"}
    assert {f"service {unit}" for unit in units} <= changed, rows
    assert {f"unit {unit}" for unit in units} <= changed, rows
    for unit in units:
        path = container.root / "etc/systemd/system" / unit
        assert path.is_file() and not path.is_symlink(), f"{unit} in /etc/systemd/system"
    assert_enabled_and_active(container, units)
    assert server_health(container, settings)
    # the server's output is in the journal, under its unit
    log = container.run(f"journalctl -u {settings.site.server_unit} --no-pager").stdout
    assert f"Check out the dashboard at http://127.0.0.1:{settings.site.port}" in log, log[-3000:]
    # each worker runs under its name (%H: the container's host name) against its pool
    hostname = container.run("hostname").stdout.strip()
    for pool, unit in zip(settings.site.pools, units[1:], strict=True):
        worker_log = container.run(f"journalctl -u {unit} --no-pager").stdout
        assert f"Worker '{pool}-{hostname}' started!" in worker_log, worker_log[-2000:]

    # a second run: every step ok, nothing restarted
    again = install(container)
    assert {status for status, _ in again} == {"ok"}, again


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_killed_server_is_restarted_by_systemd(container, settings):
    server = settings.site.server_unit
    wait_for_server(container, settings)
    before = unit_property(container, server, "MainPID")
    restarts = int(unit_property(container, server, "NRestarts"))
    container.run(f"kill -KILL {before}")
    started = time.perf_counter()
    wait_until(
        lambda: unit_property(container, server, "MainPID") not in ("0", before) or None,
        timeout=60, interval=0.5,
        on_timeout=lambda: pytest.fail(f"{server} was not restarted after SIGKILL"),
    )  # fmt: skip
    assert int(unit_property(container, server, "NRestarts")) == restarts + 1
    seconds = wait_for_server(container, settings)
    print(f"\nkilled server back (RestartSec=5 + start): {time.perf_counter() - started:.1f} s "
          f"(answering after {seconds:.1f} s)")  # fmt: skip
    log = container.run(f"journalctl -u {server} --no-pager").stdout
    assert "Scheduled restart job" in log or "Main process exited" in log, log[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_units_come_back_after_a_reboot(container, settings):
    units = unit_names(settings)
    seconds = container.reboot()
    print(f"\ncontainer rebooted in {seconds:.1f} s")
    assert_enabled_and_active(container, units)
    print(f"server answering {wait_for_server(container, settings):.1f} s after the boot")
    rows = install(container)
    assert {status for status, _ in rows} == {"ok"}, rows


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_upgrade_stops_the_services_for_its_migration(container, settings):
    site, units = settings.site, unit_names(settings)
    wait_for_server(container, settings)
    # the services as an older install left them: its version record differs
    marker = container.root / site.prefect_home.lstrip("/") / VERSION_MARKER
    recorded = marker.read_text()
    marker.write_text(recorded.replace("prefect ", "prefect 3.0.0-was-", 1))
    since = time.time() - 1
    output = install_output(container, "--phase", "system")
    rows = {step: status for status, step in statuses(output)}
    assert rows["database schema"] == "ok", output  # the same Prefect: nothing to migrate
    for unit in units:
        # found stopped (by the schema step), not restarted while running
        assert f"service {unit}: enabled and started (prefect 3.0.0-was-" in output, output
    assert marker.read_text() == recorded, "the new version recorded"
    entries = journal(container, since)
    server_stopped = first(entries, "Stopped", site.server_unit)
    server_started = first(entries, "Started", site.server_unit)
    for worker in units[1:]:
        # the workers first, then the server, all before anything starts again
        assert first(entries, "Stopped", worker) <= server_stopped < server_started
        assert server_stopped < first(entries, "Started", worker)
    assert_enabled_and_active(container, units)
    wait_for_server(container, settings)
