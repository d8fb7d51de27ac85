"""The README's "Try it without a cloud", run as a newcomer runs it: its shell blocks, in order.

The blocks run in one bash (each stops the script at its first failing command), from the
repository root, with a temporary HOME and TMPDIR (so the README's `mktemp -d` puts `$TRY`
under pytest's temp dir). The one change made to the text: Prefect's port 4200 becomes a free
port (PREFECT_SERVER_API_PORT tells `prefect server start`), so the test never meets a Prefect
server already running on this machine. The services are started by the README's own commands;
its last block stops them and runs even when an earlier block failed; then nothing it started
may be left running.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import openstack
import psutil
import pytest

from tests.bed.ports import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),
]

REPO = Path(__file__).resolve().parents[2]
SECTION = "## Try it without a cloud"
SCRIPT_TIMEOUT_SECONDS = 540
STOP_TIMEOUT_SECONDS = 60


def section_blocks(readme: str, title: str = SECTION) -> list[str]:
    """The ```sh blocks of the README section `title`, in order."""
    start = readme.index(f"\n{title}\n")
    end = readme.find("\n## ", start + 1)
    section = readme[start : end if end != -1 else None]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.S | re.M)


def shell_environment(home: Path, tmp: Path, prefect_port: int) -> dict[str, str]:
    """A newcomer's shell: this environment without Prefect settings, a fresh HOME and TMPDIR.

    uv keeps its cache (else the temporary HOME would hide it) and comes first on PATH, as
    the binary itself: a pyenv shim, say, would look for pyenv in the temporary HOME.
    """
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` sets UV to itself
    assert uv, "uv is neither on PATH nor in $UV: install it (scripts/test does)"
    cache = subprocess.run([uv, "cache", "dir"], capture_output=True, text=True, check=True)
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    env["PATH"] = f"{Path(uv).resolve().parent}:{env['PATH']}"
    env.update(
        HOME=str(home), TMPDIR=str(tmp), UV_CACHE_DIR=cache.stdout.strip(),
        PREFECT_SERVER_API_PORT=str(prefect_port), PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )  # fmt: skip
    return env


def run_blocks(blocks: list[str], env: dict[str, str], log: Path, first: int = 1) -> int:
    """Run the blocks in one `bash -e -o pipefail`, marking each in the log; the exit status.

    The shell's exported variables are kept in `<log>.exports` when it exits and restored
    first in the next call, as a newcomer's terminal keeps them from one block to the next.
    """
    exports = log.with_suffix(".exports")
    script = "".join(
        f'echo "### README block {n} at $(date -u +%T)"\n{block}\n'
        for n, block in enumerate(blocks, first)
    )
    restore = f"source {exports}\n" if exports.exists() else ""
    keep = f"trap 'export -p > {exports}' EXIT\n"
    with log.open("a") as output:
        return subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", restore + keep + script], cwd=REPO, env=env,
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            timeout=SCRIPT_TIMEOUT_SECONDS,
        ).returncode  # fmt: skip


def scratch_directory(tmp: Path) -> Path:
    """The `$TRY` the README's `mktemp -d` made."""
    (found,) = tmp.glob("tmp.*")
    return found


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def stop_leftovers(try_dir: Path) -> list[str]:
    """SIGTERM whatever the README started that is still running (pid files); their names."""
    pid_files = [*try_dir.glob("*/pid"), try_dir / "prefect" / "server.pid"]
    left = []
    for pid_file in pid_files:
        try:
            process = psutil.Process(int(pid_file.read_text().strip()))
        except (OSError, ValueError, psutil.NoSuchProcess):
            continue
        left.append(f"{pid_file}: {' '.join(process.cmdline()[:4])}")
        process.send_signal(signal.SIGTERM)
        process.wait(STOP_TIMEOUT_SECONDS)
    return left


def host_setup_rows(output: str) -> list[list[tuple[str, str]]]:
    """(status, step) per setup-analytics-host run, from the rows the README prints."""
    runs = output.split("for flow 'setup-analytics-host'")[1:]
    row = re.compile(r"^ *(ok|changed)  ([^:]+):", re.M)
    return [row.findall(run) for run in runs]


