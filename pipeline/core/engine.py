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

from pipeline.core.selection import SelectedFile

log = logging.getLogger(__name__)

# [map-reduce] engine values: the first three run here, spark in pipeline.core.spark_engine.
ENGINES = ("local", "hadoop", "emu", "spark")
LOG_EVERY_SECONDS = 5.0
PROGRESS_EVERY_SECONDS = 2.0


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
        rate = self.bytes_done / self.elapsed / 1e6 if self.elapsed > 0 else 0.0
        return (
            f"{self.files_done}/{self.files_total} files, {self.fraction:.0%} of input "
            f"({rate:,.1f} MB/s compressed), {self.lines:,} lines in finished files"
        )


ProgressCallback = Callable[[Progress], None]


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _context():
    # forkserver: workers fork from a clean server process, not from a caller that may hold
    # threads and locks (Prefect, luigi's scheduler), yet start fast.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["pipeline.core.extraction"])
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


# In worker processes: the parent's array of compressed bytes read so far, one slot per file.
_positions = None


def _init_worker(positions) -> None:
    global _positions
    _positions = positions


@dataclass(frozen=True)
class FilePosition:
    """Where a mapper reports how far into its file it has read (picklable, so it can travel
    to a worker; it writes into the array the worker received when it started)."""

    index: int

    def __call__(self, position: int) -> None:
        if _positions is not None:
            _positions[self.index] = position


class _Tracker:
    """Turns finished files and read positions into Progress for logs and listeners."""

    def __init__(self, files: list[SelectedFile], listeners: list[ProgressCallback], positions):
        self.files, self.listeners, self.positions = files, listeners, positions
        self.total = sum(f.size for f in files)
        self.started = self.last_tick = self.last_log = time.monotonic()
        self.done: set[int] = set()
        self.done_bytes = self.lines = 0

    def file_done(self, index: int, result: FileResult) -> None:
        self.done.add(index)
        self.done_bytes += self.files[index].size
        self.lines += result.lines
        self.tick(force=True)

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_tick < PROGRESS_EVERY_SECONDS:
            return
        self.last_tick = now
        partial = sum(
            min(self.positions[i], self.files[i].size)
            for i in range(len(self.files))
            if i not in self.done
        )
        state = Progress(len(self.done), len(self.files), self.done_bytes + partial, self.total,
                         self.lines, now - self.started)  # fmt: skip
        if len(self.done) == len(self.files) or now - self.last_log >= LOG_EVERY_SECONDS:
            self.last_log = now
            log.info("progress: %s", state.describe())
        for listener in self.listeners:
            listener(state)


def map_files(
    mapper: Callable[[str, FilePosition], FileResult],
    files: list[SelectedFile],
    processes: int | None = None,
    progress: ProgressCallback | None = None,
) -> Iterator[FileResult]:
    """Run ``mapper(url, position)`` for each file, in parallel, yielding results as they finish.

    ``position`` is a callable the mapper may call with the number of (compressed) bytes it has
    read, so progress shows inside long files too.
    """
    processes = processes or available_cores()
    order = sorted(range(len(files)), key=lambda i: files[i].size, reverse=True)
    listeners = [progress] if progress is not None else []

    if processes <= 1 or len(files) <= 1:
        positions = [0] * len(files)
        tracker = _Tracker(files, listeners, positions)

        def reporter(index: int):
            def on_position(position: int) -> None:
                positions[index] = position
                tracker.tick()

            return on_position

        for index in order:
            result = mapper(files[index].url, reporter(index))
            tracker.file_done(index, result)
            yield result
        return

    ctx = _context()
    positions = ctx.Array("q", len(files), lock=False)  # 8-byte writes: no lock needed
    tracker = _Tracker(files, listeners, positions)
    workers = min(processes, len(files))
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(positions,)) as pool:  # fmt: skip
        pending: dict[Future, int] = {}
        queue = list(order)
        # Keep at most two files per worker in flight so a failure stops the run quickly.
        while queue or pending:
            while queue and len(pending) < 2 * workers:
                index = queue.pop(0)
                pending[pool.submit(mapper, files[index].url, FilePosition(index))] = index
            finished, _ = wait(pending, timeout=PROGRESS_EVERY_SECONDS, return_when=FIRST_COMPLETED)
            if not finished:
                tracker.tick()
            for future in finished:
                index = pending.pop(future)
                try:
                    result = future.result()
                except BaseException:
                    for other in pending:
                        other.cancel()
                    raise
                tracker.file_done(index, result)
                yield result
