"""A real Prefect server (`prefect server start`) on 127.0.0.1, and workers started against it.

`PrefectServer` runs `python -m prefect server start` in its own process group, with its own
PREFECT_HOME (SQLite database `home/prefect.db`, profiles, local result storage) under
`base_dir`, on a free port, analytics off, the UI off unless `ui=True` (then served at `url`).
`start()` returns once `GET /api/health` answers (about 10 s on the 2-core machine: mostly the
database migrations); `stop()` terminates the server's process group.

Everything pointed at the server uses `env()`: the current environment without any inherited
`PREFECT_*` variable (a developer's PREFECT_API_URL or profile never leaks in), plus
PREFECT_HOME and PREFECT_API_URL for this server. So CLI commands (`prefect(...)`), workers
(`start_worker(...)`) and the flow runs those workers start write nothing outside `base_dir`.

The scheduler service is off by default (`scheduler=False`): deployments keep their schedules,
but the server creates no scheduled runs, so a test that triggers runs itself never races a
scheduled one (e.g. a daily 02:30 run picked up when the test happens to run at 02:29).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.bed.ports import free_port

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0


def prefect_argv(*args: str) -> list[str]:
    """The Prefect CLI of this interpreter (the project's venv), independent of PATH."""
    return [sys.executable, "-m", "prefect", *args]


def tail(path: Path, lines: int = 80) -> str:
    """The last `lines` lines of a log file (or a note that it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def terminate_process_tree(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process group of `process` and of each of its descendants, then SIGKILL.

    Descendants are collected first: Prefect starts each flow run in a new session
    (`start_new_session=True`), so killing the worker's group alone would leave flow runs behind.
    """
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    own_group = os.getpgrp()
    groups = set()
    for pid in [process.pid, *(child.pid for child in descendants)]:
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    groups.discard(own_group)  # never signal pytest's own group

    def signal_all(signum: int) -> None:
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signum)
        for child in descendants:  # in case one left its group without a session of its own
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(signum)

    signal_all(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        signal_all(signal.SIGKILL)
        process.wait(timeout=timeout)
    _, alive = psutil.wait_procs(descendants, timeout=timeout)
    if alive:
        signal_all(signal.SIGKILL)
        psutil.wait_procs(alive, timeout=timeout)


@dataclass
class PrefectWorker:
    """A `prefect worker start` subprocess; its output (and its flow runs') goes to `log_path`."""

    process: subprocess.Popen
    log_path: Path

    def output(self, lines: int = 200) -> str:
        return tail(self.log_path, lines)

    def stop(self) -> None:
        terminate_process_tree(self.process)


@dataclass
class PrefectServer:
    """`prefect server start` on 127.0.0.1 with SQLite in `base_dir/home`; see module docstring."""

    base_dir: Path
    host: str = HOST
    port: int = 0
    scheduler: bool = False
    ui: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def home(self) -> Path:
        return self.base_dir / "home"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def env(self, **overrides: str) -> dict[str, str]:
        """Environment for any process that talks to this server (CLI, worker, flow runs)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_CLI_PROMPT="false",
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def _server_env(self) -> dict[str, str]:
        env = self.env(
            PREFECT_SERVER_UI_ENABLED=str(self.ui).lower(),
            PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED=str(self.scheduler).lower(),
        )
        del env["PREFECT_API_URL"]  # the server itself needs none
        if self.ui:  # the UI's pages call the API at this address (default: port 4200)
            env["PREFECT_SERVER_UI_API_URL"] = self.api_url
        return env

    def start(self, timeout: float = STARTUP_TIMEOUT) -> PrefectServer:
        """Start the server and wait for `GET /api/health`; retries on a port taken meanwhile."""
        self.home.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            self.port = free_port(self.host)
            self._spawn()
            if self._wait_healthy(timeout):
                return self
            port_taken = "already in use" in tail(self.log_path)
            self.stop()
            if not port_taken:
                break
        raise RuntimeError(
            f"prefect server on {self.url} did not become healthy within {timeout:.0f} s "
            f"(exit status {self.process.returncode if self.process else None}); "
            f"{self.log_path}:\n{tail(self.log_path)}"
        )

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                prefect_argv("server", "start", "--host", self.host, "--port", str(self.port)),
                cwd=self.base_dir,
                env=self._server_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self.healthy():
                return True
            time.sleep(0.2)
        return False

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        if self.process is not None:
            terminate_process_tree(self.process)
            self.process = None

    # -- talking to the server -----------------------------------------------------------------

    def prefect(
        self, *args: str, cwd: Path | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess:
        """Run `prefect ARGS` against this server; on failure, raise with its whole output."""
        result = subprocess.run(
            prefect_argv(*args),
            cwd=cwd or self.base_dir,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"`prefect {' '.join(args)}` (cwd {cwd}) exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    @contextlib.contextmanager
    def client(self):
        """A `SyncPrefectClient` for this server (even inside a prefect_test_harness)."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with (
            temporary_settings({PREFECT_API_URL: self.api_url}),
            get_client(sync_client=True) as client,
        ):
            yield client

    @contextlib.contextmanager
    def start_worker(
        self,
        pool: str,
        cwd: Path,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        query_seconds: float = 1,
    ) -> Iterator[PrefectWorker]:
        """`prefect worker start --pool POOL` in `cwd`; stopped (with its flow runs) on exit.

        It polls every `query_seconds` (default 10 s in Prefect) so runs start promptly.
        """
        worker_env = self.env(PREFECT_WORKER_QUERY_SECONDS=str(query_seconds), **(env or {}))
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                prefect_argv("worker", "start", "--pool", pool, "--name", f"{pool}-test-worker"),
                cwd=cwd,
                env=worker_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = PrefectWorker(process=process, log_path=log_path)
        try:
            yield worker
        finally:
            worker.stop()
