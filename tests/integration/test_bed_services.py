"""The test bed itself: every fixture starts a working service, and every fault control works.

Run with `-s` to see each fixture's start-up time; a summary is printed at the end regardless.
The fixtures come from tests/bed/fixtures.py, registered in tests/conftest.py.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time

import paramiko
import psutil
import pymysql
import pytest

from tests.bed.programs import require_programs
from tests.bed.sshd import known_hosts_text


def _print_startup(bed_startup_times, fixture: str) -> None:
    print(f"\n[bed] {fixture} started in {bed_startup_times.last(fixture):.3f} s")


def test_missing_program_fails_with_debian_package_name():
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y some-package"):
        require_programs({"no-such-program": "some-package"}, "Example")


# -- SSH ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ssh_host_runs_commands_with_verified_host_key(ssh_host, bed_startup_times):
    _print_startup(bed_startup_times, "ssh_host")
    assert ssh_host.known_hosts_line.startswith(f"[127.0.0.1]:{ssh_host.port} ssh-ed25519 AAAA")

    result = ssh_host.run("echo hello; id -un; exit 3")

    assert result.exit_status == 3
    assert result.stdout.split() == ["hello", ssh_host.user]


@pytest.mark.slow
def test_ssh_host_is_unknown_without_its_known_hosts_line(ssh_host):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        client.connect(ssh_host.address, port=ssh_host.port, username=ssh_host.user,
                       key_filename=str(ssh_host.client_key), look_for_keys=False,
                       allow_agent=False, timeout=10)  # fmt: skip
    client.close()


@pytest.mark.slow
def test_openssh_client_with_strict_host_key_checking(ssh_host):
    result = subprocess.run(ssh_host.ssh_argv("echo via-openssh"), capture_output=True,
                            text=True, timeout=30)  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "via-openssh"


@pytest.mark.slow
def test_replaced_host_key_is_refused(ssh_host):
    old_line = ssh_host.known_hosts_line
    ssh_host.connect(old_line).close()

    new_line = ssh_host.replace_host_key()

    assert new_line != old_line
    with pytest.raises(paramiko.BadHostKeyException):
        ssh_host.connect(old_line)
    ssh_host.connect(new_line).close()


@pytest.mark.slow
def test_cut_connections_ends_running_command_abnormally(ssh_host):
    client = ssh_host.connect()
    try:
        _stdin, stdout, _stderr = client.exec_command("echo started; sleep 60", timeout=30)
        assert stdout.readline().strip() == "started"

        killed = ssh_host.cut_connections()

        assert killed >= 2  # the session's sshd and the sleep
        assert stdout.channel.status_event.wait(10), "channel did not end after the cut"
        assert stdout.channel.recv_exit_status() == -1
    finally:
        client.close()
    assert ssh_host.session_processes() == []
    assert ssh_host.run("echo still-listening").stdout.strip() == "still-listening"


@pytest.mark.slow
def test_cut_connections_can_leave_the_command_running(ssh_host, tmp_path):
    marker = tmp_path / "finished"
    client = ssh_host.connect()
    try:
        _stdin, stdout, _stderr = client.exec_command(
            f"echo started; sleep 0.5; touch {shlex.quote(str(marker))}", timeout=30
        )
        assert stdout.readline().strip() == "started"
        ssh_host.cut_connections(kill_commands=False)
        assert stdout.channel.recv_exit_status() == -1
    finally:
        client.close()
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the remote command should have finished despite the cut"


@pytest.mark.slow
def test_three_ssh_hosts_are_distinct(ssh_hosts, bed_startup_times):
    _print_startup(bed_startup_times, "ssh_hosts (3)")
    known_hosts = paramiko.HostKeys()
    for line in known_hosts_text(ssh_hosts).splitlines():
        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        known_hosts.add(entry.hostnames[0], entry.key.get_name(), entry.key)

    assert len({host.known_hosts_line.split()[2] for host in ssh_hosts}) == 3
    assert len({(host.address, host.port) for host in ssh_hosts}) == 3
    for host in ssh_hosts:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        for hostname, keys in known_hosts.items():
            for key in keys.values():
                client.get_host_keys().add(hostname, key.get_name(), key)
        client.connect(host.address, port=host.port, username=host.user,
                       key_filename=str(host.client_key), look_for_keys=False,
                       allow_agent=False, timeout=10)  # fmt: skip
        _stdin, stdout, _stderr = client.exec_command("true")
        assert stdout.channel.recv_exit_status() == 0
        client.close()


# -- MariaDB -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_mariadb_serves_tcp_and_socket(mariadb, bed_startup_times):
    _print_startup(bed_startup_times, "mariadb")
    with mariadb.connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT CURRENT_USER()")
        assert cursor.fetchone() == ("bed@127.0.0.1",)
    assert "1" in mariadb.root_sql("SELECT 1")
    assert mariadb.is_running()


@pytest.mark.slow
def test_mariadb_stop_and_start_over_ssh(mariadb_via_ssh, bed_startup_times):
    _print_startup(bed_startup_times, "mariadb_via_ssh")
    host, server = mariadb_via_ssh.host, mariadb_via_ssh.server

    # commands over SSH reach the server's socket
    query = f"mariadb --no-defaults --socket={server.socket} -uroot -N -e 'SELECT 41 + 1'"
    assert host.run(query).stdout.strip() == "42"

    stopped = host.run(mariadb_via_ssh.stop_command)
    assert stopped.exit_status == 0, stopped.stderr
    assert not server.is_running()
    assert host.run(mariadb_via_ssh.status_command).exit_status == 3
    assert not server.accepts_tcp()
    with pytest.raises(pymysql.err.OperationalError):
        server.connect(connect_timeout=2)

    started_at = time.perf_counter()
    started = host.run(mariadb_via_ssh.start_command)
    print(f"\n[bed] mariadb-ctl start over SSH took {time.perf_counter() - started_at:.3f} s")
    assert started.exit_status == 0, started.stderr
    assert server.is_running()
    assert host.run(mariadb_via_ssh.status_command).exit_status == 0
    with server.connect(connect_timeout=5) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)

    # the Python object stops a server the script started (teardown relies on this)
    pid = server.running_pid()
    server.stop()
    assert not server.is_running()
    assert not server.accepts_tcp()
    assert not _alive(pid)


@pytest.mark.slow
def test_mariadb_ctl_start_twice_and_stop_twice_are_harmless(mariadb_via_ssh):
    host = mariadb_via_ssh.host
    assert host.run(mariadb_via_ssh.start_command).stdout.startswith("mariadbd already running")
    assert host.run(mariadb_via_ssh.stop_command).exit_status == 0
    again = host.run(mariadb_via_ssh.stop_command)
    assert (again.exit_status, again.stdout.strip()) == (0, "mariadbd not running")


@pytest.mark.slow
def test_mariadb_left_running_by_script_is_stopped_at_teardown(mariadb_via_ssh):
    """Leaves a script-started server behind on purpose; the fixture teardown must stop it."""
    host, server = mariadb_via_ssh.host, mariadb_via_ssh.server
    assert host.run(mariadb_via_ssh.stop_command).ok
    assert host.run(mariadb_via_ssh.start_command).ok
    assert server.is_running()
    assert server.process is None  # the server is no child of ours


# -- Galera ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_galera_single_node_is_synced_and_desync_toggles(galera, bed_startup_times):
    _print_startup(bed_startup_times, "galera")
    assert galera.wsrep_status("wsrep_local_state_comment") == "Synced"
    assert galera.wsrep_status("wsrep_cluster_size") == "1"
    assert galera.wsrep_status("wsrep_ready") == "ON"

    with galera.connect() as connection, connection.cursor() as cursor:
        cursor.execute("SET GLOBAL wsrep_desync=ON")
        cursor.execute("SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'")
        assert cursor.fetchone() == ("wsrep_local_state_comment", "Donor/Desynced")
        cursor.execute("SET GLOBAL wsrep_desync=OFF")
    assert galera.wsrep_status("wsrep_local_state_comment") == "Synced"


@pytest.mark.slow
def test_galera_restarts_through_control_script(galera):
    script = galera.write_control_script()
    assert subprocess.run([script, "stop"], capture_output=True, timeout=90).returncode == 0
    assert not galera.is_running()

    started = subprocess.run([script, "start"], capture_output=True, text=True, timeout=90)

    assert started.returncode == 0, started.stderr
    assert galera.wsrep_status("wsrep_local_state_comment") == "Synced"


# -- AWS (moto) --------------------------------------------------------------------------------


@pytest.mark.slow
def test_aws_reset_clears_buckets(aws, bed_startup_times):
    _print_startup(bed_startup_times, "moto_server (session)")
    _print_startup(bed_startup_times, "aws (reset)")
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="bed-bucket")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["bed-bucket"]

    aws.reset()

    assert s3.list_buckets()["Buckets"] == []


@pytest.mark.slow
def test_aws_environment_reaches_moto_from_a_subprocess(aws):
    aws.client("s3").create_bucket(Bucket="seen-by-subprocess")
    program = (
        "import boto3; print([b['Name'] for b in boto3.client('s3').list_buckets()['Buckets']])"
    )

    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['seen-by-subprocess']"


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
