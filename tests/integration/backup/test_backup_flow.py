"""backup-backend-node on real services: sshd + MariaDB (+ single-node Galera) + the OpenStack fake.

Each test seeds a cloud with a backend server (reached over SSH at 127.0.0.1), its two data
volumes, three earlier backup snapshots of each, and snapshots rotation must never touch. Faults
come from the bed (cut connections, failing commands, a MariaDB that cannot start) and the fake
(5xx answers, snapshots that fail or never finish).
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from prefect import get_client
from prefect.artifacts import Artifact
from prefect.concurrency.sync import concurrency

from flows.backup import Safety, VolumeSelection, backup_backend_node
from tests.bed.mariadb import TEST_PASSWORD
from tests.integration.backup.site import (
    ABSENT_VIP,
    FAST,
    PATTERNS,
    Site,
    assert_database_healthy,
    assert_failed,
    assert_old_backups_intact,
    assert_rotated,
    run_backup,
)

pytestmark = [
    pytest.mark.slow,
    # openstacksdk's own deprecation notices are not ours
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),
]


# -- good runs ---------------------------------------------------------------------------------


def test_lock_mode_snapshots_rotates_and_blocks_only_writes(site):
    probe = site.probe_dir
    # inside the write block: a read must work and a write must wait (and time out)
    sync = site.in_block(
        f"{site.root_sql_command('SELECT 1')} > {probe}/read.out 2>&1; "
        f"echo $? > {probe}/read.rc; "
        f"{site.root_sql_command('SET SESSION lock_wait_timeout=1; CREATE DATABASE blocked')} "
        f"> {probe}/write.out 2>&1; echo $? > {probe}/write.rc"
    )

    state = run_backup(site, "lock", consistency=site.consistency("lock", sync_command=sync))

    assert state.is_completed(), state.message
    assert (probe / "presynced").exists()  # the first sync ran before the lock
    assert (probe / "read.rc").read_text().strip() == "0"
    assert (probe / "write.rc").read_text().strip() != "0"
    assert "Lock wait timeout" in (probe / "write.out").read_text()
    assert_rotated(site, keep=3)
    assert_database_healthy(site)
    summary = state.result()
    assert summary["outcome"] == "completed" and summary["mode"] == "lock"
    assert 0 < summary["write_blocked_seconds"] < 10
    new = site.new_snapshots("mysql_data")[0]
    assert new.metadata["server_id"] == site.server_id
    assert new.metadata["flow_run_id"] == str(state.state_details.flow_run_id)
    assert len(summary["deleted"]) == 2  # the oldest of each volume


def test_stop_mode_stops_mariadb_for_the_snapshots_and_starts_it(site):
    status = site.db.control_command("status")
    sync = site.in_block(f"{status}; echo $? > {site.probe_dir}/status.rc")

    state = run_backup(
        site, "stop", keep=2, consistency=site.consistency("stop", sync_command=sync)
    )

    assert state.is_completed(), state.message
    assert (site.probe_dir / "status.rc").read_text().strip() == "3"  # stopped meanwhile
    assert_rotated(site, keep=2)
    assert_database_healthy(site)
    assert state.result()["write_blocked_seconds"] > 0


def test_keep_one_leaves_only_the_new_snapshot(site):
    state = run_backup(site, "lock", keep=1)

    assert state.is_completed(), state.message
    assert_rotated(site, keep=1)


def test_table_artifact_describes_the_run(site):
    state = run_backup(site, "lock")

    assert state.is_completed(), state.message
    artifact = Artifact.get("backup-backend1")
    assert artifact is not None
    assert artifact.flow_run_id == state.state_details.flow_run_id
    rows = artifact.data if isinstance(artifact.data, list) else json.loads(artifact.data)
    assert [row["pattern"] for row in rows] == PATTERNS
    for row in rows:
        assert row["status"] == "available"
        assert row["kept"] == 3 and row["deleted"] != "-"
        assert row["write_blocked_s"] > 0
    assert "completed" in artifact.description and "lock mode" in artifact.description


def test_galera_lock_mode_desyncs_the_node_and_resyncs_it(galera_site):
    site = galera_site
    state_sql = "SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'"
    sync = site.in_block(f"{site.root_sql_command(state_sql)} > {site.probe_dir}/state.out")

    state = run_backup(site, "lock", consistency=site.consistency("lock", sync_command=sync))

    assert state.is_completed(), state.message
    assert "Donor/Desynced" in (site.probe_dir / "state.out").read_text()
    assert_rotated(site, keep=3)
    assert_database_healthy(site)


def test_galera_stop_mode_waits_for_synced_after_the_restart(galera_site):
    state = run_backup(galera_site, "stop")

    assert state.is_completed(), state.message
    assert_rotated(galera_site, keep=3)
    assert_database_healthy(galera_site)


# -- faults: the database always ends healthy (or the run says loudly it is not) ---------------


def assert_nothing_new_and_nothing_lost(site: Site) -> None:
    assert_old_backups_intact(site)
    for pattern in PATTERNS:
        assert site.new_snapshots(pattern) == []


def test_stop_command_failure_restarts_mariadb_and_creates_nothing(site):
    # the stop half-worked (MariaDB went down) and then reported an error
    stop = f"{site.db.control_command('stop')} && echo 'Job for mariadb failed' >&2 && exit 1"

    state = run_backup(site, "stop", consistency=site.consistency("stop", stop_command=stop))

    assert_failed(state, "RemoteCommandFailed", "exit status 1", "Job for mariadb failed")
    assert_database_healthy(site)
    assert_nothing_new_and_nothing_lost(site)


def test_failing_stop_command_with_a_healthy_database_says_so_and_starts_nothing(site):
    # e.g. sudo refusing: the stop did nothing, and the start command would fail the same way
    pid = site.db.running_pid()
    started = site.probe_dir / "start-command-ran"
    consistency = site.consistency(
        "stop",
        stop_command="echo 'Failed to stop mariadb.service: Access denied' >&2; exit 1",
        start_command=f"touch {started}; exit 1",
    )

    state = run_backup(site, "stop", consistency=consistency)

    assert_failed(
        state, "StopCommandFailed", "never stopped: it answers and is healthy",
        "exit status 1", "Access denied", "no snapshot was taken",
    )  # fmt: skip
    assert "NOT back to healthy" not in state.message
    assert not started.exists(), "the start command ran for a database that never stopped"
    assert_untouched(site, pid)
    assert not site.record_path.exists()


@pytest.mark.parametrize("mode", ["stop", "lock"])
def test_connection_cut_while_blocked_releases_the_database(site, mode):
    flag = site.probe_dir / "sync-started"
    sync = site.in_block(f"touch {flag}; sleep 10")

    def cut_when_syncing():
        deadline = time.monotonic() + 15
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        site.host.cut_connections()

    cutter = threading.Thread(target=cut_when_syncing)
    cutter.start()
    state = run_backup(site, mode, consistency=site.consistency(mode, sync_command=sync))
    cutter.join()

    assert_failed(state, "ConnectionLost", "was lost while running `sync; if")
    assert_database_healthy(site)
    assert_nothing_new_and_nothing_lost(site)


@pytest.mark.parametrize("mode", ["stop", "lock"])
def test_snapshot_create_5xx_fails_after_retries_and_releases(site, mode):
    site.fake.fail_requests("POST", r"/snapshots$", status=503, count=None)

    state = run_backup(site, mode)

    assert_failed(state, "HttpException", "503")
    assert len(site.fake.requests("POST", r"/snapshots$")) == 1 + FAST.cloud_retries
    assert_database_healthy(site)
    assert_nothing_new_and_nothing_lost(site)


def test_a_transient_5xx_is_retried_and_the_run_completes(site):
    site.fake.fail_requests("POST", r"/snapshots$", status=503, count=1)

    state = run_backup(site, "lock")

    assert state.is_completed(), state.message
    assert len(site.fake.requests("POST", r"/snapshots$")) == 3  # one retried, two volumes
    assert_rotated(site, keep=3)


def test_a_client_error_is_not_retried(site):
    site.fake.fail_requests("POST", r"/snapshots$", status=400, count=None)

    state = run_backup(site, "lock")

    assert_failed(state, "BadRequestException", "400")
    assert len(site.fake.requests("POST", r"/snapshots$")) == 1
    assert_nothing_new_and_nothing_lost(site)


@pytest.mark.parametrize("mode", ["stop", "lock"])
def test_snapshot_in_error_fails_the_run_and_rotates_nothing(site, mode):
    site.fake.fail_next_snapshots(1)  # the mysql_data one; mongodb_data succeeds

    state = run_backup(site, mode)

    assert_failed(state, "SnapshotFailed", "mysql_data-", "went to 'error'")
    assert_database_healthy(site)
    assert_old_backups_intact(site)


def test_snapshot_never_available_times_out_and_rotates_nothing(site):
    site.fake.stall_next_snapshots(1)
    timeouts = FAST.model_copy(update={"snapshot_seconds": 0.5})

    state = run_backup(site, "lock", timeouts=timeouts)

    assert_failed(state, "SnapshotTimeout", "not available after 0.5s", "still 'creating'")
    assert_database_healthy(site)
    assert_old_backups_intact(site)


def test_failure_while_holding_until_available_still_restarts(site):
    site.fake.fail_next_snapshots(1)
    consistency = site.consistency("stop", hold_until_available=True)

    state = run_backup(site, "stop", consistency=consistency)

    assert_failed(state, "SnapshotFailed", "went to 'error'")
    assert_database_healthy(site)
    assert_old_backups_intact(site)


def test_failed_delete_stops_rotation_without_deleting_more(site):
    oldest, failing, newest = site.old["mysql_data"]
    site.fake.fail_requests("DELETE", rf"/snapshots/{failing.id}$", status=500, count=None)

    state = run_backup(site, "lock", keep=1)

    assert_failed(state, "RotationFailed", failing.name, "nothing else was deleted")
    present = {s.id for s in site.snapshots()}
    assert oldest.id not in present  # deleted before the failure
    assert failing.id in present and newest.id in present
    assert all(s.id in present for s in site.old["mongodb_data"])  # never reached
    assert all(len(site.new_snapshots(p)) == 1 for p in PATTERNS)
    assert_database_healthy(site)


def test_a_delete_that_never_finishes_is_a_delete_timeout_and_stops_rotation(site):
    oldest, stuck, newest = site.old["mysql_data"]
    # Cinder accepts the deletion but the snapshot stays: a backend that never gets to it
    site.fake.fail_requests("DELETE", rf"/snapshots/{stuck.id}$", status=202, count=None)

    state = run_backup(
        site, "lock", keep=1, timeouts=FAST.model_copy(update={"delete_seconds": 0.3})
    )

    assert_failed(
        state, "RotationFailed", f"SnapshotDeleteTimeout: snapshot {stuck.name} ({stuck.id}) "
        "still 'available' 0.3s after its deletion", "nothing else was deleted",
    )  # fmt: skip
    present = {s.id for s in site.snapshots()}
    assert oldest.id not in present and stuck.id in present and newest.id in present
    # a deadline is not an outage: the delete was asked for once, not retried
    assert len(site.fake.requests("DELETE", rf"/snapshots/{stuck.id}$")) == 1
    assert_database_healthy(site)


def test_mariadb_that_cannot_start_fails_the_run_loudly(site):
    datadir = site.db.datadir
    # while MariaDB is stopped its system tables vanish: the start command then fails for real
    sync = site.in_block(f"mv {datadir}/mysql {datadir}/mysql.moved")
    consistency = site.consistency("stop", sync_command=sync, start_attempts=2)
    try:
        state = run_backup(site, "stop", consistency=consistency)

        assert_failed(
            state,
            "DatabaseNotRestored",
            "NOT back to healthy",
            "mariadb-ctl start` failed 2 times",
            "privilege tables",
        )
        assert not site.db.is_running()
        assert_old_backups_intact(site)  # no rotation after a failed restart
        assert TEST_PASSWORD not in state.message
    finally:
        if (datadir / "mysql.moved").exists():
            (datadir / "mysql.moved").rename(datadir / "mysql")


# -- refusals: nothing is stopped, locked or created -----------------------------------------


def assert_untouched(site: Site, pid: int) -> None:
    assert site.db.running_pid() == pid, "MariaDB was restarted"
    assert_nothing_new_and_nothing_lost(site)


def test_node_holding_the_vip_is_refused(site):
    pid = site.db.running_pid()

    state = run_backup(site, "stop", safety=Safety(database_vip="127.0.0.1"))

    assert_failed(state, "BackupRefused", "holds the database VIP 127.0.0.1", "secondary")
    assert_untouched(site, pid)


def test_node_marked_primary_is_refused(site, openstack_conn):
    openstack_conn.compute.set_server_metadata(site.server_id, backend_role="primary")
    pid = site.db.running_pid()

    state = run_backup(site, "stop")

    assert_failed(state, "BackupRefused", "marks it primary")
    assert_untouched(site, pid)


def test_force_backs_up_the_vip_holder(site):
    state = run_backup(site, "lock", safety=Safety(database_vip="127.0.0.1"), force=True)

    assert state.is_completed(), state.message
    assert_rotated(site, keep=3)


def test_without_a_vip_the_run_is_refused_unless_forced(site):
    state = run_backup(site, "lock", safety=Safety())

    assert_failed(state, "BackupRefused", "database_vip is not set")
    assert_nothing_new_and_nothing_lost(site)


def test_changed_host_key_is_refused_before_anything(site):
    pid = site.db.running_pid()
    site.host.replace_host_key()

    state = run_backup(site, "stop")

    assert_failed(state, "HostKeyMismatch", "[127.0.0.1]:", "does not match known_hosts")
    assert_untouched(site, pid)


@pytest.mark.parametrize(
    ("extra_volume", "patterns", "message"),
    [
        (None, [*PATTERNS, "elastic_data"], "0 in-use volumes named like 'elastic_data'"),
        ("multi-mysql_data-second", PATTERNS, "2 in-use volumes named like 'mysql_data'"),
    ],
    ids=["missing", "ambiguous"],
)
def test_volume_problems_are_found_before_anything_stops(site, extra_volume, patterns, message):
    if extra_volume:
        site.fake.add_volume(extra_volume, attached_to=site.server_id)
    pid = site.db.running_pid()

    state = backup_backend_node(
        node=site.server_name, volumes=VolumeSelection(patterns=patterns),
        consistency=site.consistency("stop"), safety=Safety(database_vip=ABSENT_VIP),
        access=site.access, timeouts=FAST, return_state=True,
    )  # fmt: skip

    assert_failed(state, "CloudLookupError", message, "attached:")
    assert_untouched(site, pid)


def test_node_found_by_address(site):
    state = run_backup(site, "lock", node="127.0.0.1")

    assert state.is_completed(), state.message
    assert state.result()["server"] == "backend1"


def test_unknown_node_is_a_clear_error(site):
    state = run_backup(site, "lock", node="backend7")

    assert_failed(state, "CloudLookupError", "no server matches 'backend7'")


# -- no overlapping runs ----------------------------------------------------------------------


def test_a_run_while_another_holds_the_node_is_refused(site):
    timeouts = FAST.model_copy(update={"node_lock_wait_seconds": 0.5})
    with concurrency("backup-backend1", occupy=1, strict=True):
        state = run_backup(site, "lock", timeouts=timeouts)

    assert_failed(state, "BackupAlreadyRunning", "another backup of backend1 is running")
    assert_nothing_new_and_nothing_lost(site)


def test_overlapping_runs_of_one_node_never_run_together(site):
    flag = site.probe_dir / "first-holds-the-lock"
    first_sync = site.in_block(f"touch {flag}; sleep 2")
    results = {}

    def first_run():
        results["first"] = run_backup(
            site, "lock", consistency=site.consistency("lock", sync_command=first_sync)
        )

    first = threading.Thread(target=first_run)
    first.start()
    deadline = time.monotonic() + 20
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    impatient = FAST.model_copy(update={"node_lock_wait_seconds": 0.5})
    second = run_backup(site, "lock", timeouts=impatient)
    first.join()

    assert_failed(second, "BackupAlreadyRunning")
    assert results["first"].is_completed(), results["first"].message
    assert_rotated(site, keep=3)  # exactly one new snapshot per volume


def test_missing_concurrency_limit_is_a_clear_error(make_site, mariadb_via_ssh):
    site = make_site(mariadb_via_ssh.host, mariadb_via_ssh.server, name="backend9")
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name("backup-backend9")

    state = run_backup(site, "lock")

    assert_failed(state, "BackupRefused", "prefect gcl create backup-backend9 --limit 1")
    assert_nothing_new_and_nothing_lost(site)


def test_secrets_stay_out_of_parameters_messages_artifacts_and_logs(site, caplog):
    site.fake.fail_next_snapshots(1)
    secrets = [TEST_PASSWORD, site.fake.credentials["password"]]
    secrets += site.host.client_key.read_text().splitlines()[1:3]  # lines of the key body

    state = run_backup(site, "lock")

    assert_failed(state, "SnapshotFailed")
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    artifact = Artifact.get("backup-backend1")
    seen = " ".join(
        [json.dumps(run.parameters), state.message, str(artifact.data), artifact.description]
        + [record.getMessage() for record in caplog.records]
    )
    for secret in secrets:
        assert secret not in seen


# -- the read lock's own limits ---------------------------------------------------------------


def test_a_read_lock_that_cannot_be_taken_in_time_fails_cleanly(site):
    blocker = site.db.connect()
    with blocker.cursor() as cursor:
        cursor.execute("CREATE DATABASE IF NOT EXISTS probe")
        cursor.execute("CREATE TABLE probe.busy (id INT) ENGINE=InnoDB")
        cursor.execute("LOCK TABLES probe.busy WRITE")  # FLUSH TABLES WITH READ LOCK must wait
    try:
        timeouts = FAST.model_copy(update={"lock_wait_seconds": 1})
        state = run_backup(site, "lock", timeouts=timeouts)
    finally:
        blocker.close()

    assert_failed(state, "ReadLockFailed", "FLUSH TABLES WITH READ LOCK", "Lock wait timeout")
    assert_database_healthy(site)
    assert_nothing_new_and_nothing_lost(site)


def test_a_lock_session_dropped_by_the_server_fails_the_run(site):
    # MariaDB drops the idle lock session after max_write_block_seconds: the dead man's switch
    # for a flow that dies holding the lock. Here the hold outlasts it.
    timeouts = FAST.model_copy(update={"max_write_block_seconds": 1})
    consistency = site.consistency("lock", sync_command=site.in_block("sleep 2.5"))

    state = run_backup(site, "lock", consistency=consistency, timeouts=timeouts)

    assert_failed(state, "ReadLockFailed", "ended before UNLOCK TABLES", "may not be consistent")
    assert_database_healthy(site)
    assert_old_backups_intact(site)  # no rotation on top of snapshots that may be inconsistent
