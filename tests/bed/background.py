"""`--background` for the bed's and the fake's command lines, and the pid file saying "ready".

A service run by hand writes `DIR/pid` once it serves and removes it when it has stopped, so
`kill $(cat DIR/pid)` stops it and a missing file means it is not running. With
`--background` the command starts itself again detached (its own session, output in
`DIR/output.log`), waits for that pid file, prints what the service printed and returns.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

READY_TIMEOUT_SECONDS = 120


def pid_file(directory: Path) -> Path:
    return directory / "pid"


def mark_ready(directory: Path | None) -> None:
    """Write this process's pid into `directory/pid`: the service serves."""
    if directory is not None:
        pid_file(directory).write_text(f"{os.getpid()}\n")


def clear_ready(directory: Path | None) -> None:
    """Remove `directory/pid`, once the service has stopped."""
    if directory is not None:
        pid_file(directory).unlink(missing_ok=True)


def start_in_background(module: str, argv: list[str], directory: Path) -> int:
    """Run `python -m module *argv` detached; return 0 once it is ready, 1 if it failed."""
    directory.mkdir(parents=True, exist_ok=True)
    ready = pid_file(directory)
    if ready.exists():
        print(f"{directory} is in use: {ready} names pid {ready.read_text().strip()} "
              f"(stop it, or remove a stale {ready})", file=sys.stderr)  # fmt: skip
        return 1
    log = directory / "output.log"
    with log.open("wb") as output:
        child = subprocess.Popen(
            [sys.executable, "-m", module, *argv], stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not (ready.exists() and ready.read_text().strip() == str(child.pid)):
        if child.poll() is not None or time.monotonic() > deadline:
            if child.poll() is None:
                child.terminate()
                child.wait(30)
            print(f"{module} did not start (exit status {child.returncode}); its output:\n"
                  f"{log.read_text(errors='replace')}", file=sys.stderr)  # fmt: skip
            return 1
        time.sleep(0.1)
    print(log.read_text(errors="replace"), end="")
    print(f"running in the background as pid {child.pid}; stop it with: kill $(cat {ready})")
    return 0


def background_argv(argv: list[str]) -> list[str]:
    """The command line without `--background` (what the detached process runs)."""
    return [arg for arg in argv if arg != "--background"]
