"""The orchestrator as a service, end to end: a real PostgreSQL cluster (Debian's postgresql, a
throwaway cluster), `install-orchestrator` (remote/orchestrator.py) setting up the database, the
root-only EnvironmentFile and the units, the Prefect server and a worker per pool started with
the command lines and environment of the rendered units (systemd cannot run here as PID 1), the
pools, the limits and `prefect deploy --all`; a deployment run, then a "reboot": server and
workers stopped and started again, after which the schedule still fires and the run history
and blocks are intact. The idempotence check runs the command line over SSH (host key
verified), and it must report every step `ok`.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import shutil
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from domain.orchestrator_units import (
    database_url,
    environment_file,
    read_environment_file,
    unit_command,
    unit_environment,
    unit_setting,
)
from pipeline.errors import NotFound
from pipeline.samples import SampleSpec, generate_lms_database, generate_logs
from remote.orchestrator import Installer, LocalTarget, OrchestratorInstall
from tasks.alarms import PREFIX
from tests.bed.ports import free_port
from tests.bed.postgresql import PostgresCluster, postgres_bin, timed_start
from tests.bed.prefect_server import tail, terminate_process_tree

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = "analytics-import/daily"
NOTIFY_BLOCK = "custom-webhook/ops-alarms"
SPEC = SampleSpec(days=2, servers=1, lines_per_file=500, users=50)
RUN_TIMEOUT = 240
#: The Prefect an older install ran, resolved with its dependencies as the index served them
#: then (today's fastapi and sqlalchemy break it).
OLD_PREFECT, OLD_PREFECT_RESOLVED_AT = "3.4.25", "2025-10-25"
#: Run by the older Prefect against its server: a completed flow run and a block.
BEFORE_UPGRADE = """
from prefect import flow
from prefect.blocks.system import Secret
from prefect.runtime import flow_run


@flow(name="before-upgrade")
def before_upgrade() -> str:
    return flow_run.id


Secret(value="kept across the upgrade").save("upgrade-test", overwrite=True)
print(before_upgrade())
"""


@pytest.fixture(scope="module")
def postgres():
    if postgres_bin() is None:
        pytest.fail("no PostgreSQL: apt-get install -y postgresql (scripts/test does)")
    cluster = PostgresCluster()
    seconds = timed_start(cluster)
    print(f"\nPostgreSQL cluster (initdb + start): {seconds:.1f} s")
    yield cluster
    cluster.remove()


@pytest.fixture(scope="module")
def old_prefect(tmp_path_factory) -> Path:
    """A virtualenv with an older Prefect 3 (and asyncpg), made by uv under the test's tmp."""
    uv = shutil.which("uv")
    assert uv, "uv runs this suite: scripts/test installs it"
    venv = tmp_path_factory.mktemp("old-prefect") / "venv"
    started = time.perf_counter()
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True,
                   timeout=120)  # fmt: skip
    installed = subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(venv / "bin/python"),
         "--exclude-newer", OLD_PREFECT_RESOLVED_AT, f"prefect=={OLD_PREFECT}", "asyncpg"],
        # outside the checkout: its [tool.uv] overrides are for its own Prefect
        cwd=venv.parent, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    print(f"\nvirtualenv with prefect {OLD_PREFECT}: {time.perf_counter() - started:.1f} s")
    return venv


class UnitProcesses:
    """The services as systemd would run them: ExecStart, User, WorkingDirectory, Environment
    and EnvironmentFile of each rendered unit, output into one log file per unit."""

    def __init__(self, units: dict[str, str], log_dir: Path) -> None:
        self.units, self.log_dir = units, log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        unit = self.units[name]
        assert unit_setting(unit, "User") == "root" and os.geteuid() == 0, "runs as the unit's User"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        environment.update(unit_environment(unit))
        environment_file = unit_setting(unit, "EnvironmentFile")
        if environment_file:
            environment.update(read_environment_file(Path(environment_file).read_text()))
        with (self.log_dir / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                unit_command(unit, "bed"), cwd=unit_setting(unit, "WorkingDirectory"),
                env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def stop_all(self) -> None:
        """SIGTERM each service's processes (its flow runs too), as `systemctl stop` does."""
        for name in list(self.processes):
            terminate_process_tree(self.processes.pop(name))

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{tail(path, 40)}"
                         for path in sorted(self.log_dir.glob("*.log")))  # fmt: skip


