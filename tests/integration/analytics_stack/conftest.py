"""One Prefect test server for the analytics stack, host setup and remote pipeline flows, and
a test host prepared for `installer: uv`.

Kept apart from the other flow directories' harnesses (each session-scoped for its own
directory). Heartbeats off: each flow call is 10x faster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from remote.setup import PROJECT_ROOT, project_source_files
from tests.bed.fixtures import _Stopwatch

#: sshd's own PATH for root sessions on Debian: what a node's login has before we add uv.
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="session", autouse=True)
def analytics_stack_prefect_harness():
    with (
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        prefect_test_harness(server_startup_timeout=60),
    ):
        yield


@pytest.fixture(scope="session")
def uv_program() -> str:
    """The uv running these tests (`uv run` sets UV), else the one on PATH."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        pytest.fail("uv not found (neither UV nor PATH): run the tests with scripts/test")
    return uv


@pytest.fixture(scope="session")
def node_bin(tmp_path_factory, uv_program) -> Path:
    """A directory holding only `uv`, for the test host's PATH (not the venv's python3)."""
    directory = tmp_path_factory.mktemp("node-bin")
    (directory / "uv").symlink_to(uv_program)
    return directory


@pytest.fixture
def ssh_host(ssh_host_factory, node_bin):
    """The bed's SSH host, as a node with uv installed: uv is on its logins' PATH."""
    return ssh_host_factory(name="host1", environment={"PATH": f"{node_bin}:{NODE_PATH}"})


@pytest.fixture(scope="session")
def locked_uv_install(tmp_path_factory, uv_program) -> dict:
    """PipelineSetup settings that install this checkout on a test host with uv, offline, with
    the dependency versions of uv.lock.

    The locked versions go in as overrides (so prefect's certifi pin is overridden exactly as
    pyproject's override-dependencies does). Everything an offline install needs (the index
    pages, the wheels, the build backend) is fetched once here, by the same install online into
    a scratch venv: an empty uv cache works, and the tests themselves need no network. The cache
    is the one this session's uv uses (the test host's logins have another HOME).
    """
    work = tmp_path_factory.mktemp("locked-install")
    with _Stopwatch("locked_uv_install"):

        def uv(*args: str, cwd: Path = work) -> str:
            # outside the checkout, as on the node: no [tool.uv] settings of pyproject.toml
            done = subprocess.run(
                [uv_program, *args], cwd=cwd, capture_output=True, text=True, timeout=600
            )
            if done.returncode:
                pytest.fail(f"uv {' '.join(args)} failed:\n{done.stderr[-3000:]}")
            return done.stdout

        locked = work / "locked.txt"
        uv("export", "--quiet", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes",
           "--output-file", str(locked), cwd=PROJECT_ROOT)  # fmt: skip
        options = ["--cache-dir", uv("cache", "dir").strip(), "--override", str(locked)]
        source = work / "src"  # what the flow uploads to the node
        for path in project_source_files():
            target = source / path.relative_to(PROJECT_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
        uv("venv", "--quiet", str(work / "venv"))
        uv("pip", "install", "--quiet", "--python", str(work / "venv" / "bin" / "python"),
           *options, str(source))  # fmt: skip
    return {"installer": "uv", "install_options": ["--offline", *options]}
