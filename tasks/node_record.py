"""What a backup run is about to change on a node, written on the node itself: `NodeChange`.

A run that is killed (SIGKILL, OOM, a lost worker host, a cancel past its grace period) cannot
undo what it changed: a Galera node stays desynced, a stopped MariaDB stays stopped. So before
changing anything the run writes a small JSON record on the node (over SFTP, atomically: a
temporary file renamed over the target), and removes it once the node is restored and verified.
The next run reads it first; a record left by a run that is no longer running tells it what to
repair. The record lives on the node because that is where the damage is, whichever worker
runs the next backup.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import posixpath
import socket
import uuid
from dataclasses import dataclass

import paramiko
import psutil
from prefect import get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed

from blocks.ssh import SshError, SshIdentity
from remote.ssh import SshSession

DEFAULT_RECORD_PATH = "~/.edx-ops-flows/backup-state.json"
RECORD_VERSION = 1

#: what each change leaves behind when its undo never ran
CHANGE_WORDS = {
    "desync": "desynced (wsrep_desync = ON)",
    "read_lock": "read-locked (FLUSH TABLES WITH READ LOCK)",
    "stop": "stopped (stop command run)",
}


class NodeRecordError(SshError):
    """The record on the node could not be read, written or removed, or is not valid."""


@dataclass(frozen=True)
class NodeChange:
    """One run's record of what it is changing on a node, and how to tell whether it is alive."""

    flow_run_id: str
    flow_run_name: str
    server: str
    mode: str  # lock | stop
    changes: tuple[str, ...]  # keys of CHANGE_WORDS, in the order they are made
    since: str  # UTC, ISO 8601
    galera: bool
    cluster_size: int | None  # the Galera cluster's size before the change
    lease_id: str | None  # the run's lease on the node's concurrency slot
    process_host: str  # where the run's process ran, and which one it was
    process_pid: int
    process_started: float  # its start time (psutil), so a reused pid is not taken for it

    @classmethod
    def now(cls, **fields) -> NodeChange:
        """A record made by this process, at this moment."""
        return cls(
            since=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            process_host=socket.gethostname(),
            process_pid=os.getpid(),
            process_started=psutil.Process().create_time(),
            **fields,
        )

    def describe(self) -> str:
        """E.g. `desynced (wsrep_desync = ON) and read-locked (...) since 2026-...`."""
        words = " and ".join(CHANGE_WORDS.get(change, change) for change in self.changes)
        return f"{words or 'changed'} in {self.mode} mode since {self.since}"

    def run_label(self) -> str:
        return f"{self.flow_run_name or '?'} ({self.flow_run_id})"

    def to_json(self) -> bytes:
        data = {"version": RECORD_VERSION, **dataclasses.asdict(self)}
        return json.dumps(data, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> NodeChange:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.pop("version", None) != RECORD_VERSION:
            raise ValueError(f"not a version {RECORD_VERSION} record")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(data)
        if missing:
            raise ValueError(f"fields missing: {sorted(missing)}")
        data = {name: data[name] for name in names}
        data["changes"] = tuple(data["changes"])
        return cls(**data)

    def process_gone(self) -> bool | None:
        """True when the run's process ran on this machine and is gone (or its pid now belongs
        to another process); None when it ran elsewhere (this machine cannot tell)."""
        if self.process_host != socket.gethostname():
            return None
        try:
            started = psutil.Process(self.process_pid).create_time()
        except psutil.NoSuchProcess:
            return True
        return abs(started - self.process_started) > 1


def _session(identity: SshIdentity, host: str, timeout: float) -> SshSession:
    """A session on `host` whose SFTP session is open (its reads time out after `timeout`)."""
    session = identity.session(host, sftp_timeout=timeout)
    try:
        session.sftp  # noqa: B018 - opened here, so that a refused SFTP is told as such
    except (paramiko.SSHException, OSError) as error:
        session.close()
        raise NodeRecordError(host, f"SFTP to {host} failed: {error}") from None
    except BaseException:
        session.close()
        raise
    return session


@task(name="record-node-change", task_run_name="record-node-change {host}", cache_policy=NO_CACHE)
def record_change(
    identity: SshIdentity, host: str, path: str, change: NodeChange, timeout: float = 60
) -> None:
    """Write `change` to `path` on `host` (directory made 0700, file 0600, atomic rename)."""
    with _session(identity, host, timeout) as session:
        try:
            target = session.path(path)
            directory = posixpath.dirname(target)
            try:
                session.sftp.stat(directory)
            except FileNotFoundError:
                session.sftp.mkdir(directory, mode=0o700)
            session.write_file(target, change.to_json(), 0o600)
        except OSError as error:
            raise NodeRecordError(
                host, f"cannot write the backup record {path} on {host}: {error}; nothing changed"
            ) from None
    get_run_logger().info("recorded on %s (%s): about to be %s", host, path, change.describe())


@task(name="read-node-change", task_run_name="read-node-change {host}", cache_policy=NO_CACHE)
def read_change(
    identity: SshIdentity, host: str, path: str, timeout: float = 60
) -> NodeChange | None:
    """The record at `path` on `host`, or None when there is none.

    Raises:
        NodeRecordError: it cannot be read, or is not a valid record (then a person must look).
    """
    with _session(identity, host, timeout) as session:
        try:
            raw = session.read_file(path)
        except OSError as error:
            raise NodeRecordError(
                host, f"cannot read the backup record {path} on {host}: {error}"
            ) from None
    if raw is None:
        return None
    try:
        return NodeChange.from_json(raw)
    except (ValueError, TypeError) as error:
        raise NodeRecordError(
            host,
            f"the backup record {path} on {host} is not valid ({error}): check what it says "
            "and the node's database by hand, then remove it",
        ) from None


@task(name="clear-node-change", task_run_name="clear-node-change {host}", cache_policy=NO_CACHE)
def clear_change(identity: SshIdentity, host: str, path: str, timeout: float = 60) -> None:
    """Remove the record at `path` on `host` (nothing to do when it is not there)."""
    with _session(identity, host, timeout) as session:
        try:
            session.sftp.remove(session.path(path))
        except FileNotFoundError:
            pass
        except OSError as error:
            raise NodeRecordError(
                host, f"cannot remove the backup record {path} on {host}: {error}"
            ) from None
    get_run_logger().info("removed the backup record %s on %s: the node is restored", path, host)


@dataclass(frozen=True)
class Holder:
    """Whether the run named in a record is still running, and what was seen."""

    alive: bool
    state: str  # e.g. "Crashed", "Running in the Prefect API, but its process 123 ... is gone"
    #: the API still shows it running although its process is gone (nobody reported its end)
    orphaned: bool = False


def holder_of(change: NodeChange, current_run_id: str | None) -> Holder:
    """Ask the Prefect API (and, on the same machine, the process table) about the run.

    Dead: this very run (an earlier attempt of it left the record), a run the API does not
    know, a run in a final state, or a run the API still shows as running whose process, on
    this machine, is gone (SIGKILL outside a worker leaves its state Running forever). Alive:
    any other run in a non-final state.
    """
    if current_run_id and change.flow_run_id == current_run_id:
        return Holder(False, "an earlier attempt of this run")
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(uuid.UUID(change.flow_run_id))
        except (ObjectNotFound, ValueError):
            return Holder(False, "unknown to the Prefect API")
    state = run.state.name if run.state else "without a state"
    if run.state is not None and run.state.is_final():
        return Holder(False, state)
    if change.process_gone():
        return Holder(
            False,
            f"{state} in the Prefect API, but its process {change.process_pid} on "
            f"{change.process_host} is gone",
            orphaned=True,
        )
    return Holder(True, state)


def mark_crashed(change: NodeChange, why: str) -> None:
    """Set the (orphaned) run of `change` to Crashed, so that the UI stops showing it running."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(uuid.UUID(change.flow_run_id), Crashed(message=why), force=True)
