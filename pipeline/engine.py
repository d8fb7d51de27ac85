"""The local engine: map a function over input files on every core, streaming each file.

Each file is read by one worker process in blocks (memory does not grow with file size); the
per-file results (small: counts, or the few matching events) come back to the caller as files
finish, largest files first so the cores stay busy. Progress is reported per finished file.

A file that fails stops the whole map with an error naming it: callers write their outputs only
after every file succeeded, so a failure leaves nothing half-done.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from pipeline.selection import SelectedFile

log = logging.getLogger(__name__)

ENGINES = ("local", "hadoop", "emu")
LOG_EVERY_SECONDS = 5.0


@dataclass
class FileResult:
    """What a mapper returns for one file."""

    url: str
    lines: int
    value: Any
    discards: dict[str, int] = field(default_factory=dict)


@dataclass
class Progress:
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    lines: int
    elapsed: float

    @property
    def fraction(self) -> float:
        if self.bytes_total:
            return self.bytes_done / self.bytes_total
        return self.files_done / self.files_total if self.files_total else 1.0

    def describe(self) -> str:
        rate = self.lines / self.elapsed if self.elapsed > 0 else 0.0
        return (
            f"{self.files_done}/{self.files_total} files, {self.fraction:.0%} of input, "
            f"{self.lines:,} lines, {rate:,.0f} lines/s"
        )


ProgressCallback = Callable[[Progress], None]

# Extra progress listeners for the whole process (the Prefect flow registers one).
progress_listeners: list[ProgressCallback] = []


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _context():
    # forkserver: workers fork from a clean server process, not from a caller that may hold
    # threads and locks (Prefect, luigi's scheduler), yet start fast.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["pipeline.extraction"])
    return ctx


def _forget_inherited_fork_server() -> None:
    # A forked child (luigi --workers N) cannot use its parent's fork server: that server is
    # not the child's child, so multiprocessing's liveness check fails. It starts its own.
    from multiprocessing import forkserver

    server = forkserver._forkserver
    if server._forkserver_alive_fd is not None:
        with contextlib.suppress(OSError):
            os.close(server._forkserver_alive_fd)
    server._forkserver_pid = server._forkserver_address = server._forkserver_alive_fd = None


def warm_up() -> None:
    """Start the fork server in the background, so it is ready when the first files come.

    Starting it imports the extraction code in a fresh interpreter (about 0.1 s); launch-task
    calls this first thing, to overlap that with its own start-up.
    """
    import threading
    from multiprocessing import forkserver

    os.register_at_fork(after_in_child=_forget_inherited_fork_server)

    def start() -> None:
        _context()
        try:
            forkserver.ensure_running()
        except Exception:  # the pool will try again and report any real problem
            log.debug("fork server warm-up failed", exc_info=True)

    threading.Thread(target=start, name="forkserver-warm-up", daemon=True).start()


def map_files(
    mapper: Callable[[str], FileResult],
    files: list[SelectedFile],
    processes: int | None = None,
    progress: ProgressCallback | None = None,
) -> Iterator[FileResult]:
    """Run ``mapper(url)`` for each file, in parallel, yielding results as they finish."""
    processes = processes or available_cores()
    ordered = sorted(files, key=lambda f: f.size, reverse=True)
    total_bytes = sum(f.size for f in files)
    started = time.monotonic()
    done_files = done_bytes = done_lines = 0
    listeners = [cb for cb in (progress, *progress_listeners) if cb is not None]
    last_logged = started

    def report(result: FileResult, size: int) -> None:
        nonlocal done_files, done_bytes, done_lines, last_logged
        done_files += 1
        done_bytes += size
        done_lines += result.lines
        state = Progress(
            done_files, len(files), done_bytes, total_bytes, done_lines, time.monotonic() - started
        )
        if done_files == len(files) or state.elapsed - (last_logged - started) >= LOG_EVERY_SECONDS:
            last_logged = time.monotonic()
            log.info("progress: %s", state.describe())
        for listener in listeners:
            listener(state)

    if processes <= 1 or len(ordered) <= 1:
        for selected in ordered:
            result = mapper(selected.url)
            report(result, selected.size)
            yield result
        return

    workers = min(processes, len(ordered))
    with ProcessPoolExecutor(max_workers=workers, mp_context=_context()) as pool:
        pending: dict[Future, SelectedFile] = {}
        queue = list(ordered)
        # Keep at most two files per worker in flight so a failure stops the run quickly.
        while queue or pending:
            while queue and len(pending) < 2 * workers:
                selected = queue.pop(0)
                pending[pool.submit(mapper, selected.url)] = selected
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                selected = pending.pop(future)
                try:
                    result = future.result()
                except BaseException:
                    for other in pending:
                        other.cancel()
                    raise
                report(result, selected.size)
                yield result
