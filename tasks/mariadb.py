"""Prefect tasks and context managers for MariaDB/Galera on a node: status, health, write blocks.

A *write block* is the window in which the node's data files are consistent on disk, so that
volume snapshots taken inside it restore cleanly. Two ways to open one:

- `read_locked`: `FLUSH TABLES WITH READ LOCK` held on one session (MariaDB keeps serving
  reads); on Galera the node is desynced first (`wsrep_desync`) so the cluster's flow control
  does not stall the other nodes while this one holds back.
- `service_stopped`: the operator's stop command over SSH, later the start command.

Both release in a `finally`, whatever failed inside, and then wait until the database is
healthy again (answers queries; on Galera: Synced, cluster back to its size). When that cannot
be achieved they raise `DatabaseNotRestored`, whose message says so loudly and includes the
error that interrupted the backup, if any.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pymysql
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.database import MySqlDatabase
from blocks.ssh import SshIdentity
from domain.polling import wait_until
from pipeline.errors import OperationFailed, OperationTimeout
from tasks.signals import TerminationShield
from tasks.ssh import RemoteCommandFailed, run_remote_command


class DatabaseUnavailable(OperationFailed):
    """The database could not be reached or queried."""


class DatabaseNotHealthy(OperationFailed):
    """The database answers but is not healthy (e.g. a Galera node not Synced)."""


class DatabaseHealthTimeout(DatabaseNotHealthy, OperationTimeout):
    """The database was not healthy again before the deadline (after a write block).

    Nothing retries it: `verify` turns it into `DatabaseNotRestored` at once.
    """


class DatabaseNotRestored(OperationFailed):
    """After a write block the database could not be brought back to healthy. Act now."""


@dataclass(frozen=True)
class DatabaseStatus:
    """What a node's MariaDB reports about itself."""

    host: str
    hostname: str
    version: str
    galera: bool
    cluster_size: int | None = None
    local_state: str | None = None  # wsrep_local_state_comment: Synced, Donor/Desynced...
    cluster_status: str | None = None  # wsrep_cluster_status: Primary or non-Primary
    ready: bool | None = None  # wsrep_ready

    def problems(self, min_cluster_size: int | None = None) -> list[str]:
        """Why this node is not healthy; empty when it is."""
        if not self.galera:
            return []
        found = []
        if self.local_state != "Synced":
            found.append(f"wsrep_local_state_comment is {self.local_state!r}, not 'Synced'")
        if self.cluster_status != "Primary":
            found.append(f"wsrep_cluster_status is {self.cluster_status!r}, not 'Primary'")
        if not self.ready:
            found.append("wsrep_ready is OFF")
        if min_cluster_size and (self.cluster_size or 0) < min_cluster_size:
            found.append(f"wsrep_cluster_size is {self.cluster_size}, was {min_cluster_size}")
        return found

    def describe(self) -> str:
        if not self.galera:
            return f"MariaDB {self.version} on {self.hostname}"
        return (
            f"Galera node {self.hostname} ({self.version}): {self.local_state}, cluster "
            f"{self.cluster_status} of {self.cluster_size}"
        )


