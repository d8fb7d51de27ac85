"""The orchestrator's systemd units: rendered from the site's settings, checked by systemd's own
`systemd-analyze verify` (Debian's systemd package; it runs without systemd as PID 1 when given
unit files by path), and read back as the command lines the services run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from domain.orchestrator_units import (
    OrchestratorSite,
    database_url,
    environment_file,
    read_environment_file,
    render_units,
    unit_command,
    unit_environment,
    unit_setting,
)
from pipeline.errors import InvalidInput

REPO_ROOT = Path(__file__).resolve().parents[2]


def site(**changes) -> OrchestratorSite:
    return OrchestratorSite(**{"user": "root", "checkout": str(REPO_ROOT), **changes})


def verify(directory: Path, units: dict[str, str]) -> subprocess.CompletedProcess:
    for name, text in units.items():
        (directory / name).write_text(text)
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(directory / name) for name in units)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_rendered_units_pass_systemd_analyze_verify(tmp_path):
    units = render_units(site(host="192.168.122.100"))
    assert sorted(units) == [
        "edx-ops-prefect-server.service",
        "edx-ops-prefect-worker-analytics.service",
        "edx-ops-prefect-worker-operations.service",
    ]
    result = verify(tmp_path, units)
    # verify exits 0 on mere warnings (an unknown key, a bad Restart=): none may be printed
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "")


def test_verify_catches_what_a_broken_unit_would_do(tmp_path):
    """The check above can fail: a misspelt key and a missing program are reported."""
    units = render_units(site(venv="/nonexistent/venv"))
    server = units["edx-ops-prefect-server.service"]
    units["edx-ops-prefect-server.service"] = server.replace("Restart=", "Restrat=")
    result = verify(tmp_path, units)
    assert result.returncode != 0
    assert "Unknown key 'Restrat'" in result.stderr
    assert "/nonexistent/venv/bin/prefect is not executable" in result.stderr


def test_units_run_the_checkouts_prefect_as_the_site_user():
    the_site = site(host="10.0.0.5", port=4300, worker_query_seconds=2)
    units = render_units(the_site)
    server = units[the_site.server_unit]
    prefect = str(REPO_ROOT / ".venv/bin/prefect")
    assert unit_command(server) == [
        prefect, "server", "start", "--host", "10.0.0.5", "--port", "4300"
    ]  # fmt: skip
    assert unit_setting(server, "User") == "root"
    assert unit_setting(server, "Restart") == "on-failure"
    assert unit_setting(server, "StandardOutput") == "journal"
    assert unit_setting(server, "EnvironmentFile") == "/etc/edx-ops-flows/prefect-server.env"
    assert "PREFECT_API_DATABASE_CONNECTION_URL" not in server
    worker = units[the_site.worker_unit("analytics")]
    assert unit_command(worker, "deploy") == [
        prefect, "worker", "start", "--pool", "analytics", "--name", "analytics-deploy"
    ]  # fmt: skip
    assert unit_setting(worker, "WorkingDirectory") == str(REPO_ROOT)
    assert unit_environment(worker) == {
        "PREFECT_HOME": "/var/lib/edx-ops-flows/prefect",
        "PREFECT_API_URL": "http://10.0.0.5:4300/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    # workers get the API's auth string, never the database password
    assert unit_setting(worker, "EnvironmentFile") == "/etc/edx-ops-flows/prefect-client.env"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "deploy.example.org"])
def test_the_api_is_never_bound_to_every_interface(host):
    with pytest.raises(ValidationError, match=f"host '{host}'"):
        site(host=host)


@pytest.mark.parametrize(
    ("field", "value"), [("pools", ["ops pool"]), ("checkout", "relative/path"), ("user", "")]
)
def test_bad_settings_are_refused_naming_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        site(**{field: value})


def test_the_environment_file_carries_the_quoted_password():
    url = database_url("prefect", "p@ss/w:rd", "127.0.0.1", 5432, "prefect")
    assert url == "postgresql+asyncpg://prefect:p%40ss%2Fw%3Ard@127.0.0.1:5432/prefect"
    values = {"PREFECT_API_DATABASE_CONNECTION_URL": url, "PREFECT_SERVER_API_AUTH_STRING": "a:b"}
    assert read_environment_file(environment_file(values)) == values
    with pytest.raises(InvalidInput, match="PREFECT_API_AUTH_STRING"):
        environment_file({"PREFECT_API_AUTH_STRING": 'a"b'})


def test_example_units_in_deployments_are_up_to_date():
    """deployments/systemd/ holds the units rendered for deployments/example-orchestrator-site.json
    (regenerate: UPDATE_EXAMPLES=1 uv run pytest tests/domain/test_orchestrator_units.py)."""
    deployments = REPO_ROOT / "deployments"
    example = OrchestratorSite.model_validate_json(
        (deployments / "example-orchestrator-site.json").read_text()
    )
    units = render_units(example)
    directory = deployments / "systemd"
    if os.environ.get("UPDATE_EXAMPLES"):
        for name, text in units.items():
            (directory / name).write_text(text)
    assert {path.name: path.read_text() for path in directory.glob("*.service")} == units
