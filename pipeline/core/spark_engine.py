"""The Spark engine: the same per-file mappers as the local engine, run on Spark executors.

``[map-reduce] engine = spark`` sends each input file to an executor as a partition of its own
(largest files first, so the long ones start early) and calls the same Luigi-free mapper there
(:func:`pipeline.core.extraction.count_file`, ``extract_file``). The per-file results come back
to the driver, where the tasks merge them exactly as they merge the local engine's: the outputs
are byte-for-byte the same.

The contract is :func:`pipeline.core.engine.map_files`'s:

- progress per finished file goes to the same callback, in the caller's thread: executors add
  each finished file to an accumulator, which Spark merges on the driver as tasks end, and the
  caller's thread polls it while the job runs in another thread;
- a file that fails stops the map with its error (the mapper's own exception, which names the
  file): the executor reports it through the accumulator, the driver cancels the job's other
  tasks, and nothing has been written, since callers write only after every file succeeded;
- discards per reason travel inside each file's result, as with the local engine.

The SparkSession is created on first use with the ``[spark]`` settings (:class:`SparkSettings`)
and reused by every later map of the process; it is stopped when the process exits. pyspark is
an optional extra of the pipeline (``pip install 'edx-ops-flows[spark]'``) and is imported only
here, only when a map runs: nothing else of the pipeline needs it.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import functools
import logging
import os
import pickle
import re
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from pipeline.core import extraction
from pipeline.core.engine import FileResult, ProgressCallback, _Tracker
from pipeline.core.selection import SelectedFile
from pipeline.errors import InvalidInput, OperationFailed, describe

log = logging.getLogger(__name__)

#: The ``[spark]`` keys read (upstream's names, plus the master).
SETTING_KEYS = ("master", "driver-memory", "executor-memory", "executor-cores", "conf")
DEFAULT_MASTER = "local[*]"
APP_NAME = "edx-analytics-pipeline"
POLL_SECONDS = 0.25
INSTALL_HINT = (
    "install the pipeline with its spark extra: pip install 'edx-ops-flows[spark]' "
    "(in a checkout: uv sync --extra spark)"
)
_SIZE = re.compile(r"^\d+[kmgtp]?b?$", re.IGNORECASE)


class SparkUnavailable(InvalidInput):
    """``engine = spark`` was asked for where pyspark is not installed."""


class SparkStartFailed(OperationFailed):
    """Spark did not start (no Java, a master that cannot be reached, bad settings)."""


class SparkFileFailed(OperationFailed):
    """A file could not be read on an executor; the message names it."""


@dataclass(frozen=True)
class SparkSettings:
    """The ``[spark]`` section: where Spark runs and with which resources.

    Attributes:
        master: ``local[*]`` (every core of this machine), ``local[2]``, ``yarn`` (EMR), ...
        driver_memory: ``spark.driver.memory``, e.g. ``2g``.
        executor_memory: ``spark.executor.memory``.
        executor_cores: ``spark.executor.cores``.
        conf: further Spark settings, from Luigi's ``key=value|key=value`` form.
    """

    master: str = DEFAULT_MASTER
    driver_memory: str | None = None
    executor_memory: str | None = None
    executor_cores: int | None = None
    conf: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, options: Mapping[str, str | None]) -> SparkSettings:
        """Settings from ``[spark]`` values (missing or empty: the default).

        Raises:
            InvalidInput: naming the key: a memory size that is not one (``2g``, ``512m``),
                cores that are not a positive integer, a ``conf`` pair without ``=``, or with
                a key that is not a Spark setting (``spark.``...).
        """

        def value(key: str) -> str | None:
            raw = options.get(key)
            return raw.strip() if raw and raw.strip() else None

        for key in ("driver-memory", "executor-memory"):
            size = value(key)
            if size is not None and not _SIZE.match(size):
                raise InvalidInput(f"[spark] {key} {size!r}: expected a size such as 2g or 512m")
        cores = value("executor-cores")
        if cores is not None and not (cores.isdigit() and int(cores) > 0):
            raise InvalidInput(f"[spark] executor-cores {cores!r}: expected a positive integer")
        return cls(
            master=value("master") or DEFAULT_MASTER,
            driver_memory=value("driver-memory"),
            executor_memory=value("executor-memory"),
            executor_cores=int(cores) if cores else None,
            conf=parse_conf(value("conf") or ""),
        )

    def spark_conf(self) -> dict[str, str]:
        """Every Spark setting a session gets from these settings, besides the master.

        The executors' Python is the driver's unless ``spark.pyspark.python`` (or
        ``$PYSPARK_PYTHON``) says otherwise: on a cluster the bootstrap installs the pipeline
        into the same path on every node. The dedicated keys win over the same setting in
        ``conf``, as spark-submit's options win over its ``--conf``.
        """
        values = {"spark.app.name": APP_NAME, "spark.ui.showConsoleProgress": "false"}
        if not os.environ.get("PYSPARK_PYTHON"):
            values["spark.pyspark.python"] = sys.executable
        values.update(self.conf)
        for key, setting in (
            ("spark.driver.memory", self.driver_memory),
            ("spark.executor.memory", self.executor_memory),
            ("spark.executor.cores", self.executor_cores),
        ):
            if setting is not None:
                values[key] = str(setting)
        return values


def parse_conf(text: str) -> tuple[tuple[str, str], ...]:
    """``key=value|key=value`` (Luigi's format for ``[spark] conf``) as pairs, in order."""
    pairs = []
    for item in text.split("|"):
        item = item.strip()
        if not item:
            continue
        key, sep, setting = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput(
                f"[spark] conf: {item!r} is not key=value (pairs are separated by '|', "
                "e.g. spark.eventLog.enabled=true|spark.eventLog.dir=s3://bucket/logs)"
            )
        if not key.startswith("spark."):
            raise InvalidInput(f"[spark] conf: {key!r} is not a Spark setting (spark.*)")
        pairs.append((key, setting.strip()))
    return tuple(pairs)


# -- the session -------------------------------------------------------------------------------


@dataclass
class _Session:
    spark: object  # pyspark.sql.SparkSession
    settings: SparkSettings
    startup_seconds: float


_current: _Session | None = None
_session_lock = threading.Lock()


def session(settings: SparkSettings):
    """The process's SparkSession, started with ``settings`` on first use.

    A later call with other settings gets the same session (Spark cannot change a running
    session's master or memory), with a warning.

    Raises:
        SparkUnavailable: pyspark is not installed.
        SparkStartFailed: Spark did not start (its reason in the message).
    """
    global _current
    with _session_lock:
        if _current is not None and _current.spark.sparkContext._jsc is not None:
            if _current.settings != settings:
                log.warning(
                    "Spark session already running with other [spark] settings (master %s); "
                    "they stay in effect until the process ends",
                    _current.settings.master,
                )
            return _current.spark
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise SparkUnavailable(
                f"[map-reduce] engine = spark needs pyspark, which this Python "
                f"({sys.executable}) does not have ({exc}): {INSTALL_HINT}"
            ) from exc
        started = time.monotonic()
        values = settings.spark_conf()
        # pyspark takes the executors' Python from the driver's environment, not the conf.
        os.environ.setdefault("PYSPARK_PYTHON", values.get("spark.pyspark.python", sys.executable))
        builder = SparkSession.builder.master(settings.master)
        for key, setting in values.items():
            builder = builder.config(key, setting)
        try:
            spark = builder.getOrCreate()
        except Exception as exc:
            raise SparkStartFailed(
                f"Spark (master {settings.master}) did not start: {describe(exc)}; "
                "it needs Java 17 or later (java on PATH, or JAVA_HOME) and a master it can "
                "reach ([spark] master)"
            ) from exc
        _current = _Session(spark, settings, time.monotonic() - started)
        atexit.register(_stop, spark)
        log.info(
            "Spark session started in %.1fs (master %s, Spark %s)",
            _current.startup_seconds, settings.master, spark.version,
        )  # fmt: skip
        return spark


def startup_seconds() -> float | None:
    """How long the process's session took to start, once there is one."""
    return _current.startup_seconds if _current is not None else None


def stop() -> None:
    """Stop the process's session, if one runs (also done when the process exits)."""
    if _current is not None:
        _stop(_current.spark)


def _stop(spark) -> None:
    global _current
    try:
        spark.stop()
    except Exception:  # the JVM may already be gone at exit
        log.debug("stopping Spark failed", exc_info=True)
    if _current is not None and _current.spark is spark:
        _current = None


# -- what runs on the executors ----------------------------------------------------------------

DONE, FAILED = "done", "failed"


class _ListParam:
    """Accumulator parameter: entries appended in the order tasks finish (driver side).

    Duck-typed (``zero``, ``addInPlace``) so that this module imports without pyspark.
    """

    def zero(self, value):
        return []

    def addInPlace(self, value1, value2):  # noqa: N802 - pyspark's name
        value1.extend(value2)
        return value1


@dataclass(frozen=True)
class FastPath:
    """Whether an executor had the C fast path, and why not."""

    host: str
    python: str
    reason: str | None  # None: in use


def fast_path_here() -> FastPath:
    """This process's state of the C fast path (``pipeline._fastscan``)."""
    from pipeline.core import events

    python = ".".join(map(str, sys.version_info[:3]))
    reason = None
    if events._count_dates_c is None:
        if os.environ.get("PIPELINE_PURE_PYTHON"):
            reason = "PIPELINE_PURE_PYTHON is set"
        else:
            try:
                import pipeline._fastscan  # noqa: F401
            except ImportError as exc:
                reason = f"pipeline._fastscan is not importable ({exc})"
            else:  # pragma: no cover - events saw it missing, now it is there
                reason = "pipeline._fastscan was not loaded"
    return FastPath(socket.gethostname(), python, reason)


def _portable_error(url: str, exc: BaseException) -> bytes:
    """The mapper's exception, pickled, if it survives the trip; else one naming the file."""
    try:
        payload = pickle.dumps(exc)
        pickle.loads(payload)
        return payload
    except Exception:
        return pickle.dumps(SparkFileFailed(f"{url}: {describe(exc)}"))


def _read_partition(mapper, finished, check_fast_path: bool, items) -> Iterator[tuple]:
    """Executor side: read the partition's file(s), each reported to the accumulator as it
    ends (progress, early failure) and returned as a row (the result, or the failure)."""
    for index, url in items:
        try:
            result = mapper(url, None)
        except Exception as exc:
            failure = (_portable_error(url, exc), traceback.format_exc(), socket.gethostname())
            finished.add([(FAILED, index, failure)])
            yield index, FAILED, failure
            return
        finished.add([(DONE, index, result.lines)])
        yield index, DONE, (result, fast_path_here() if check_fast_path else None)


# -- the driver --------------------------------------------------------------------------------


def _uses_fast_path(mapper) -> bool:
    function = mapper.func if isinstance(mapper, functools.partial) else mapper
    return function is extraction.count_file


def map_files(
    mapper: Callable[..., FileResult],
    files: list[SelectedFile],
    settings: SparkSettings,
    progress: ProgressCallback | None = None,
    warn: Callable[[str], None] | None = None,
) -> Iterator[FileResult]:
    """Run ``mapper(url, None)`` for each file on Spark; yield the results (largest file first)
    once every file was read.

    ``warn`` receives what the run's summary should say (executors without the C fast path).

    Raises:
        SparkUnavailable, SparkStartFailed: see :func:`session`.
        the mapper's exception for the first file that failed (it names the file), or
        SparkFileFailed naming the file when Spark itself lost the task.
    """
    if not files:
        return
    spark = session(settings)
    sc = spark.sparkContext
    order = sorted(range(len(files)), key=lambda i: files[i].size, reverse=True)
    group = f"pipeline-{uuid.uuid4().hex[:12]}"  # the job's, to cancel it alone
    finished = sc.accumulator([], _ListParam())
    check_fast_path = _uses_fast_path(mapper)
    rdd = sc.parallelize([(i, files[i].url) for i in order], len(order)).mapPartitions(
        functools.partial(_read_partition, mapper, finished, check_fast_path)
    )
    tracker = _Tracker(files, [progress] if progress is not None else [], [0] * len(files))

    def run():  # in a thread of its own, while the caller's thread polls the accumulator
        sc.setJobGroup(group, f"{len(files)} tracking-log files", interruptOnCancel=True)
        return rdd.collect()

    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="spark-map")
    future = pool.submit(run)
    reported: set[int] = set()
    try:
        rows = _wait(future, finished, files, order, tracker, reported)
        if rows is None:  # a file failed: the others need not finish
            sc.cancelJobGroup(group)
            concurrent.futures.wait([future])
            failed = next(e for e in finished.value if e[0] == FAILED)
            raise _file_error(files, failed[1], failed[2])
    finally:
        if not future.done():
            sc.cancelJobGroup(group)
        pool.shutdown(wait=True)
    # The rows are the truth; the accumulator only told progress early (a process forked
    # from the one that started Spark never sees its updates).
    by_index = {index: (kind, value) for index, kind, value in rows}
    for index, (kind, value) in by_index.items():
        if kind == FAILED:
            raise _file_error(files, index, value)
    missing = [files[i].url for i in order if i not in by_index]
    if missing:
        raise SparkFileFailed(f"{missing[0]}: its Spark task returned no result")
    for index in order:
        if index not in reported:
            tracker.file_done(index, by_index[index][1][0])
    states = [state for _, (_, (_, state)) in by_index.items() if state is not None]
    _warn_fast_path(states, warn)
    for index in order:
        yield by_index[index][1][0]