def read_status(conn: pymysql.connections.Connection, host: str) -> DatabaseStatus:
    """Query a connection for hostname, version and (on Galera) the wsrep status."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT @@hostname, @@version")
        hostname, version = cursor.fetchone()
        cursor.execute("SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")
        row = cursor.fetchone()
        if not row or str(row[1]).upper() != "ON":
            return DatabaseStatus(host, hostname, version, galera=False)
        cursor.execute("SHOW GLOBAL STATUS LIKE 'wsrep_%'")
        wsrep = {name: value for name, value in cursor.fetchall()}
    size = wsrep.get("wsrep_cluster_size")
    return DatabaseStatus(
        host=host,
        hostname=hostname,
        version=version,
        galera=True,
        cluster_size=int(size) if size not in (None, "") else None,
        local_state=wsrep.get("wsrep_local_state_comment"),
        cluster_status=wsrep.get("wsrep_cluster_status"),
        ready=str(wsrep.get("wsrep_ready", "")).upper() == "ON",
    )


def query_status(database: MySqlDatabase, host: str, timeout: float = 10) -> DatabaseStatus:
    """Connect, `read_status`, disconnect; `DatabaseUnavailable` if that fails."""
    try:
        conn = database.connect(host=host, connect_timeout=timeout, read_timeout=timeout)
    except pymysql.MySQLError as error:
        raise DatabaseUnavailable(f"cannot connect to MariaDB on {host}:{database.port} as "
                                  f"{database.username!r}: {error}") from None  # fmt: skip
    try:
        return read_status(conn, host)
    except pymysql.MySQLError as error:
        raise DatabaseUnavailable(f"MariaDB on {host} does not answer queries: {error}") from None
    finally:
        conn.close()


def _host_task(name: str):
    """`@task` whose runs are named after the host (NO_CACHE: a block holding a secret is an
    input)."""
    return task(name=name, task_run_name=name + " {host}", cache_policy=NO_CACHE)


@_host_task("inspect-database")
def inspect_database(database: MySqlDatabase, host: str, timeout: float = 10) -> DatabaseStatus:
    """The database's status on `host`, which must be healthy now.

    Raises:
        DatabaseUnavailable: it does not answer.
        DatabaseNotHealthy: it answers but is not healthy (e.g. a Galera node not Synced).
    """
    status = query_status(database, host, timeout)
    problems = status.problems()
    if problems:
        raise DatabaseNotHealthy(f"{status.describe()} is not healthy: {'; '.join(problems)}")
    get_run_logger().info("%s is healthy", status.describe())
    return status


@_host_task("verify-database-healthy")
def wait_until_healthy(
    database: MySqlDatabase,
    host: str,
    baseline: DatabaseStatus,
    timeout: float,
    poll_interval: float = 1,
) -> DatabaseStatus:
    """Wait until the database on `host` answers and (on Galera) is Synced at the cluster size
    of `baseline`, taken before the backup.

    Raises:
        DatabaseHealthTimeout: not healthy within `timeout` seconds (a DatabaseNotHealthy);
            the message gives the last state seen.
    """
    logger = get_run_logger()
    deadline = time.monotonic() + timeout
    last: list[str] = []

    def healthy() -> DatabaseStatus | None:
        status, problems = health_problems(database, host, baseline, min(10, max(timeout, 1)))
        if not problems:
            logger.info("%s is healthy", status.describe())
            return status
        last[:] = problems
        if time.monotonic() < deadline:  # no "waiting" line for the look that ends the wait
            logger.info("waiting for MariaDB on %s: %s", host, "; ".join(problems))
        return None

    def timed_out() -> DatabaseStatus:
        raise DatabaseHealthTimeout(
            f"MariaDB on {host} is not healthy {timeout:g}s after the backup: " + "; ".join(last)
        )

    return wait_until(healthy, timeout=timeout, interval=poll_interval, on_timeout=timed_out)


def health_problems(
    database: MySqlDatabase, host: str, baseline: DatabaseStatus, timeout: float = 10
) -> tuple[DatabaseStatus | None, list[str]]:
    """One look at the database on `host`: its status (None if it does not answer) and why it
    is not as healthy as `baseline` (empty when it is)."""
    try:
        status = query_status(database, host, timeout=timeout)
    except DatabaseUnavailable as error:
        return None, [str(error)]
    problems = status.problems(baseline.cluster_size)
    if status.galera != baseline.galera:
        problems.append("Galera (wsrep_on) changed during the backup")
    return status, problems


@dataclass
class WriteBlock:
    """When writes to the database were blocked (or it was stopped), as the flow saw it."""

    mode: str
    #: set once the database was released and verified healthy: what the block changed is undone
    restored: bool = False
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    _started: float | None = field(default=None, repr=False)
    _ended: float | None = field(default=None, repr=False)

    def start(self) -> None:
        self.started_at, self._started = dt.datetime.now(dt.UTC), time.monotonic()

    def end(self) -> None:
        if self._started is not None and self._ended is None:
            self.ended_at, self._ended = dt.datetime.now(dt.UTC), time.monotonic()

    @property
    def seconds(self) -> float | None:
        if self._started is None:
            return None
        return (self._ended if self._ended is not None else time.monotonic()) - self._started


@dataclass(frozen=True)
class HealthCheck:
    """How to verify the database after a write block: where, against what, how long."""

    database: MySqlDatabase
    host: str
    baseline: DatabaseStatus
    timeout: float = 600
    poll_interval: float = 1


#: pymysql client errors meaning the answer was lost (CR_SERVER_GONE_ERROR, CR_SERVER_LOST).
_CONNECTION_LOST = (2006, 2013)


class StopCommandFailed(OperationFailed):
    """The stop command failed and the database never stopped (it answers and is healthy)."""


class ReadLockFailed(OperationFailed):
    """FLUSH TABLES WITH READ LOCK could not be taken, or the lock ended before UNLOCK."""


@contextmanager
def read_locked(
    health: HealthCheck,
    *,
    galera: bool,
    lock_wait_timeout: float = 10,
    max_hold_seconds: float = 600,
    block: WriteBlock | None = None,
) -> Iterator[WriteBlock]:
    """Hold `FLUSH TABLES WITH READ LOCK` on one session of the database on `health.host`.

    Reads go on; writes wait. On Galera the node is desynced for the duration, then resynced.
    On exit, whatever happened: unlock, resync, wait until healthy; a second termination signal
    waits until that is done (`TerminationShield`).

    Args:
        health: The node whose volumes are snapshotted (`host`; the session goes there, never
            to the block's host), its credentials (`database`), and how to verify it afterwards.
        galera: Desync the node (`SET GLOBAL wsrep_desync`) while the lock is held.
        lock_wait_timeout: Seconds FLUSH TABLES WITH READ LOCK may wait for running
            statements; writers queue behind it meanwhile, so keep it short.
        max_hold_seconds: The session's `wait_timeout`: if this flow dies or hangs while holding
            the lock, MariaDB drops the session, and so the lock, after this long.
        block: The `WriteBlock` to fill in (the caller's, to see `restored` even when the lock
            could not be taken); a new one by default.

    Raises:
        ReadLockFailed: the lock could not be taken, or was lost before UNLOCK (the snapshots
            may then be inconsistent).
        DatabaseNotRestored: the node could not be resynced or is not healthy afterwards.
    """
    logger = get_run_logger()
    database, host = health.database, health.host
    block = block or WriteBlock("lock")
    lock_lost: Exception | None = None
    conn = None
    desynced = False

    def release(interrupted: BaseException | None) -> None:
        nonlocal lock_lost
        if conn is not None:
            try:
                with conn.cursor() as cursor:
                    cursor.execute("UNLOCK TABLES")
            except pymysql.MySQLError as error:
                lock_lost = error  # the session is gone, and with it the lock
            finally:
                conn.close()  # ends the session: releases the lock whatever happened above
        block.end()
        if block.seconds is not None:
            logger.info("MariaDB on %s: unlocked after %.3fs", host, block.seconds)
        if desynced:
            resync(database, host, interrupted)
        verify(health, interrupted)
        block.restored = True

    with _undone_on_exit(release):
        try:
            # the FTWRL may wait lock_wait_timeout for running statements: read a bit longer
            conn = database.connect(host=host, read_timeout=lock_wait_timeout + 30)
            with conn.cursor() as cursor:
                cursor.execute(f"SET SESSION lock_wait_timeout = {max(int(lock_wait_timeout), 1)}")
                cursor.execute(f"SET SESSION wait_timeout = {max(int(max_hold_seconds), 1)}")
                if galera:
                    try:
                        cursor.execute("SET GLOBAL wsrep_desync = ON")
                    except pymysql.err.OperationalError as error:
                        # answer lost (server gone/lost): it may have been applied; resync
                        desynced = error.args[0] in _CONNECTION_LOST
                        raise
                    desynced = True
                block.start()  # new writes queue behind a waiting FTWRL already
                cursor.execute("FLUSH TABLES WITH READ LOCK")
        except pymysql.MySQLError as error:
            raise ReadLockFailed(
                f"FLUSH TABLES WITH READ LOCK on MariaDB at {host} failed: {error}"
            ) from None
        logger.info("MariaDB on %s: read lock held%s", host, " (node desynced)" if galera else "")
        yield block
    if lock_lost is not None:
        raise ReadLockFailed(
            f"the read lock on {host} ended before UNLOCK TABLES ({lock_lost}); writes may have "
            "happened while the snapshots were requested, so they may not be consistent"
        )


@contextmanager
def service_stopped(
    identity: SshIdentity,
    health: HealthCheck,
    *,
    stop_command: str,
    start_command: str,
    stop_timeout: float = 600,
    start_timeout: float = 600,
    start_attempts: int = 3,
    retry_delay: float = 5,
    block: WriteBlock | None = None,
) -> Iterator[WriteBlock]:
    """Stop the database service on `health.host` over SSH; on exit, start it, whatever
    happened, and verify it as `health` says.

    When the stop command failed (or its connection was cut), the database is looked at first:
    if it still answers and is healthy, it never stopped, nothing is started and the stop's own
    error is what the run fails for. Otherwise the start command runs: a stop may have
    half-worked. Start commands are idempotent (`systemctl start` of a running service does
    nothing), so a failed start is attempted again (`start_attempts` in all). A second
    termination signal waits until the start and the health check are done.

    `block`: the `WriteBlock` to fill in (a new one by default).

    Raises:
        StopCommandFailed: the stop command failed, the database never stopped (healthy).
        DatabaseNotRestored: the start command kept failing, or the database is not healthy.
    """
    logger = get_run_logger()
    host = health.host
    block = block or WriteBlock("stop")
    stopped = False
    never_stopped: BaseException | None = None  # the stop's error, when it was a no-op

    def restart(interrupted: BaseException | None) -> None:
        nonlocal never_stopped
        # a stop command that ended with an error status may have done nothing at all; one
        # cut off or timed out may still be running on the node: then start, whatever
        if (
            not stopped
            and isinstance(interrupted, RemoteCommandFailed)
            and _still_healthy(health, stop_command)
        ):
            never_stopped = interrupted
        else:
            try:
                start(
                    identity, host, start_command, attempts=start_attempts,
                    timeout=start_timeout, retry_delay=retry_delay, interrupted=interrupted,
                )  # fmt: skip
            finally:
                block.end()
            logger.info("MariaDB on %s started again after %.3fs", host, block.seconds)
            verify(health, interrupted)
        block.end()  # the window closes with the start, or when the stop turned out a no-op
        block.restored = True

    try:
        with _undone_on_exit(restart):
            block.start()
            run_remote_command(identity, host, stop_command, timeout=stop_timeout)
            stopped = True
            logger.info("MariaDB on %s stopped", host)
            yield block
    finally:
        if never_stopped is not None:
            raise StopCommandFailed(
                f"the stop command failed and MariaDB on {host} never stopped: it answers and "
                f"is healthy, nothing was started and no snapshot was taken. {never_stopped}"
            ) from never_stopped


@contextmanager
def _undone_on_exit(undo: Callable[[BaseException | None], None]) -> Iterator[None]:
    """Run the body, then `undo(interrupted)` whatever happened (`interrupted`: what the body
    raised, None if nothing), a second termination signal held until the undo is done."""
    interrupted: BaseException | None = None
    try:
        yield
    except BaseException as error:
        interrupted = error
        raise
    finally:
        with TerminationShield():  # a second signal must not cut the undo short
            undo(interrupted)


def _still_healthy(health: HealthCheck, stop_command: str) -> bool:
    """After a stop command that failed: does the database still answer, healthy?"""
    status, problems = health_problems(health.database, health.host, health.baseline)
    logger = get_run_logger()
    if problems:
        logger.warning(
            "`%s` failed and MariaDB on %s is not healthy (%s): starting it",
            stop_command, health.host, "; ".join(problems),
        )  # fmt: skip
        return False
    logger.error(
        "`%s` failed, but MariaDB on %s never stopped: it answers and is healthy (%s). Not "
        "starting it; no snapshot is taken.",
        stop_command, health.host, status.describe(),
    )  # fmt: skip
    return True


def start(
    identity: SshIdentity,
    host: str,
    start_command: str,
    *,
    attempts: int,
    timeout: float,
    retry_delay: float,
    interrupted: BaseException | None = None,
) -> None:
    """Run the (idempotent) start command, up to `attempts` times; `DatabaseNotRestored` if it
    keeps failing."""
    runner = run_remote_command.with_options(
        retries=max(attempts - 1, 0), retry_delay_seconds=retry_delay
    )
    try:
        runner(identity, host, start_command, timeout=timeout)
    except Exception as error:
        what = f"`{start_command}` failed {attempts} times"
        raise _not_restored(host, what, error, interrupted) from error


def resync(database: MySqlDatabase, host: str, interrupted: BaseException | None = None) -> None:
    """`SET GLOBAL wsrep_desync = OFF` on a fresh session (the lock session may be gone)."""
    try:
        conn = database.connect(host=host, read_timeout=30)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SET GLOBAL wsrep_desync = OFF")
        finally:
            conn.close()
    except pymysql.MySQLError as error:
        what = "SET GLOBAL wsrep_desync = OFF failed"
        raise _not_restored(host, what, error, interrupted) from None
    get_run_logger().info("MariaDB on %s: wsrep_desync is OFF again", host)


def verify(health: HealthCheck, interrupted: BaseException | None = None) -> DatabaseStatus:
    """Wait until healthy (`wait_until_healthy`); `DatabaseNotRestored` if it does not get there."""
    try:
        return wait_until_healthy(
            health.database, health.host, health.baseline, health.timeout, health.poll_interval
        )
    except Exception as error:
        raise _not_restored(health.host, "health check failed", error, interrupted) from error


def _not_restored(
    host: str, what: str, error: BaseException, interrupted: BaseException | None
) -> DatabaseNotRestored:
    message = f"MariaDB on {host} is NOT back to healthy after the backup ({what}): {error}"
    if interrupted is not None:
        message += f". The backup had failed before: {type(interrupted).__name__}: {interrupted}"
    message += ". Check the node now."
    # outside a run there is no run logger: the exception still carries the message
    with contextlib.suppress(Exception):
        get_run_logger().critical(message)
    return DatabaseNotRestored(message)
