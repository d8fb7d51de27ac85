"""What an analytics node gets: the archive remote.setup uploads, installed by the commands
`setup-analytics-host` runs there (installer uv, and pip), into a new virtualenv outside the
checkout.

It holds the pipeline alone, with `launch-task` its only command, and neither Prefect,
openstacksdk, paramiko nor the orchestrator's packages; `launch-task` runs TotalEventsDailyTask
end to end on upstream's tracking log. The install takes uv.lock's versions of the pipeline's
dependencies (uv: as overrides, the way `locked_uv_install` does for the test hosts, with this
session's uv cache; pip: as constraints, with the caller's pip cache).
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from remote.setup import PROJECT_ROOT, install_commands, project_archive

pytestmark = pytest.mark.slow

TRACKING_LOG = PROJECT_ROOT / "tests/data/upstream/input/enrollment_trends_tracking.log"
INTERVAL = "2014-07-30-2014-08-07"
#: What must not be importable on a node, and what must.
ABSENT = ("prefect", "prefect_aws", "openstack", "paramiko", "flows", "tasks", "blocks", "remote",
          "domain", "pipeline_config")  # fmt: skip
PRESENT = ("pipeline", "luigi")
#: Tells, for each module named on its command line, whether it imports, and where from.
PROBE = """
import importlib, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = importlib.import_module(name).__file__
    except ModuleNotFoundError as error:
        found[name] = None if error.name == name else f"failed: {error}"
print(json.dumps(found))
"""
#: The distribution's top-level packages and console scripts, from its installed metadata.
DISTRIBUTION = """
import importlib.metadata, json
dist = importlib.metadata.distribution("edx-ops-flows")
tops = {f.parts[0] for f in dist.files if f.parts[0] != ".." and ".dist-info" not in f.parts[0]}
scripts = [e.name for e in dist.entry_points if e.group == "console_scripts"]
print(json.dumps({"packages": sorted(tops), "scripts": sorted(scripts)}))
"""


def run(command: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode:
        pytest.fail(f"{command} exited {done.returncode}:\n{done.stdout[-2000:]}\n"
                    f"{done.stderr[-3000:]}")  # fmt: skip
    return done.stdout


@pytest.fixture(scope="module", params=["uv", "pip"])
def node(request, tmp_path_factory) -> dict:
    """The node's home (a scratch directory), its venv, and a login's environment there."""
    installer = request.param
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` sets UV to itself
    if not uv:
        pytest.fail("uv not found (neither UV nor PATH): run the tests with scripts/test")
    home = tmp_path_factory.mktemp("node")
    (home / "bin").mkdir()
    (home / "bin" / "uv").symlink_to(uv)
    # A login on the node: no PYTHONPATH, no virtualenv, no checkout; uv on PATH (installer uv).
    keep = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
            "SSL_CERT_FILE", "UV_SYSTEM_CERTS", "LANG")  # fmt: skip
    env = {
        name: value
        for name, value in os.environ.items()
        if name in keep or name.startswith("PIP_")  # the machine's index settings
    }
    env.update(HOME=str(home), PATH=f"{home / 'bin'}:/usr/local/bin:/usr/bin:/bin")
    cache = run([uv, "cache", "dir"], cwd=PROJECT_ROOT, env=dict(os.environ)).strip()
    locked = home / "locked.txt"
    # the pipeline's own dependencies only (no groups), at uv.lock's versions
    run([uv, "export", "--quiet", "--frozen", "--no-default-groups", "--no-emit-project",
         "--no-hashes", "--output-file", str(locked)],
        cwd=PROJECT_ROOT, env=dict(os.environ))  # fmt: skip
    (home / "src.tar.gz").write_bytes(project_archive())
    (home / "src").mkdir()
    run(["tar", "-xzf", str(home / "src.tar.gz"), "-C", str(home / "src")], cwd=home, env=env)
    venv = home / "venv"
    python = os.path.realpath(sys.executable)  # an interpreter, not this checkout's venv
    if installer == "uv":
        options = ["--cache-dir", cache, "--override", str(locked)]
    else:
        options = ["--constraint", str(locked)]
        # the caller's pip cache, as uv's above: the node's own HOME would start empty
        env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    for command in install_commands(installer, python, str(venv), str(home / "src"), options):
        run(["bash", "-c", command], cwd=home, env=env)
    return {"home": home, "venv": venv, "env": env}


def test_the_node_gets_the_pipeline_package_and_launch_task_only(node):
    found = json.loads(run([str(node["venv"] / "bin" / "python"), "-c", DISTRIBUTION],
                           cwd=node["home"], env=node["env"]))  # fmt: skip
    assert found == {"packages": ["pipeline"], "scripts": ["launch-task"]}


def test_neither_prefect_nor_the_orchestrators_packages_import_on_the_node(node):
    python = str(node["venv"] / "bin" / "python")
    found = json.loads(run([python, "-c", PROBE, *ABSENT, *PRESENT], cwd=node["home"],
                           env=node["env"]))  # fmt: skip
    assert {name: found[name] for name in ABSENT} == dict.fromkeys(ABSENT)
    site = str(node["venv"] / "lib")
    assert all(found[name] and found[name].startswith(site) for name in PRESENT), found


def test_launch_task_counts_the_events_of_upstreams_tracking_log(node):
    work = node["home"] / "run"
    (work / "logs").mkdir(parents=True)
    (work / "logs" / "tracking.log-20140730.gz").write_bytes(
        gzip.compress(TRACKING_LOG.read_bytes())
    )
    run([str(node["venv"] / "bin" / "launch-task"), "TotalEventsDailyTask", "--local-scheduler",
         "--interval", INTERVAL, "--output-root", "out/", "--source", '["logs/"]',
         "--pattern", json.dumps([r".*tracking.log-(?P<date>\d{8}).*\.gz"])],
        cwd=work, env=node["env"])  # fmt: skip
    per_day = collections.Counter(
        json.loads(line)["time"][:10] for line in TRACKING_LOG.read_text().splitlines()
    )
    assert (work / "out" / "part-00000").read_text().splitlines() == [
        f"{day}\t{count}" for day, count in sorted(per_day.items())
    ]
    assert (work / "out" / "_SUCCESS").exists()