def _wait(future, finished, files, order, tracker, reported: set[int]) -> list | None:
    """Report files as the accumulator says they finished until the job ends; its rows, or
    None as soon as a file failed."""
    seen = 0
    while True:
        rows = None
        try:
            rows = future.result(timeout=POLL_SECONDS)
        except concurrent.futures.TimeoutError:
            pass
        except Exception as exc:
            # Spark aborted the job itself; the accumulator may still hold the file's error.
            if any(e[0] == FAILED for e in finished.value):
                return None
            raise _lost_task(files, order, exc) from exc
        entries = finished.value
        for kind, index, value in entries[seen:]:
            if kind == FAILED:
                return None
            reported.add(index)
            tracker.file_done(index, FileResult(files[index].url, value, None))
        seen = len(entries)
        if rows is not None:
            return rows
        tracker.tick()


def _file_error(files: list[SelectedFile], index: int, failure: tuple) -> BaseException:
    payload, trace, host = failure
    url = files[index].url
    error = pickle.loads(payload)
    log.error("%s failed on executor %s:\n%s", url, host, trace.rstrip())
    if url in str(error):
        return error
    wrapped = SparkFileFailed(f"{url}: {describe(error)}")
    wrapped.__cause__ = error
    return wrapped


_LOST_TASK = re.compile(r"Task (\d+) in stage \S+ failed")
_PYTHON_ERROR = re.compile(r"^(\w+(?:\.\w+)*(?:Error|Exception|Exit)\b.*)$", re.MULTILINE)


def _lost_task(files: list[SelectedFile], order: list[int], exc: BaseException) -> SparkFileFailed:
    """The error for a job Spark aborted (a worker that died, a module missing there)."""
    text = str(exc)
    task = _LOST_TASK.search(text)
    causes = _PYTHON_ERROR.findall(text)
    cause = causes[-1].strip() if causes else text.strip().splitlines()[0] if text.strip() else ""
    where = (
        files[order[int(task.group(1))]].url
        if task and int(task.group(1)) < len(order)
        else f"one of {len(files)} files"
    )
    return SparkFileFailed(f"{where}: the Spark task reading it failed: {cause[:500]}")


def _warn_fast_path(states: list[FastPath], warn: Callable[[str], None] | None) -> None:
    without = sorted({(s.host, s.python, s.reason) for s in states if s.reason is not None})
    if not without:
        return
    places = "; ".join(f"{host} (Python {python}): {reason}" for host, python, reason in without)
    message = (
        "the C fast path was not used on some Spark executors, which read on the slower "
        f"pure-Python path: {places}"
    )
    log.warning("%s", message)
    if warn is not None:
        warn(message)
