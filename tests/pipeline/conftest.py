"""Running the real launch-task command line in a scratch directory."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GZ_PATTERN = r".*tracking.log-(?P<date>\d{8}).*\.gz"


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

    def __init__(self, root: Path):
        self.root = root
        self.logs = root / "logs"

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


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return Workspace(tmp_path)
