"""Running the real launch-task command line in a scratch directory, on either engine.

A module that reads logs declares ``pytestmark = pytest.mark.usefixtures("engine")``: each of
its tests then runs twice, ``[local]`` and ``[spark]``. On Spark, the workspace's ``luigi.cfg``
(read from the working directory by the config chain, under any ``override.cfg`` a test
writes) says ``[map-reduce] engine = spark``, and launch-task's ``main`` runs in the test
process: there the engine finds the one SparkSession of the test session (``local[2]``)
already running, instead of a JVM starting for each launch (8 s or more apiece).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GZ_PATTERN = r".*tracking.log-(?P<date>\d{8}).*\.gz"
ENGINES = ("local", "spark")
#: The test session's Spark settings, as a site would write them in its [spark] section.
SPARK_SETTINGS = {"master": "local[2]", "conf": "spark.ui.enabled=false"}


@dataclass
class LaunchResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Workspace:
    """A directory where logs are written and launch-task runs, as an operator would."""

    def __init__(self, root: Path, engine: str = "local"):
        self.root = root
        self.logs = root / "logs"
        self.engine = engine
        if engine == "spark":
            settings = "".join(f"{key} = {value}\n" for key, value in SPARK_SETTINGS.items())
            # Luigi's lock is per command line, and in-process launches all have pytest's.
            (root / "luigi.cfg").write_text(
                f"[map-reduce]\nengine = spark\n[spark]\n{settings}[core]\nno_lock = true\n"
            )

    def write_log(self, name: str, events: list, compress: bool = True) -> Path:
        """Write events (dicts become JSON, bytes/str go in as they are) as one log file."""
        lines = []
        for event in events:
            if isinstance(event, dict):
                lines.append(json.dumps(event).encode())
            elif isinstance(event, str):
                lines.append(event.encode())
            else:
                lines.append(event)
        data = b"\n".join(lines) + b"\n"
        path = self.logs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data) if compress else data)
        return path

    def launch(self, *args: str, env: dict | None = None) -> LaunchResult:
        if self.engine == "spark":
            return launch_in_this_process(self.root, list(args), env or {})
        environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        environment.pop("LUIGI_CONFIG_PATH", None)
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.launch", *args],
            cwd=self.root,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return LaunchResult(proc.returncode, proc.stdout, proc.stderr)

    def source_args(self, pattern: str = GZ_PATTERN) -> list[str]:
        return ["--source", json.dumps([str(self.logs) + "/"]), "--pattern", json.dumps([pattern])]


def launch_in_this_process(cwd: Path, args: list[str], env: dict) -> LaunchResult:
    """``launch-task args`` as a fresh process would run it, in this one: in ``cwd``, with
    ``env`` added, output captured, and what launch-task makes process-wide put back after."""
    from luigi.configuration import LuigiConfigParser
    from luigi.task_register import Register

    from pipeline import config, launch
    from pipeline.core import fs

    out, err = io.StringIO(), io.StringIO()
    process_parser, config_paths = config._router().process_parser, LuigiConfigParser._config_paths
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        patch.delenv("LUIGI_CONFIG_PATH", raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        patch.setattr(fs, "_s3_client", None)  # a new process makes its client from env
        Register.clear_instance_cache()
        try:
            with logs_into(err), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = launch.main(args)
        finally:
            Register.clear_instance_cache()
            config._router().process_parser = process_parser
            LuigiConfigParser._config_paths = config_paths
    return LaunchResult(code, out.getvalue(), err.getvalue())


LOGGERS = ("", "luigi", "luigi-interface", "pipeline")


@contextlib.contextmanager
def logs_into(stream) -> Iterator[None]:
    """The stream handlers of launch-task's and Luigi's loggers write into ``stream``; those
    that launch-task adds meanwhile go back to the real stderr afterwards."""

    def handlers():
        return [
            h
            for name in LOGGERS
            for h in logging.getLogger(name).handlers
            if type(h) is logging.StreamHandler
        ]

    before = {handler: handler.stream for handler in handlers()}
    for handler in before:
        handler.setStream(stream)
    try:
        yield
    finally:
        for handler in handlers():
            handler.setStream(before.get(handler, sys.stderr))


@pytest.fixture(scope="session")
def spark_session(moto_server, bed_startup_times):
    """The test session's one SparkSession (``local[2]``), started through the engine itself.

    It starts with moto's AWS variables in the environment, which the JVM and the executors'
    Python workers inherit: the executors' standard AWS chain reaches the moto server, as a
    cluster's would reach S3. Stopped at the end of the session.
    """
    from pipeline.core import spark_engine

    settings = spark_engine.SparkSettings.parse(SPARK_SETTINGS)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in moto_server.env().items():
            patch.setenv(name, value)
        started = time.perf_counter()
        spark = spark_engine.session(settings)
        seconds = time.perf_counter() - started
    bed_startup_times.record("spark_session (session)", seconds)
    print(f"\nSpark session (local[2]) started in {seconds:.1f}s", file=sys.stderr)
    yield spark
    spark_engine.stop()


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    """``local`` or ``spark``: the engine of the test's launches (see the module docstring)."""
    if request.param == "spark":
        request.getfixturevalue("spark_session")
    return request.param


@pytest.fixture
def workspace(request, tmp_path) -> Workspace:
    engine = request.getfixturevalue("engine") if "engine" in request.fixturenames else "local"
    return Workspace(tmp_path, engine)