def wait_for(what: str, condition, timeout: float, explain=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s\n{explain()}")
        time.sleep(1)


def prefect_settings(url: str, auth: str):
    """Prefect's settings for a client of the installed server (its basic auth included)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: url, PREFECT_API_AUTH_STRING: auth})


def api(url: str, auth: str):
    from prefect.client.orchestration import get_client

    class Client:
        def __enter__(self):
            self.settings = prefect_settings(url, auth)
            self.settings.__enter__()
            self.client = get_client(sync_client=True).__enter__()
            return self.client

        def __exit__(self, *exc_info):
            self.client.__exit__(*exc_info)
            self.settings.__exit__(*exc_info)

    return Client()


def save_notify_block(url: str, auth: str) -> None:
    """The alarms' notification block, as an operator saves it once the server answers."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    with prefect_settings(url, auth):
        CustomWebhookNotificationBlock(
            name="ops-alarms", url="http://127.0.0.1:9/alarm", json_data={"text": "{{body}}"}
        ).save(NOTIFY_BLOCK.split("/")[1], overwrite=True)


def ui_login(ui_url: str, auth: str) -> None:
    """The server's UI, in headless Chromium, asks for the auth string: a wrong one is refused,
    the right one lets the deployments page load them through the API."""
    from playwright.sync_api import sync_playwright

    from tests.integration.test_ui import CHROMIUM, CHROMIUM_ARGS, PAGE_TIMEOUT_MS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(f"{ui_url}/deployments")
            page.wait_for_url(lambda url: "/login" in url)
            page.get_by_placeholder("admin:pass").fill(f"{auth}-wrong")
            page.get_by_role("button", name="Login").click()
            page.get_by_text("Authentication failed.").first.wait_for()
            assert "/login" in page.url
            page.get_by_placeholder("admin:pass").fill(auth)
            page.get_by_role("button", name="Login").click()
            page.wait_for_url(lambda url: "/login" not in url)
            # searched for: with a dozen deployments, the first page may not show it
            page.get_by_placeholder("Search deployments").first.fill("nightly-backup")
            page.get_by_text("nightly-backup").first.wait_for()
        finally:
            browser.close()


def statuses(output: str) -> list[tuple[str, str]]:
    """(status, step) of each row `install-orchestrator` printed."""
    rows = []
    for line in output.splitlines():
        status, _, rest = line.strip().partition("  ")
        if status in ("ok", "changed"):
            rows.append((status, rest.strip().split(":")[0]))
    return rows


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_orchestrator_install_survives_a_restart(postgres, ssh_host, tmp_path):
    state = tmp_path / "node"
    settings = OrchestratorInstall.model_validate({
        "site": {
            "user": "root", "checkout": str(REPO_ROOT), "prefect_home": str(state / "prefect"),
            "port": free_port(), "environment_file": str(state / "etc/prefect-server.env"),
            "client_environment_file": str(state / "etc/prefect-client.env"),
            "worker_query_seconds": 2,
        },
        "database": {"port": postgres.port, "superuser": postgres.user,
                     "socket_dir": str(postgres.socket_dir)},
        "unit_dir": str(state / "systemd"),
        "services": "none",
        "install_packages": False,
        "concurrency_limits": {"backup-backend1": 1},
        "notify_block": NOTIFY_BLOCK,
    })  # fmt: skip
    site = settings.site
    written = (site.environment_file, site.client_environment_file, site.prefect_home,
               settings.unit_dir)  # fmt: skip
    assert all(Path(path).is_relative_to(tmp_path) for path in written), "only under tmp_path"
    (tmp_path / "site.json").write_text(settings.model_dump_json())
    lines: list[str] = []

    # 1. the system phase, with the command line on this machine: database, role, the
    # root-only environment files, the units
    command = [str(REPO_ROOT / "scripts/install-orchestrator"), "--settings",
               str(tmp_path / "site.json")]  # fmt: skip
    started = time.perf_counter()
    first = subprocess.run([*command, "--phase", "system"], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    print(f"\ninstall, system phase (with the schema's migrations): "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    assert first.returncode == 0, first.stderr
    lines += first.stdout.splitlines()
    changed = {step for status, step in statuses(first.stdout) if status == "changed"}
    assert {
        "database role",
        "database",
        "server environment",
        "client environment",
        "prefect home",
        "database schema",
        "services",
        "installed version",
    } <= changed, lines
    assert {f"unit {name}" for name in Installer(settings, LocalTarget()).units} <= changed
    for secrets_file in (site.environment_file, site.client_environment_file):
        info = Path(secrets_file).stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, 0), f"{secrets_file}: root-only"
    server_values = read_environment_file(Path(site.environment_file).read_text())
    password = server_values["PREFECT_API_DATABASE_CONNECTION_URL"].split(":")[2].split("@")[0]
    auth = server_values["PREFECT_SERVER_API_AUTH_STRING"]
    units = {p.name: p.read_text() for p in Path(settings.unit_dir).glob("*.service")}
    assert len(units) == 3
    assert not any(secret in text for text in units.values() for secret in (password, auth))
    assert postgres.psql("SELECT rolname FROM pg_roles WHERE rolname = 'prefect'") == "prefect\n"

    services = UnitProcesses(units, tmp_path)
    try:
        # 2. the server from its unit's command line, on PostgreSQL; then the prefect phase
        started = time.perf_counter()
        services.start(site.server_unit)
        check = Installer(settings, LocalTarget(), log=lines.append)
        check.server_answers()
        print(f"Prefect server on PostgreSQL, first start (migrated by the install): "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        # only clients with the auth string get in
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(f"{site.api_url}/deployments/filter", data=b"{}", timeout=10)
        # the alarms' notification block, saved by the operator once the server answers
        save_notify_block(site.api_url, auth)
        second = Installer(settings, LocalTarget(), log=lines.append).run("all")
        rows = {r.step: r.status for r in second}
        assert all(
            rows[s] == "ok"
            for s in rows
            if not s.startswith(("work pool", "concurrency", "deployments", "alarms"))
        ), lines
        assert rows["work pool operations"] == rows["work pool analytics"] == "changed", lines
        assert rows["concurrency limit backup-backend1"] == rows["deployments"] == "changed"
        assert rows["alarms"] == "changed", lines
        slug, name = NOTIFY_BLOCK.split("/")
        with api(site.api_url, auth) as client:
            alarms = {a.name: a for a in client.read_automations() if a.name.startswith(PREFIX)}
            block = client.read_block_document_by_name(name, block_type_slug=slug).id
        assert f"{PREFIX}failed-or-crashed-run" in alarms and len(alarms) >= 2, alarms
        assert {a.actions[0].block_document_id for a in alarms.values()} == {block}, alarms
        started = time.perf_counter()
        ui_login(site.api_url.removesuffix("/api"), auth)
        print(f"UI login in Chromium: {time.perf_counter() - started:.1f} s")

        # 3. a second full run, over SSH with the command line (host key verified): all ok
        known_hosts = ssh_host.write_known_hosts(tmp_path / "known_hosts")
        install = [*command, "--host", f"{ssh_host.address}:{ssh_host.port}",
                   "--user", ssh_host.user, "--private-key", str(ssh_host.client_key)]  # fmt: skip
        again = subprocess.run([*install, "--known-hosts", str(known_hosts)], capture_output=True,
                               text=True, timeout=300)  # fmt: skip
        assert again.returncode == 0, again.stderr
        rows = statuses(again.stdout)
        assert len(rows) == len(second) and {s for s, _ in rows} == {"ok"}, again.stdout
        refused = subprocess.run([*install, "--known-hosts", str(tmp_path / "none")],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
        assert refused.returncode == 1 and "is not in known_hosts" in refused.stderr, refused
        # an alarm deleted by hand is made again, and the alarms are not duplicated
        with api(site.api_url, auth) as client:
            client.delete_automation(alarms[f"{PREFIX}failed-or-crashed-run"].id)
        assert check.alarms().status == "changed"
        assert check.alarms().status == "ok"
        with api(site.api_url, auth) as client:
            again_alarms = [a.name for a in client.read_automations() if a.name in alarms]
        assert sorted(again_alarms) == sorted(alarms), again_alarms
        # the block deleted and saved anew (another id): the alarms are made again to send to it
        with api(site.api_url, auth) as client:
            client.delete_block_document(block)
        save_notify_block(site.api_url, auth)
        assert check.alarms().status == "changed"
        with api(site.api_url, auth) as client:
            block = client.read_block_document_by_name(name, block_type_slug=slug).id
            targets = {a.actions[0].block_document_id for a in client.read_automations()
                       if a.name in alarms}  # fmt: skip
        assert targets == {block}, targets
        # a block that is not saved: refused, naming it, before anything is made
        missing = settings.model_copy(update={"notify_block": "custom-webhook/not-saved"})
        with pytest.raises(NotFound, match="notify_block 'custom-webhook/not-saved' is not saved"):
            Installer(missing, LocalTarget(), log=lines.append).alarms()

        # 4. the workers; a deployment run, a block, a short interval schedule
        for pool in site.pools:
            services.start(site.worker_unit(pool))
        generate_logs(tmp_path / "logs", SPEC)
        generate_lms_database(tmp_path / "edxapp.sqlite", SPEC)
        parameters = {
            "interval": "2016-03-01-2016-03-03",
            "logs": {"sources": [f"{tmp_path / 'logs'}/"]},
            "outputs": {"warehouse": f"{tmp_path / 'warehouse'}/",
                        "report_dir": f"{tmp_path / 'reports'}/",
                        "sqlite_database": str(tmp_path / "results.sqlite"),
                        "lms_sqlite_database": str(tmp_path / "edxapp.sqlite")},
        }  # fmt: skip
        from prefect.blocks.system import Secret
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
        from prefect.client.schemas.schedules import IntervalSchedule

        with api(site.api_url, auth) as client:
            deployment = client.read_deployment_by_name(DEPLOYMENT)
            run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
            run = wait_for("the deployment run", lambda: (
                r if (r := client.read_flow_run(run.id)).state.is_final() else None
            ), RUN_TIMEOUT, services.logs)  # fmt: skip
            assert run.state.is_completed(), f"{run.state}\n{services.logs()}"
            with prefect_settings(site.api_url, auth):
                Secret(value="kept across restarts").save("orchestrator-test", overwrite=True)
            # its next run is due 45 s from now: none of it is in flight when the services stop
            # (one would keep the deployment's concurrency slot); the one before is past
            soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=45)
            every_minute = IntervalSchedule(interval=dt.timedelta(seconds=60), anchor_date=soon)
            client.create_deployment_schedules(
                deployment.id, [(every_minute, True)], parameters=parameters
            )
            schedules_before = sorted(str(s.schedule) for s in
                                      client.read_deployment(deployment.id).schedules)  # fmt: skip

        # 5. the reboot: everything stops; runs the old scheduler made are gone with it
        services.stop_all()
        postgres.psql("DELETE FROM flow_run WHERE state_type = 'SCHEDULED'", "prefect")
        restarted_at = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        services.start(site.server_unit)
        check.server_answers()
        print(f"Prefect server restart: {time.perf_counter() - started:.1f} s")
        for pool in site.pools:
            services.start(site.worker_unit(pool))

        with api(site.api_url, auth) as client:
            # history, blocks, schedules, limits: all still there
            assert client.read_flow_run(run.id).state.is_completed()
            with prefect_settings(site.api_url, auth):
                secret = Secret.load("orchestrator-test")
            assert secret.get() == "kept across restarts"
            assert (
                sorted(str(s.schedule) for s in client.read_deployment(deployment.id).schedules)
                == schedules_before
            )
            assert client.read_global_concurrency_limit_by_name("backup-backend1").limit == 1
            only_daily = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))

            def fired_after_restart():
                runs = client.read_flow_runs(deployment_filter=only_daily)
                return [r for r in runs if r.auto_scheduled and r.created > restarted_at
                        and r.state.is_completed()]  # fmt: skip

            started = time.perf_counter()
            fired = wait_for("a run the restarted scheduler made, completed", fired_after_restart,
                             RUN_TIMEOUT, services.logs)  # fmt: skip
            print(f"first scheduled run completed {time.perf_counter() - started:.1f} s "
                  "after the restart")  # fmt: skip
            assert fired[0].parameters["outputs"] == parameters["outputs"]
            # the cron schedules prefect.yaml gives are scheduled again too
            backup = client.read_deployment_by_name("backup-backend-node/nightly-backup")
            upcoming = client.read_flow_runs(deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[backup.id])))  # fmt: skip
            assert any(r.created > restarted_at and r.state.is_scheduled() for r in upcoming)
            for schedule in client.read_deployment(deployment.id).schedules:
                if "interval" in str(schedule.schedule):
                    client.delete_deployment_schedule(deployment.id, schedule.id)
    finally:
        services.stop_all()
    print("\n".join(lines))


