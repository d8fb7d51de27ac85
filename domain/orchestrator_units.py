"""The orchestrator as systemd services: the site's settings and the unit files they render.

Pure logic (no Prefect, no I/O): `OrchestratorSite` holds what a site decides (the user, the
checkout, the pools, where the server listens), `render_units` turns it into one unit for the
Prefect server and one per work pool. The secrets (the database password, the API's basic-auth
string) live in root-only EnvironmentFiles (`environment_file` renders them), never in a unit
(units are world-readable): systemd reads them as root before it drops to the service's user.
`unit_command` and `unit_environment` read a rendered unit back, so that the tests run
exactly what the units run.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import shlex
import urllib.parse
from typing import Annotated

from pydantic import BaseModel, Field, field_validator

from pipeline.errors import InvalidInput
from pipeline_config.fields import NonEmptyStr

#: The pools prefect.yaml's deployments name.
DEFAULT_POOLS = ("operations", "analytics")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

AbsolutePath = Annotated[NonEmptyStr, Field(pattern=r"^/")]


class OrchestratorSite(BaseModel):
    """Where and as whom the orchestrator runs on the deploy node."""

    user: NonEmptyStr = Field(description="System user the server and the workers run as.")
    checkout: AbsolutePath = Field(
        description="Absolute path of this repository's checkout: the workers' working "
        "directory (deployments load their entrypoints from it) and where `.venv` is."
    )
    venv: AbsolutePath | None = Field(
        default=None, description="The orchestrator's virtualenv; default `<checkout>/.venv`."
    )
    prefect_home: AbsolutePath = Field(
        default="/var/lib/edx-ops-flows/prefect",
        description="PREFECT_HOME of the services (profiles, local result storage).",
    )
    host: NonEmptyStr = Field(
        default="127.0.0.1",
        description="Address the server's API listens on: loopback or the management "
        "network's address, never every interface.",
    )
    port: int = Field(default=4200, ge=1, le=65535, description="The server's API port.")
    pools: list[NonEmptyStr] = Field(
        default=list(DEFAULT_POOLS), min_length=1, description="One worker unit per work pool."
    )
    environment_file: AbsolutePath = Field(
        default="/etc/edx-ops-flows/prefect-server.env",
        description="Root-only (0600) file with PREFECT_API_DATABASE_CONNECTION_URL, read by "
        "systemd for the server unit.",
    )
    client_environment_file: AbsolutePath = Field(
        default="/etc/edx-ops-flows/prefect-client.env",
        description="Root-only (0600) file with PREFECT_API_AUTH_STRING, read by systemd for "
        "the worker units.",
    )
    unit_prefix: NonEmptyStr = Field(
        default="edx-ops-prefect", description="Units are `<prefix>-server.service` and "
        "`<prefix>-worker-<pool>.service`."
    )  # fmt: skip
    worker_query_seconds: float = Field(
        default=10, gt=0, description="How often a worker asks the server for runs."
    )

    @field_validator("host")
    @classmethod
    def _not_every_interface(cls, value: str) -> str:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"host {value!r}: give an IP address (loopback, management)") from None
        if address.is_unspecified:
            raise ValueError(f"host {value!r} would open the API on every interface: give "
                             "127.0.0.1 or the management network's address")  # fmt: skip
        return value

    @field_validator("pools", "unit_prefix", "user")
    @classmethod
    def _names(cls, value):
        for name in [value] if isinstance(value, str) else value:
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r}: use letters, digits, '.', '_' and '-'")
        return value

    @property
    def venv_dir(self) -> str:
        return self.venv or posixpath.join(self.checkout, ".venv")

    @property
    def prefect(self) -> str:
        """The Prefect CLI of the orchestrator's virtualenv."""
        return posixpath.join(self.venv_dir, "bin", "prefect")

    @property
    def api_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/api"

    @property
    def server_unit(self) -> str:
        return f"{self.unit_prefix}-server.service"

    def worker_unit(self, pool: str) -> str:
        return f"{self.unit_prefix}-worker-{pool}.service"


