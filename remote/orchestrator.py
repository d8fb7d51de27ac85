"""Installing the orchestrator on the deploy node: PostgreSQL as Prefect's database, the Prefect
server and one worker per work pool as systemd services, then the work pools, the global
concurrency limits and `prefect deploy --all` from the checkout. Prefect-free: it installs
Prefect's own server, so it drives Prefect through its command line on the node.

Every step looks first and changes only what differs, returning a `StepResult` (`ok` or
`changed`, as `remote.setup` does for the analytics node); a second run is all `ok`. The steps
run on a `Target`: the machine itself (`LocalTarget`) or the deploy node over SSH (an
`SshSession`, host key verified), as root. Two phases: `system` (packages, database, the
root-only EnvironmentFiles with the connection URL and the API's basic-auth string, units,
the schema's migration, services) and `prefect` (what needs
the running server, the alarms of tasks/alarms.py last); `all` runs both.

Upgrades: the Prefect version and uv.lock's digest the services were started with are recorded
in PREFECT_HOME; when they change, the install stops the services, migrates the database with
the new Prefect, restarts them and redeploys.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import secrets
import shlex
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from typing import Annotated, Literal, Protocol

import yaml
from pydantic import BaseModel, Field, field_validator

from domain.orchestrator_units import (
    OrchestratorSite,
    client_environment,
    database_url,
    environment_file,
    read_environment_file,
    render_units,
    server_environment,
)
from pipeline.errors import InvalidInput, NotFound, OperationFailed, OperationTimeout
from pipeline_config.fields import NonEmptyStr
from remote.setup import StepResult
from remote.ssh import CommandResult, check

Phase = Literal["all", "system", "prefect"]
_SQL_NAME = re.compile(r"[a-z_][a-z0-9_]*")
#: Sources whose change changes what `prefect deploy --all` registers (schemas, entrypoints).
DEPLOYED_SOURCES = ("prefect.yaml", "flows", "tasks", "blocks", "domain", "pipeline_config")
DEPLOY_MARKER = "edx-ops-flows-deployed"
#: Sources of the alarms' definitions: a change to them recreates the automations.
ALARM_SOURCES = ("tasks/alarms.py",)
ALARMS_MARKER = "edx-ops-flows-alarms"
#: What the services run, as the last install recorded it (Prefect's version, the lock's digest).
VERSION_MARKER = "edx-ops-flows-installed"
#: tasks/alarms.py's own creation, printing {name: id} of what it created as one JSON line.
APPLY_ALARMS = (
    "import json, sys; from tasks.alarms import apply_alarms; "
    "print(json.dumps({a.name: str(a.id) for a in apply_alarms(sys.argv[1])}))"
)
#: The user name of the API's basic auth (the password is generated once per site).
API_USER = "edx-ops"


class Target(Protocol):
    """Where the steps run: an `SshSession`, or `LocalTarget` on the machine itself."""

    host: str

    def run(
        self, command: str, *, timeout: float | None = None, expect_success: bool = True
    ) -> CommandResult: ...

    def read_file(self, path: str) -> bytes | None: ...

    def write_file(self, path: str, data: bytes, mode: int) -> None: ...


class LocalTarget:
    """The machine itself: commands through `bash -c`, files written atomically."""

    host = "localhost"

    def __init__(self, command_timeout: float = 600) -> None:
        self.command_timeout = command_timeout

    def run(
        self, command: str, *, timeout: float | None = None, expect_success: bool = True
    ) -> CommandResult:
        started = time.monotonic()
        timeout = timeout or self.command_timeout
        try:
            done = subprocess.run(["bash", "-c", command], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise OperationTimeout(f"`{command}` did not finish within {timeout:g} s") from None
        result = CommandResult(self.host, command, done.returncode, done.stdout, done.stderr,
                               time.monotonic() - started)  # fmt: skip
        return check(result) if expect_success else result

    def read_file(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def write_file(self, path: str, data: bytes, mode: int) -> None:
        temporary = f"{path}.{os.getpid()}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)


class PrefectDatabase(BaseModel):
    """Prefect's PostgreSQL database on the deploy node (Debian's `postgresql`)."""

    name: NonEmptyStr = Field(default="prefect", description="Database name.")
    role: NonEmptyStr = Field(default="prefect", description="Role Prefect logs in as.")
    host: NonEmptyStr = Field(default="127.0.0.1", description="Address Prefect connects to.")
    port: int = Field(default=5432, ge=1, le=65535, description="PostgreSQL's port.")
    superuser: NonEmptyStr = Field(
        default="postgres", description="System user whose `psql` administers the cluster."
    )
    socket_dir: NonEmptyStr | None = Field(
        default=None, description="Unix socket directory of the cluster; default psql's own."
    )

    @field_validator("name", "role")
    @classmethod
    def _sql_name(cls, value: str) -> str:
        if not _SQL_NAME.fullmatch(value):
            raise ValueError(f"{value!r}: use lowercase letters, digits and '_'")
        return value


class OrchestratorInstall(BaseModel):
    """Everything the install command needs: the site and how its node is set up."""

    site: OrchestratorSite = Field(description="Where and as whom the services run.")
    database: PrefectDatabase = Field(
        default_factory=PrefectDatabase, description="Prefect's PostgreSQL database."
    )
    unit_dir: NonEmptyStr = Field(
        default="/etc/systemd/system", description="Where the unit files are written."
    )
    services: Literal["systemd", "none"] = Field(
        default="systemd",
        description="systemd: enable and (re)start the units; none: the services are run "
        "by something else and must be running for the prefect phase.",
    )
    install_packages: bool = Field(
        default=True, description="Install Debian's postgresql when it is missing."
    )
    concurrency_limits: dict[NonEmptyStr, Annotated[int, Field(ge=1)]] = Field(
        default={"backup-backend1": 1},
        description="Global concurrency limits (name -> slots), e.g. one `backup-<node>` per "
        "backed-up node.",
    )
    server_timeout_seconds: float = Field(
        default=180, gt=0, description="How long the server may take to answer after a start."
    )
    notify_block: NonEmptyStr | None = Field(
        default=None,
        description="Notification block (`<block type slug>/<name>`, saved on the server "
        "beforehand) the alarms of tasks/alarms.py send to; the install creates or updates "
        "them. None: no alarms (a first install, before the block can be saved).",
    )


def _quote_all(words: list[str]) -> str:
    return " ".join(shlex.quote(word) for word in words)


class Installer:
    """The steps of one install on one target; `run(phase)` returns their results."""

    def __init__(
        self, settings: OrchestratorInstall, target: Target, log: Callable[[str], None] = print
    ) -> None:
        self.settings, self.target, self.log = settings, target, log
        self.site = settings.site
        self.units = render_units(self.site)
        self.changed_files: set[str] = set()
        #: What the services run now, and what the last install recorded (the `checkout` step).
        self.installed, self.recorded = "", ""

    # -- helpers -------------------------------------------------------------------------------

    def result(self, step: str, changed: bool, detail: str) -> StepResult:
        """The step's result, logged at once (a later failure leaves the rows before it)."""
        result = StepResult(step, self.target.host, "changed" if changed else "ok", detail)
        self.log(f"{result.status:>7}  {result.step}: {result.detail}")
        return result

    def psql_words(self, dbname: str = "postgres") -> list[str]:
        """`psql` as the cluster's superuser on its socket (peer authentication)."""
        database = self.settings.database
        words = ["runuser", "-u", database.superuser, "--", "psql", "-X", "-q", "-tA",
                 "-v", "ON_ERROR_STOP=1", "-p", str(database.port), "-d", dbname]  # fmt: skip
        return words + (["-h", database.socket_dir] if database.socket_dir else [])

    def psql(self, sql: str) -> CommandResult:
        """`sql` (no secrets: it shows on the command line) through `psql_words`."""
        return self.target.run(_quote_all([*self.psql_words(), "-c", sql]))

    def put(self, step: str, path: str, data: bytes, mode: int, owner: str) -> StepResult:
        """`path` holds `data` with `mode` and `owner` (root-only files stay so from the start)."""
        q = shlex.quote
        self.target.run(f"mkdir -p {q(posixpath.dirname(path))}")
        stat = self.target.run(f"stat -c '%a %U' {q(path)}", expect_success=False)
        if self.target.read_file(path) == data and stat.stdout.split() == [f"{mode:o}", owner]:
            return self.result(step, False, f"{path} up to date")
        self.target.write_file(path, data, mode)
        self.target.run(f"chown {q(owner)} {q(path)} && chmod {mode:o} {q(path)}")
        self.changed_files.add(path)
        return self.result(step, True, f"wrote {path} ({len(data)} bytes, mode {mode:o})")

    def prefect(self, *args: str, expect_success: bool = True) -> CommandResult:
        """The checkout's Prefect CLI as the site user, in the checkout, with the workers'
        environment; the auth string comes from the client file, never on a command line."""
        return self.as_site_user([self.site.prefect, *args], expect_success=expect_success)

    def as_site_user(
        self, words: list[str], *, server: bool = False, expect_success: bool = True
    ) -> CommandResult:
        """`words` as the site user in the checkout, with a client's environment and file, or
        with the server's (`server`: the database URL)."""
        q = shlex.quote
        if server:
            values, secrets_file = server_environment(self.site), self.site.environment_file
        else:
            values, secrets_file = client_environment(self.site), self.site.client_environment_file
        environment = [f"{key}={value}" for key, value in values.items()]
        command = (
            f"set -a && . {q(secrets_file)} && set +a && cd {q(self.site.checkout)} && "
            # a wide console: Rich would wrap the CLI's JSON output at 80 columns
            + _quote_all(
                [
                    "runuser",
                    "-u",
                    self.site.user,
                    "--",
                    "env",
                    *environment,
                    "PREFECT_CLI_PROMPT=false",
                    "COLUMNS=100000",
                    *words,
                ]
            )  # fmt: skip
        )
        return self.target.run(command, expect_success=expect_success)

    # -- the system phase ----------------------------------------------------------------------

    def packages(self) -> StepResult:
        status = self.target.run("dpkg-query -W -f='${Status}' postgresql", expect_success=False)
        if status.stdout.strip() == "install ok installed":
            return self.result("debian packages", False, "postgresql installed")
        if not self.settings.install_packages:
            raise InvalidInput(
                f"postgresql is not installed on {self.target.host} and install_packages is off"
            )
        self.target.run("DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql")
        return self.result("debian packages", True, "installed postgresql")

    def server_values(self) -> dict[str, str]:
        """The server's EnvironmentFile as it is (empty when there is none)."""
        text = self.target.read_file(self.site.environment_file)
        return read_environment_file(text.decode()) if text is not None else {}

    def current_password(self) -> str | None:
        """The database password in the server's EnvironmentFile, when there is one."""
        url = self.server_values().get("PREFECT_API_DATABASE_CONNECTION_URL", "")
        match = re.fullmatch(r"postgresql\+asyncpg://[^:]+:([^@]*)@.*", url)
        return urllib.parse.unquote(match.group(1)) if match else None

    def role(self) -> tuple[StepResult, str]:
        database = self.settings.database
        password = self.current_password()
        exists = self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{database.role}'")
        if exists.stdout.strip() == "1" and password is not None:
            return self.result("database role", False, f"role {database.role}"), password
        # A missing role under an existing EnvironmentFile (a rebuilt cluster) takes the file's
        # password: a fresh one would leave the services' URL and the role disagreeing, for good,
        # if this run were killed before it rewrote the file.
        password = password or secrets.token_urlsafe(24)
        verb = "ALTER" if exists.stdout.strip() == "1" else "CREATE"
        # through a root-only file on stdin: the password never shows on a command line
        sql_file = f"{self.site.environment_file}.sql"
        self.target.run(f"mkdir -p {shlex.quote(posixpath.dirname(sql_file))}")
        sql = f"{verb} ROLE {database.role} LOGIN PASSWORD '{password}';\n"
        self.target.write_file(sql_file, sql.encode(), 0o600)
        try:
            self.target.run(f"{_quote_all(self.psql_words())} < {shlex.quote(sql_file)}")
        finally:
            self.target.run(f"rm -f {shlex.quote(sql_file)}")
        return self.result("database role", True, f"{verb.lower()}d role {database.role}"), password

    def database(self) -> StepResult:
        database = self.settings.database
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database.name}'")
        if exists.stdout.strip() == "1":
            return self.result("database", False, f"database {database.name}")
        self.psql(f"CREATE DATABASE {database.name} OWNER {database.role}")
        return self.result("database", True, f"created database {database.name}")

    def environment_files(self, password: str) -> list[StepResult]:
        """The server's file (connection URL, auth string) and the workers' (auth string)."""
        database = self.settings.database
        url = database_url(database.role, password, database.host, database.port, database.name)
        auth = self.server_values().get("PREFECT_SERVER_API_AUTH_STRING")
        auth = auth or f"{API_USER}:{secrets.token_urlsafe(24)}"
        server = {"PREFECT_API_DATABASE_CONNECTION_URL": url,
                  "PREFECT_SERVER_API_AUTH_STRING": auth}  # fmt: skip
        client = {"PREFECT_API_AUTH_STRING": auth}
        return [
            self.put("server environment", self.site.environment_file,
                     environment_file(server).encode(), 0o600, "root"),
            self.put("client environment", self.site.client_environment_file,
                     environment_file(client).encode(), 0o600, "root"),
        ]  # fmt: skip

    def checkout(self) -> StepResult:
        """The checkout's Prefect runs as the site user (its venv's Python must be readable by
        that user: not one uv installed under /root, say)."""
        q = shlex.quote
        prefect, user = self.site.prefect, self.site.user
        if not self.target.run(f"test -x {q(prefect)}", expect_success=False).ok:
            raise InvalidInput(
                f"no {prefect} on {self.target.host}: run `uv sync --frozen` in the "
                f"checkout {self.site.checkout} first (site.checkout, site.venv)"
            )
        version = self.target.run(f"cd / && runuser -u {q(user)} -- {q(prefect)} --version",
                                  expect_success=False)  # fmt: skip
        if not version.ok:
            raise InvalidInput(
                f"{prefect} does not run as {user} on {self.target.host} (is the venv's Python "
                f"readable by {user}?): {(version.stderr or version.stdout).strip()[-300:]}"
            )
        lock = self.target.read_file(posixpath.join(self.site.checkout, "uv.lock")) or b""
        self.installed = (f"prefect {version.stdout.strip()}\n"
                          f"uv.lock {hashlib.sha256(lock).hexdigest()}\n")  # fmt: skip
        marker = posixpath.join(self.site.prefect_home, VERSION_MARKER)
        self.recorded = (self.target.read_file(marker) or b"").decode()
        return self.result("checkout", False, f"prefect {version.stdout.strip()} as {user}")

    @property
    def version_changed(self) -> bool:
        """Prefect or the locked dependencies differ from what the services were started with."""
        return self.installed != self.recorded

    def version_change(self) -> str:
        """`prefect A -> B` (or the lock's change) for the results' details."""
        before = dict(line.split(" ", 1) for line in self.recorded.splitlines() if " " in line)
        after = dict(line.split(" ", 1) for line in self.installed.splitlines())
        if not before:
            return f"prefect {after['prefect']} (no earlier install recorded)"
        if before.get("prefect") != after["prefect"]:
            return f"prefect {before.get('prefect')} -> {after['prefect']}"
        return "uv.lock changed"

    def alembic_revision(self) -> str | None:
        """The Prefect database's schema revision (alembic's), None before its first migration."""
        found = self.target.run(
            _quote_all([*self.psql_words(self.settings.database.name),
                        "-c", "SELECT version_num FROM alembic_version"]),
            expect_success=False,
        )  # fmt: skip
        revision = found.stdout.strip() if found.ok else ""
        return revision or None

    def database_schema(self) -> StepResult:
        """Prefect's schema migrated explicitly by the installed Prefect, with the services
        stopped (systemd): an upgrade never leaves an old server on a newer schema."""
        before = self.alembic_revision()
        if before and not self.version_changed:
            return self.result("database schema", False, f"revision {before}")
        if before and self.settings.services == "systemd":
            # the workers first: they would only fail against a stopped server
            workers = [self.site.worker_unit(pool) for pool in self.site.pools]
            for name in [*workers, self.site.server_unit]:
                self.target.run(f"systemctl stop {shlex.quote(name)}")
        upgrade = self.as_site_user([self.site.prefect, "server", "database", "upgrade", "-y"],
                                    server=True, expect_success=False)  # fmt: skip
        if not upgrade.ok:
            raise OperationFailed(
                f"migrating the Prefect database {self.settings.database.name} on "
                f"{self.target.host} failed ({self.version_change()}; the services stay "
                "stopped until a run of the install migrates it): "
                f"{(upgrade.stderr or upgrade.stdout).strip()[-500:]}"
            )
        after = self.alembic_revision()
        if after == before:
            return self.result("database schema", False, f"revision {after}, nothing to migrate")
        return self.result("database schema", True, f"migrated {before or 'an empty database'} "
                           f"-> {after} ({self.version_change()})")  # fmt: skip

    def version_record(self) -> StepResult:
        """Recorded after the services were (re)started on it, for the next install to compare."""
        marker = posixpath.join(self.site.prefect_home, VERSION_MARKER)
        return self.put("installed version", marker, self.installed.encode(), 0o644, "root")

    def site_user(self) -> StepResult:
        q = shlex.quote
        user = self.site.user
        if self.target.run(f"id -u {q(user)}", expect_success=False).ok:
            return self.result("site user", False, user)
        self.target.run(f"useradd --system --home-dir {q(self.site.prefect_home)} "
                        f"--shell /usr/sbin/nologin {q(user)}")  # fmt: skip
        return self.result("site user", True, f"created system user {user}")

    def prefect_home(self) -> StepResult:
        q = shlex.quote
        home, user = self.site.prefect_home, self.site.user
        owner = self.target.run(f"stat -c %U {q(home)}", expect_success=False).stdout.strip()
        if owner == user:
            return self.result("prefect home", False, home)
        self.target.run(f"mkdir -p {q(home)} && chown {q(user)} {q(home)}")
        return self.result("prefect home", True, f"{home} owned by {user}")

    def unit_files(self) -> list[StepResult]:
        return [
            self.put(
                f"unit {name}",
                posixpath.join(self.settings.unit_dir, name),
                text.encode(),
                0o644,
                "root",
            )  # fmt: skip
            for name, text in self.units.items()
        ]

    def restart_reason(self) -> str | None:
        """Why the running services are out of date, or None."""
        if self.version_changed:
            return self.version_change()
        return "new settings" if self.changed_files else None

    def systemd_services(self) -> list[StepResult]:
        q = shlex.quote
        if self.changed_files:
            self.target.run("systemctl daemon-reload")
        reason = self.restart_reason()
        results = []
        for name in self.units:
            enabled = self.target.run(f"systemctl is-enabled {q(name)}", expect_success=False)
            active = self.target.run(f"systemctl is-active {q(name)}", expect_success=False)
            if enabled.stdout.strip() != "enabled" or active.stdout.strip() != "active":
                self.target.run(f"systemctl enable --now {q(name)}")
                # stopped by `database_schema` for an upgrade, or never started
                detail = f"enabled and started ({reason})" if reason else "enabled and started"
                results.append(self.result(f"service {name}", True, detail))
            elif reason:
                self.target.run(f"systemctl restart {q(name)}")
                results.append(self.result(f"service {name}", True, f"restarted ({reason})"))
            else:
                results.append(self.result(f"service {name}", False, "enabled and active"))
        return results

    def unmanaged_services(self) -> StepResult:
        """`services: none`: whoever runs the services is told when they must restart."""
        reason = self.restart_reason()
        if reason:
            return self.result("services", True, f"not managed here: restart them ({reason})")
        return self.result("services", False, "not managed here, up to date")

    def system(self) -> list[StepResult]:
        results = [self.packages(), self.site_user(), self.checkout()]
        role, password = self.role()
        results += [role, self.database(), *self.environment_files(password), self.prefect_home()]
        results += self.unit_files()
        results.append(self.database_schema())
        if self.settings.services == "systemd":
            results += self.systemd_services()
        else:
            results.append(self.unmanaged_services())
        results.append(self.version_record())
        return results

    # -- the prefect phase ---------------------------------------------------------------------

    def server_answers(self) -> StepResult:
        timeout = int(self.settings.server_timeout_seconds)
        status = self.prefect("server", "status", "--wait", "--timeout", str(timeout),
                              expect_success=False)  # fmt: skip
        if not status.ok:
            raise OperationFailed(
                f"the Prefect server at {self.site.api_url} did not answer within {timeout} s "
                f"on {self.target.host}: {status.stdout.strip()[-500:]} (see `journalctl -u "
                f"{self.site.server_unit}`)"
            )
        return self.result("server", False, f"{self.site.api_url} answers")

    def work_pool(self, pool: str) -> StepResult:
        if self.prefect("work-pool", "inspect", pool, expect_success=False).ok:
            return self.result(f"work pool {pool}", False, "exists")
        created = self.prefect("work-pool", "create", pool, "--type", "process",
                               expect_success=False)  # fmt: skip
        if created.ok:
            return self.result(f"work pool {pool}", True, "created (process)")
        # under systemd the pool's worker started a moment ago and creates a missing pool
        # itself (a process pool, as it is a process worker)
        if self.prefect("work-pool", "inspect", pool, expect_success=False).ok:
            return self.result(f"work pool {pool}", True, "created by its worker (process)")
        raise OperationFailed(
            f"creating the work pool {pool} on {self.target.host} failed: "
            f"{(created.stderr or created.stdout).strip()[-500:]}"
        )

    def concurrency_limit(self, name: str, limit: int) -> StepResult:
        step = f"concurrency limit {name}"
        found = self.prefect("gcl", "inspect", name, "--output", "json", expect_success=False)
        if not found.ok:
            self.prefect("gcl", "create", name, "--limit", str(limit))
            return self.result(step, True, f"created with {limit} slot(s)")
        current = json.loads(found.stdout)
        if current.get("limit") == limit and current.get("active", True):
            return self.result(step, False, f"{limit} slot(s)")
        self.prefect("gcl", "update", name, "--limit", str(limit), "--enable")
        return self.result(step, True, f"set to {limit} slot(s), active")

    def sources_digest(self, paths: tuple[str, ...] = DEPLOYED_SOURCES) -> str:
        """sha256 of what the deployments (or other `paths`) are made from, computed on the
        target's checkout."""
        sources = _quote_all(list(paths))
        listing = self.target.run(
            f"cd {shlex.quote(self.site.checkout)} && find {sources} -type f "
            r"\( -name '*.py' -o -name '*.yaml' \) -not -path '*/__pycache__/*' | LC_ALL=C sort"
            " | xargs sha256sum"
        ).stdout
        return hashlib.sha256(listing.encode()).hexdigest()

    def deployments(self) -> StepResult:
        text = self.target.read_file(posixpath.join(self.site.checkout, "prefect.yaml"))
        if text is None:
            raise InvalidInput(f"no prefect.yaml in {self.site.checkout} on {self.target.host}")
        wanted = sorted(d["name"] for d in yaml.safe_load(text)["deployments"])
        listed = json.loads(self.prefect("deployment", "ls", "--output", "json").stdout or "[]")
        present = {deployment["name"] for deployment in listed}
        marker = posixpath.join(self.site.prefect_home, DEPLOY_MARKER)
        # a new Prefect may register the same sources differently (schemas, pull steps)
        prefect_version = self.installed.splitlines()[0] if self.installed else ""
        digest = f"{self.sources_digest()} {self.site.api_url} {prefect_version}\n"
        recorded = self.target.read_file(marker)
        if set(wanted) <= present and recorded == digest.encode():
            return self.result("deployments", False, f"{len(wanted)} up to date")
        self.prefect("--no-prompt", "deploy", "--all")
        self.target.write_file(marker, digest.encode(), 0o644)
        return self.result("deployments", True, f"deployed {', '.join(wanted)}")

    def prefect_phase(self) -> list[StepResult]:
        results = [self.server_answers()]
        results += [self.work_pool(pool) for pool in self.site.pools]
        results += [
            self.concurrency_limit(name, limit)
            for name, limit in sorted(self.settings.concurrency_limits.items())
        ]
        results.append(self.deployments())
        results.append(self.alarms())
        return results

    def automation_id(self, name: str) -> str | None:
        """The id of the one enabled automation called `name`, else None."""
        found = self.prefect("automation", "inspect", name, "--output", "json",
                             expect_success=False)  # fmt: skip
        listed = json.loads(found.stdout) if found.ok else []
        listed = listed if isinstance(listed, list) else [listed]
        if len(listed) != 1 or not listed[0].get("enabled"):
            return None
        return listed[0]["id"]

    def alarms(self) -> StepResult:
        """The automations of tasks/alarms.py (issue 13), created by its own `apply_alarms`:
        ok while its sources, the block (its id: one saved anew gets another) and the API are
        those of the last creation and each automation it made is still there, enabled, under
        the same id.

        Raises:
            NotFound: the notification block is not saved on the server.
        """
        block = self.settings.notify_block
        if block is None:
            return self.result("alarms", False, "none (notify_block not set)")
        found = self.prefect("block", "inspect", block, "--output", "json", expect_success=False)
        if not found.ok:
            raise NotFound(
                f"notify_block {block!r} is not saved on the Prefect server at "
                f'{self.site.api_url}: save the notification block (README, "Alarms that reach '
                'a person"), then run the install again'
            )
        block_id = json.loads(found.stdout)["id"]
        marker = posixpath.join(self.site.prefect_home, ALARMS_MARKER)
        sources = self.sources_digest(ALARM_SOURCES)
        digest = f"{sources} {block} {block_id} {self.site.api_url}"
        recorded = json.loads(self.target.read_file(marker) or b"{}")
        made = recorded.get("automations", {})
        if (
            recorded.get("digest") == digest
            and made
            and all(self.automation_id(name) == made[name] for name in made)
        ):
            return self.result("alarms", False, f"{len(made)} up to date, to {block}")
        python = posixpath.join(self.site.venv_dir, "bin", "python")
        created = self.as_site_user([python, "-c", APPLY_ALARMS, block], expect_success=False)
        if not created.ok:
            raise OperationFailed(
                f"creating the alarms (notify_block {block!r}) on {self.target.host} failed: "
                f"{created.stderr.strip().splitlines()[-1] if created.stderr.strip() else ''}"
            )
        made = json.loads(created.stdout.strip().splitlines()[-1])
        record = json.dumps({"digest": digest, "automations": made}, indent=1) + "\n"
        self.target.write_file(marker, record.encode(), 0o644)
        return self.result("alarms", True, f"created {', '.join(sorted(made))}, to {block}")

    def run(self, phase: Phase = "all") -> list[StepResult]:
        results: list[StepResult] = []
        for name, steps in (("system", self.system), ("prefect", self.prefect_phase)):
            if phase in ("all", name):
                results += steps()
        return results
