"""Backups that survive their flow process being killed inside the write block (issue 9).

The killed run is a real flow process (`flow_process.py`, as a worker starts one) talking to this
directory's Prefect test server through PREFECT_API_URL; it waits inside the write block in its
sync command (`touch FLAG; sleep 30`) until the test has seen the node changed and kills it:
SIGKILL (OOM, a lost worker host, a cancel past its grace period) or two SIGTERMs 20 ms apart.
The next run is then an ordinary one, in this process. The last test cancels a run that a real
process worker executes, through the API as the UI does, on a real `prefect server`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling

from flows.backup import Consistency, Safety, Timeouts, VolumeSelection
from tests.bed.prefect_server import PrefectServer, terminate_process_tree
from tests.integration.backup.site import (
    ABSENT_VIP,
    FAST,
    PATTERNS,
    Site,
    assert_database_healthy,
    assert_failed,
    assert_rotated,
    run_backup,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),
]

REPO_ROOT = Path(__file__).resolve().parents[3]
#: the next run gives the old slot this long before asking the node's record about its holder
IMPATIENT = FAST.model_copy(update={"node_lock_wait_seconds": 1})
#: the sync command inside the write block of the run to be killed
HOLD_SECONDS = 30


def parameters(site: Site, consistency: Consistency, timeouts: Timeouts = FAST) -> dict:
    """The flow's parameters as JSON, as a deployment or the UI passes them."""
    return {
        "node": site.server_name,
        "volumes": VolumeSelection(patterns=PATTERNS).model_dump(mode="json"),
        "consistency": consistency.model_dump(mode="json"),
        "safety": Safety(database_vip=ABSENT_VIP).model_dump(mode="json"),
        "access": site.access.model_dump(mode="json"),
        "timeouts": timeouts.model_dump(mode="json"),
    }


def held_in_block(site: Site, mode: str) -> tuple[Consistency, Path]:
    """Settings whose second sync (inside the write block) signals FLAG and then waits."""
    flag = site.probe_dir / "inside-the-write-block"
    sync = site.in_block(f"touch {flag}; sleep {HOLD_SECONDS}")
    return site.consistency(mode, sync_command=sync), flag