def client_environment(site: OrchestratorSite) -> dict[str, str]:
    """What every Prefect process of the site gets (workers, their flow runs, the installer's
    CLI calls): the server's API and the site's PREFECT_HOME."""
    return {
        "PREFECT_HOME": site.prefect_home,
        "PREFECT_API_URL": site.api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def server_environment(site: OrchestratorSite) -> dict[str, str]:
    """The server's own environment in its unit (the database URL comes from the file)."""
    return {
        "PREFECT_HOME": site.prefect_home,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # the UI's pages call the API where the server really listens
        "PREFECT_SERVER_UI_API_URL": site.api_url,
        # the install migrates the schema itself, with the services stopped: a server started
        # by hand from an older venv must not migrate (or run on) a database behind its back
        "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
    }


def _environment_lines(environment: dict[str, str]) -> str:
    return "\n".join(f'Environment="{key}={value}"' for key, value in environment.items())


def _unit(description: str, after: str, service: str) -> str:
    # Wants as well as After: a worker started alone pulls its server in
    return f"""[Unit]
Description={description}
Wants=network-online.target {after}
After=network-online.target {after}

[Service]
Type=simple
{service}
Restart=on-failure
RestartSec=5
StandardOutput=journal
StandardError=journal
SyslogIdentifier=%N

[Install]
WantedBy=multi-user.target
"""


def render_units(site: OrchestratorSite) -> dict[str, str]:
    """File name -> content of the server's unit and of one worker unit per pool."""
    q = shlex.quote
    server = _unit(
        "Prefect server of edx-ops-flows (API and UI)",
        "postgresql.service",
        f"User={site.user}\n"
        f"WorkingDirectory={site.prefect_home}\n"
        f"{_environment_lines(server_environment(site))}\n"
        # systemd reads it as root before dropping to User: it stays root-only
        f"EnvironmentFile={site.environment_file}\n"
        f"ExecStart={q(site.prefect)} server start --host {q(site.host)} --port {site.port}",
    )
    units = {site.server_unit: server}
    for pool in site.pools:
        environment = {
            **client_environment(site),
            "PREFECT_WORKER_QUERY_SECONDS": f"{site.worker_query_seconds:g}",
        }
        units[site.worker_unit(pool)] = _unit(
            f"Prefect worker of edx-ops-flows for the {pool} work pool",
            site.server_unit,
            f"User={site.user}\n"
            f"WorkingDirectory={site.checkout}\n"
            f"{_environment_lines(environment)}\n"
            f"EnvironmentFile={site.client_environment_file}\n"
            f"ExecStart={q(site.prefect)} worker start --pool {q(pool)} --name {q(pool)}-%H",
        )
    return units


def database_url(user: str, password: str, host: str, port: int, database: str) -> str:
    """PREFECT_API_DATABASE_CONNECTION_URL for PostgreSQL (asyncpg), the password quoted."""
    secret = urllib.parse.quote(password, safe="")
    return f"postgresql+asyncpg://{user}:{secret}@{host}:{port}/{database}"


def environment_file(values: dict[str, str]) -> str:
    """An EnvironmentFile (also valid shell, for `set -a; . FILE`) setting `values`.

    Raises:
        InvalidInput: naming the variable whose value has a newline, a quote, `$` or `\\`.
    """
    lines = []
    for key, value in values.items():
        if re.search(r'[\n"$`\\]', value):
            raise InvalidInput(f"{key}: the value must be one line without quotes, $, ` or \\")
        lines.append(f'{key}="{value}"\n')
    return "".join(lines)


def read_environment_file(text: str) -> dict[str, str]:
    """The variables of an EnvironmentFile as `environment_file` writes it."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value.strip('"')
    return values


def _service_lines(unit: str, key: str) -> list[str]:
    in_service = False
    found = []
    for line in unit.splitlines():
        if line.startswith("["):
            in_service = line.strip() == "[Service]"
        elif in_service and line.startswith(f"{key}="):
            found.append(line.split("=", 1)[1])
    return found


def unit_command(unit: str, hostname: str = "localhost") -> list[str]:
    """The ExecStart of a rendered unit as an argv (`%H`, the host name, filled in)."""
    lines = _service_lines(unit, "ExecStart")
    if len(lines) != 1:
        raise InvalidInput(f"a unit with {len(lines)} ExecStart lines: expected one")
    return [word.replace("%H", hostname) for word in shlex.split(lines[0])]


def unit_environment(unit: str) -> dict[str, str]:
    """The `Environment=` settings of a rendered unit."""
    environment = {}
    for value in _service_lines(unit, "Environment"):
        key, _, setting = shlex.split(value)[0].partition("=")
        environment[key] = setting
    return environment


def unit_setting(unit: str, key: str) -> str | None:
    """One `[Service]` setting of a rendered unit (`User`, `WorkingDirectory`...), or None."""
    lines = _service_lines(unit, key)
    return lines[-1] if lines else None
