"""A service program the bed runs in the foreground as its child (corosync, haproxy, xinetd).

The program runs in its own session with its output in a file; :func:`wait_ready` polls until
the service answers (or the program exits, or time runs out: both raise, quoting the logs),
and :func:`stop` ends it with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def spawn(argv: Sequence[str], output: Path) -> subprocess.Popen:
    """Start `argv` with stdout and stderr appended to `output`."""
    with output.open("ab") as out:
        return subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_ready(
    process: subprocess.Popen,
    ready: Callable[[], bool],
    *,
    what: str,
    logs: Sequence[Path],
    timeout: float = 30,
    interval: float = 0.1,
) -> None:
    """Until `ready()` is true; RuntimeError if the program exits, TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited {process.returncode}{log_tail(logs)}")
        if ready():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what}: not ready after {timeout}s{log_tail(logs)}")


def stop(process: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL after 20 s; nothing if it is not running."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tail(logs: Sequence[Path], chars: int = 2000) -> str:
    """The end of each log that exists, for an error message."""
    return "".join(
        f"\n--- {log}\n{log.read_text(errors='replace')[-chars:]}" for log in logs if log.is_file()
    )