def test_install_orchestrator_refuses_bad_settings_naming_them(tmp_path):
    settings = tmp_path / "site.json"
    settings.write_text('{"site": {"user": "prefect", "checkout": "/opt/x", "host": "0.0.0.0"}}')
    result = subprocess.run(
        [str(REPO_ROOT / "scripts/install-orchestrator"), "--settings", str(settings)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result
    assert "site.host" in result.stderr and "every interface" in result.stderr, result.stderr


def test_readme_settings_example_is_valid():
    """The settings the README's operations section writes are an OrchestratorInstall."""
    readme = (REPO_ROOT / "README.md").read_text()
    example = readme.split("<<'JSON'\n", 1)[1].split("\nJSON\n", 1)[0]
    settings = OrchestratorInstall.model_validate_json(example)
    assert settings.site.host == "127.0.0.1" and settings.services == "systemd"


def test_install_orchestrator_stops_at_a_checkout_without_its_virtualenv(tmp_path):
    settings = tmp_path / "site.json"
    settings.write_text(OrchestratorInstall.model_validate({
        "site": {"user": "root", "checkout": str(REPO_ROOT), "venv": str(tmp_path / "venv"),
                 "environment_file": str(tmp_path / "server.env"),
                 "client_environment_file": str(tmp_path / "client.env")},
        "unit_dir": str(tmp_path / "units"), "services": "none", "install_packages": False,
    }).model_dump_json())  # fmt: skip
    result = subprocess.run(
        [str(REPO_ROOT / "scripts/install-orchestrator"), "--settings", str(settings)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert f"no {tmp_path}/venv/bin/prefect" in result.stderr and "uv sync" in result.stderr
    assert not (tmp_path / "units").exists() and not (tmp_path / "server.env").exists()


def test_a_missing_role_is_created_with_the_password_the_services_already_use(postgres, tmp_path):
    """A cluster rebuilt under an existing EnvironmentFile: the role is created with the file's
    password, so the services' URL works even if the run dies before rewriting the file."""
    role = "prefect_repair"
    settings = OrchestratorInstall.model_validate({
        "site": {"user": "root", "checkout": str(REPO_ROOT),
                 "environment_file": str(tmp_path / "etc/prefect-server.env"),
                 "client_environment_file": str(tmp_path / "etc/prefect-client.env")},
        "database": {"role": role, "name": role, "port": postgres.port,
                     "superuser": postgres.user, "socket_dir": str(postgres.socket_dir)},
    })  # fmt: skip
    kept = "kept-Password-0123456789"
    url = database_url(role, kept, "127.0.0.1", postgres.port, role)
    Path(settings.site.environment_file).parent.mkdir(parents=True)
    Path(settings.site.environment_file).write_text(
        environment_file({"PREFECT_API_DATABASE_CONNECTION_URL": url})
    )
    result, password = Installer(settings, LocalTarget(), log=lambda line: None).role()
    assert (result.status, password) == ("changed", kept)
    login = subprocess.run(
        ["psql", "-X", "-tA", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", role,
         "-d", "postgres", "-c", "SELECT current_user"],
        env={**os.environ, "PGPASSWORD": kept}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert login.stdout.strip() == role, login.stderr


def health(url: str, auth: str) -> bool:
    """The server at `url` answers its health check (with the basic-auth header)."""
    token = base64.b64encode(auth.encode()).decode()
    request = urllib.request.Request(f"{url}/health", headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_orchestrator_install_upgrades_prefect_keeping_history_and_blocks(
    postgres, old_prefect, tmp_path
):
    """An install made with Prefect 3.4 runs a flow and saves a block; the install rerun with
    this checkout's Prefect migrates the schema, says the services must restart, and on the
    restarted server the run and the block are there; a further run is all ok."""
    state = tmp_path / "node"

    def install(venv: str | None) -> OrchestratorInstall:
        return OrchestratorInstall.model_validate({
            "site": {
                "user": "root", "checkout": str(REPO_ROOT), "venv": venv,
                "prefect_home": str(state / "prefect"), "port": port,
                "environment_file": str(state / "etc/prefect-server.env"),
                "client_environment_file": str(state / "etc/prefect-client.env"),
            },
            "database": {"role": "prefect_upgrade", "name": "prefect_upgrade",
                         "port": postgres.port, "superuser": postgres.user,
                         "socket_dir": str(postgres.socket_dir)},
            "unit_dir": str(state / "systemd"), "services": "none", "install_packages": False,
        })  # fmt: skip

    def revision() -> str:
        return postgres.psql("SELECT version_num FROM alembic_version", "prefect_upgrade").strip()

    port = free_port()
    older, newer = install(str(old_prefect)), install(None)
    site, lines = older.site, []

    # 1. the older install: its schema, its units, its server; a flow run and a block
    started = time.perf_counter()
    rows = {r.step: r for r in Installer(older, LocalTarget(), log=lines.append).run("system")}
    print(
        f"install with prefect {OLD_PREFECT}, system phase: {time.perf_counter() - started:.1f} s"
    )
    assert rows["checkout"].detail.startswith(f"prefect {OLD_PREFECT} "), lines
    assert rows["database schema"].status == "changed", lines
    old_revision = revision()
    auth = read_environment_file(Path(site.environment_file).read_text())[
        "PREFECT_SERVER_API_AUTH_STRING"
    ]
    old_units = {p.name: p.read_text() for p in Path(older.unit_dir).glob("*.service")}
    assert f"{old_prefect}/bin/prefect server start" in old_units[site.server_unit]
    services = UnitProcesses(old_units, tmp_path / "old")
    (tmp_path / "old").mkdir()
    try:
        started = time.perf_counter()
        services.start(site.server_unit)
        wait_for(f"prefect {OLD_PREFECT}'s server", lambda: health(site.api_url, auth), 180,
                 services.logs)  # fmt: skip
        print(f"prefect {OLD_PREFECT} server start: {time.perf_counter() - started:.1f} s")
        script = tmp_path / "before_upgrade.py"
        script.write_text(BEFORE_UPGRADE)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        environment |= {"PREFECT_API_URL": site.api_url, "PREFECT_API_AUTH_STRING": auth,
                        "PREFECT_HOME": str(tmp_path / "client"),
                        "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}  # fmt: skip
        started = time.perf_counter()
        before = subprocess.run(
            [str(old_prefect / "bin/python"), str(script)], cwd=tmp_path, env=environment,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert before.returncode == 0, before.stderr[-3000:]
        run_id = before.stdout.strip().splitlines()[-1]
        print(f"a flow run and a block on prefect {OLD_PREFECT}: "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    finally:
        # the operator stops services the install does not manage (systemd ones it stops itself)
        services.stop_all()

    # 2. the install rerun with this checkout's Prefect: migrated, restart asked, version kept
    started = time.perf_counter()
    upgrade = Installer(newer, LocalTarget(), log=lines.append)
    rows = {r.step: r for r in upgrade.run("system")}
    print(f"upgrade, system phase (migrations): {time.perf_counter() - started:.1f} s")
    new_version = rows["checkout"].detail.split()[1]
    assert new_version != OLD_PREFECT, lines
    change = f"prefect {OLD_PREFECT} -> {new_version}"
    new_revision = revision()
    assert new_revision != old_revision, lines
    assert rows["database schema"].status == "changed", lines
    assert rows["database schema"].detail == f"migrated {old_revision} -> {new_revision} ({change})"
    assert rows["services"].status == "changed" and change in rows["services"].detail, lines
    assert rows["installed version"].status == "changed", lines
    assert rows[f"unit {site.server_unit}"].status == "changed", "the units run the new venv"
    new_units = {p.name: p.read_text() for p in Path(newer.unit_dir).glob("*.service")}
    services = UnitProcesses(new_units, tmp_path)
    try:
        started = time.perf_counter()
        services.start(site.server_unit)
        upgrade.server_answers()
        print(f"upgraded server start: {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        prefect_rows = {r.step: r.status for r in upgrade.run("prefect")}
        print(f"upgrade, prefect phase (redeploy): {time.perf_counter() - started:.1f} s")
        assert prefect_rows["deployments"] == "changed", lines
        from prefect.blocks.system import Secret

        with api(site.api_url, auth) as client:
            assert client.api_version() == new_version
            run = client.read_flow_run(run_id)
            assert run.state.is_completed(), run.state
            assert client.read_flow(run.flow_id).name == "before-upgrade"
            with prefect_settings(site.api_url, auth):
                assert Secret.load("upgrade-test").get() == "kept across the upgrade"
        # 3. installed as recorded: a further run changes nothing
        started = time.perf_counter()
        again = Installer(newer, LocalTarget(), log=lines.append).run("all")
        print(f"install rerun after the upgrade (all ok): {time.perf_counter() - started:.1f} s")
        assert {r.status for r in again} == {"ok"}, lines
    finally:
        services.stop_all()
    print("\n".join(lines))