class FlowProcess:
    """`python -m tests.integration.backup.flow_process` on the current Prefect server."""

    def __init__(self, site: Site, consistency: Consistency, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        params = directory / "parameters.json"
        params.write_text(json.dumps(parameters(site, consistency)))
        self.log = directory / "flow-process.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_API_URL=PREFECT_API_URL.value(),
            PREFECT_HOME=str(directory / "prefect-home"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.backup.flow_process", str(params)],
                cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, condition: Callable[[], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(f"the flow process ended early:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout}s in vain; flow process:\n{self.output()}")
            time.sleep(0.05)

    def signal(self, *signums: int, gap: float = 0.02) -> int:
        """Send `signums` to the flow process, `gap` seconds apart; its exit status."""
        for index, signum in enumerate(signums):
            if index:
                time.sleep(gap)
            os.kill(self.process.pid, signum)
        return self.process.wait(timeout=60)

    def stop(self) -> None:
        terminate_process_tree(self.process)


@pytest.fixture
def flow_processes(tmp_path):
    """`flow_processes(site, consistency)` starts a flow process; all are stopped at the end."""
    started: list[FlowProcess] = []

    def start(site: Site, consistency: Consistency) -> FlowProcess:
        started.append(FlowProcess(site, consistency, tmp_path / f"flow-{len(started)}"))
        return started[-1]

    yield start
    for process in started:
        process.stop()


def read_record(site: Site) -> dict:
    return json.loads(site.record_path.read_text())


def slot_taken(name: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots


def assert_repair_reported(state, caplog, record: dict, *fragments: str) -> None:
    """The run completed and says, in its state, its artifact and a CRITICAL log line, which
    dead run left the node in which state."""
    assert state.is_completed(), state.message
    dead = [record["flow_run_id"], record["flow_run_name"]]
    for fragment in [*dead, *fragments]:
        assert fragment in state.message, f"{fragment!r} not in: {state.message}"
    artifact = Artifact.get("backup-backend1")
    assert artifact.flow_run_id == state.state_details.flow_run_id
    assert "REPAIRED FIRST" in artifact.description
    assert all(fragment in artifact.description for fragment in dead), artifact.description
    critical = [r.getMessage() for r in caplog.records if r.levelname == "CRITICAL"]
    assert any(all(f in line for f in dead) for line in critical), critical
    assert state.result()["repaired"] == state.message.removeprefix("Completed after repairing: ")


def test_sigkill_in_galera_lock_mode_then_the_next_run_resyncs_and_names_the_dead_run(
    galera_site, flow_processes, caplog
):
    site = galera_site
    consistency, flag = held_in_block(site, "lock")
    killed = flow_processes(site, consistency)
    killed.wait_for(flag.exists)
    record = read_record(site)  # written before anything was changed
    assert (record["mode"], record["changes"]) == ("lock", ["desync", "read_lock"])
    assert record["galera"] is True and record["cluster_size"] == 1
    assert record["lease_id"]
    assert site.db.wsrep_status("wsrep_local_state_comment") == "Donor/Desynced"

    assert killed.signal(signal.SIGKILL) == -signal.SIGKILL
    # what the issue found: the read lock went with the session, the desync stays
    time.sleep(0.5)
    assert site.db.wsrep_status("wsrep_local_state_comment") == "Donor/Desynced"
    assert slot_taken("backup-backend1") == 1

    state = run_backup(site, "lock", timeouts=IMPATIENT)

    assert_repair_reported(state, caplog, record, "desynced", "resynced", "Synced")
    with get_client(sync_client=True) as client:  # the UI no longer shows the dead run running
        dead = client.read_flow_run(record["flow_run_id"])
    assert dead.state.is_crashed() and "process was found gone" in dead.state.message
    assert_database_healthy(site)
    assert not site.record_path.exists()
    assert_rotated(site, keep=3)  # and then tonight's backup was made
    assert slot_taken("backup-backend1") == 0


def test_two_sigterms_20ms_apart_leave_the_galera_node_resynced_and_verified(
    galera_site, flow_processes
):
    site = galera_site
    consistency, flag = held_in_block(site, "lock")
    run = flow_processes(site, consistency)
    run.wait_for(flag.exists)
    record = read_record(site)

    status = run.signal(signal.SIGTERM, signal.SIGTERM, gap=0.02)

    output = run.output()
    assert status == -signal.SIGTERM, output
    assert "SIGTERM received while cleaning up: held until the cleanup is done" in output
    assert "wsrep_desync is OFF again" in output
    assert_database_healthy(site)
    assert not site.record_path.exists(), "the record stayed although the node was restored"
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(record["flow_run_id"])
    assert flow_run.state.is_crashed(), flow_run.state
    artifact = Artifact.get("backup-backend1")
    assert artifact.flow_run_id == flow_run.id
    for fragment in ("interrupted", "stopped by SIGTERM", "released and verified healthy"):
        assert fragment in artifact.description, artifact.description
    assert slot_taken("backup-backend1") == 0


def test_sigkill_in_stop_mode_then_the_next_run_starts_mariadb_and_is_not_blocked(
    site, flow_processes, caplog
):
    consistency, flag = held_in_block(site, "stop")
    killed = flow_processes(site, consistency)
    killed.wait_for(flag.exists)
    record = read_record(site)
    assert (record["mode"], record["changes"]) == ("stop", ["stop"])
    assert not site.db.is_running()

    assert killed.signal(signal.SIGKILL) == -signal.SIGKILL
    assert not site.db.is_running()  # stays stopped
    assert slot_taken("backup-backend1") == 1  # and its slot stays taken (lease not run out)

    state = run_backup(site, "stop", timeouts=IMPATIENT)

    assert_repair_reported(state, caplog, record, "stopped", "started (`")
    assert_database_healthy(site)
    assert not site.record_path.exists()
    assert_rotated(site, keep=3)
    assert slot_taken("backup-backend1") == 0


def test_a_record_of_a_run_that_still_runs_is_left_alone(site, flow_processes):
    consistency, flag = held_in_block(site, "lock")
    running = flow_processes(site, consistency)
    running.wait_for(flag.exists)
    record = read_record(site)

    state = run_backup(site, "lock", timeouts=IMPATIENT)

    assert_failed(state, "BackupAlreadyRunning", record["flow_run_id"], "read-locked")
    assert site.record_path.exists()
    assert running.process.poll() is None  # untouched, still in its write block


# -- a cancel from the UI, on a real server and a real process worker ------------------------


def wait_for_final_state(server: PrefectServer, flow_run_id, timeout: float = 90):
    deadline = time.monotonic() + timeout
    with server.client() as client:
        while True:
            flow_run = client.read_flow_run(flow_run_id)
            if flow_run.state and flow_run.state.is_final() or time.monotonic() > deadline:
                return flow_run
            time.sleep(0.5)


@pytest.mark.timeout(300)
def test_a_cancel_through_the_api_leaves_the_node_unlocked_and_healthy(
    prefect_server, make_site, ssh_host, galera, tmp_path
):
    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
        site = make_site(ssh_host, galera)  # blocks and the node's limit on that server
    consistency, flag = held_in_block(site, "lock")
    prefect_server.prefect("work-pool", "create", "operations", "--type", "process", "--overwrite")
    worker_log = tmp_path / "worker.log"
    with prefect_server.start_worker("operations", cwd=REPO_ROOT, log_path=worker_log) as worker:
        prefect_server.prefect("--no-prompt", "deploy", "--name", "nightly-backup", cwd=REPO_ROOT)
        with prefect_server.client() as client:
            deployment = client.read_deployment_by_name("backup-backend-node/nightly-backup")
            flow_run = client.create_flow_run_from_deployment(
                deployment.id, parameters=parameters(site, consistency)
            )
            deadline = time.monotonic() + 120
            while not flag.exists():
                assert time.monotonic() < deadline, f"never in the write block:\n{worker.output()}"
                time.sleep(0.1)
            assert site.db.wsrep_status("wsrep_local_state_comment") == "Donor/Desynced"
            assert read_record(site)["flow_run_id"] == str(flow_run.id)

            # what the UI's Cancel button does
            client.set_flow_run_state(flow_run.id, Cancelling(), force=True)

        flow_run = wait_for_final_state(prefect_server, flow_run.id)
        why = f"{flow_run.state}\n--- worker ---\n{worker.output()}"
        assert flow_run.state.is_cancelled(), why
    assert_database_healthy(site)
    assert not site.record_path.exists(), why
    assert "wsrep_desync is OFF again" in worker.output(), why
