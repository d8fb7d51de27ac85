"""remote.wheel: the pipeline distribution as a wheel that an installer accepts, holding the
pipeline alone with pyproject.toml's metadata, whose `launch-task` runs a task for real."""

from __future__ import annotations

import email.parser
import io
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from remote.setup import PROJECT_ROOT
from remote.wheel import pipeline_wheel
from tests.tracking_log import LOG_NAME, TOTAL_EVENTS_ARGS, TRACKING_LOG, expected_daily_counts


def test_wheel_holds_the_pipeline_alone_with_the_projects_metadata():
    wheel = pipeline_wheel()
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    assert wheel.filename == f"edx_ops_flows-{project['version']}-py3-none-any.whl"
    names = zipfile.ZipFile(io.BytesIO(wheel.data)).namelist()
    assert {name.split("/")[0] for name in names} == {
        "pipeline",
        f"edx_ops_flows-{project['version']}.dist-info",
    }
    assert "pipeline/launch.py" in names and "pipeline/defaults.cfg" in names
    assert not [name for name in names if name.endswith((".c", ".pyc"))]
    archive = zipfile.ZipFile(io.BytesIO(wheel.data))
    info = f"edx_ops_flows-{project['version']}.dist-info"
    metadata = email.parser.Parser().parsestr(archive.read(f"{info}/METADATA").decode())
    required = metadata.get_all("Requires-Dist")
    assert [r for r in required if "extra ==" not in r] == project["dependencies"]
    assert metadata["Requires-Python"] == project["requires-python"]
    for extra, dependencies in project.get("optional-dependencies", {}).items():
        assert extra in metadata.get_all("Provides-Extra")
        assert {f'{d}; extra == "{extra}"' for d in dependencies} <= set(required)
    assert "launch-task = pipeline.launch:main" in archive.read(f"{info}/entry_points.txt").decode()
    assert pipeline_wheel().data == wheel.data  # reproducible


@pytest.mark.slow
def test_an_installer_takes_the_wheel_and_its_launch_task_counts_events(tmp_path):
    wheel = pipeline_wheel()
    path = tmp_path / wheel.filename
    path.write_bytes(wheel.data)
    target = tmp_path / "site"
    uv = shutil.which("uv")
    assert uv, "uv is on PATH where the tests run (scripts/test installs it)"
    # the dependencies are this virtualenv's: the install checks the wheel, not the index
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--python",
            sys.executable,
            "--target",
            str(target),
            str(path),
        ],
        check=True,
    )
    assert (target / "bin" / "launch-task").is_file()
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    shutil.copy(TRACKING_LOG, work / "logs" / LOG_NAME)
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [str(target / "bin" / "launch-task"), *TOTAL_EVENTS_ARGS],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (work / "out" / "part-00000").read_text().splitlines() == expected_daily_counts()
    # the installed copy ran, not the checkout's
    probe = subprocess.run(
        [sys.executable, "-c", "import pipeline; print(pipeline.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.startswith(str(target))