def test_readme_try_it_without_a_cloud(tmp_path):
    blocks = section_blocks((REPO / "README.md").read_text())
    assert len(blocks) >= 3, f"{SECTION}: expected its setup, flow and stop blocks"
    *steps, stop = blocks
    assert stop.lstrip().startswith("kill "), "the section's last block stops the services"
    port = free_port()
    steps = [block.replace(":4200", f":{port}") for block in steps]
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = shell_environment(home, tmp, port)
    log = tmp_path / "readme.log"
    started = time.monotonic()
    try:
        status = run_blocks(steps, env, log)
        output = log.read_text(errors="replace")
        print(f"README blocks ran in {time.monotonic() - started:.1f} s")
        assert status == 0, f"a README command failed (exit {status}):\n{output[-6000:]}"
        try_dir = scratch_directory(tmp)
        check_backup_and_stack(try_dir, output)
        check_host_setup(try_dir, output)
    finally:
        stop_status = run_blocks([stop], env, log, first=len(blocks))
        try_dirs = list(tmp.glob("tmp.*"))
        left = [entry for d in try_dirs for entry in wait_stopped(d)]
    assert stop_status == 0, log.read_text(errors="replace")[-3000:]
    assert not left, f"still running after the README's stop block: {left}"
    assert not listening(port), f"the Prefect server still listens on {port}"


def wait_stopped(try_dir: Path) -> list[str]:
    """Wait for the services to remove their pid files; stop (and name) those that did not."""
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and list(try_dir.glob("*/pid")):
        time.sleep(0.1)
    return stop_leftovers(try_dir)


def check_backup_and_stack(try_dir: Path, output: str) -> None:
    credentials = json.loads((try_dir / "openstack" / "credentials.json").read_text())
    conn = openstack.connect(load_yaml_config=False, load_envvars=False, **credentials)
    try:
        backend = conn.compute.find_server("backend1", ignore_missing=False)
        volumes = {
            v.id: v.name
            for v in conn.block_storage.volumes(details=True)
            if any(a["server_id"] == backend.id for a in v.attachments)
        }
        snapshots = [s for s in conn.block_storage.snapshots(details=True)]
        stack = conn.orchestration.find_stack("analytics", ignore_missing=False)
    finally:
        conn.close()
    # one available snapshot of each data volume, named by the backup's scheme
    made = {(volumes[s.volume_id].split("-")[1], s.status) for s in snapshots}
    assert made == {("backend1_mysql_data", "available"), ("backend1_mongodb_data", "available")}
    for snapshot in snapshots:
        assert re.fullmatch(rf"(mysql|mongodb)_data-{backend.id}-\d{{8}}-\d{{6}}", snapshot.name)
        assert f"{snapshot.name} available" in output  # the README's listing
    assert re.search(r"^completed \['[0-9a-f-]{36}', '[0-9a-f-]{36}'\]$", output, re.M), output
    # the stack flow's outputs, printed by the README's command
    assert stack.status == "CREATE_COMPLETE"
    assert re.search(
        r"^create CREATE_COMPLETE 192\.168\.122\.120 \d+\.\d+\.\d+\.\d+$", output, re.M
    )
    assert "[analytics_servers]\n192.168.122.120\n" in output


def check_host_setup(try_dir: Path, output: str) -> None:
    steps = ["host key", "authorized key", "key pair", "override.cfg", "credentials"]
    first, second = host_setup_rows(output)
    assert first == [("changed", step) for step in steps], output
    assert second == [("ok", step) for step in steps], output
    node = try_dir / "node"
    deploy_public = (try_dir / "deploy_key.pub").read_text().split()[:2]
    authorized = (try_dir / "sshd" / "host1" / "authorized_keys").read_text()
    assert " ".join(deploy_public) in authorized
    assert (node / ".ssh" / "id_rsa").read_text() == (try_dir / "deploy_key").read_text()
    written = json.loads((node / "reports.json").read_text())
    database = json.loads((try_dir / "mariadb" / "credentials.json").read_text())
    assert {k: written[k] for k in database} == database
    assert (node / "reports.json").stat().st_mode & 0o777 == 0o600
    override = (node / "analytics-tasks" / "analyticstack" / "override.cfg").read_text()
    assert f"credentials = {node}/reports.json" in override
