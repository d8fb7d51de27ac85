"""remote.ssh's one channel pump, in both modes (collect, and stream line by line), against
real sshd hosts: large output arrives whole, a cut connection or a passed deadline is an error
naming host and command, and output ends at EOF plus the exit status, whichever comes first."""

from __future__ import annotations

import threading
import time

import pytest

from blocks.ssh import SshIdentity
from remote.ssh import ConnectionLost, RemoteCommandTimeout, SshSession

pytestmark = pytest.mark.slow

MODES = ["collect", "stream"]
#: 400,001 numbers of 7 digits and a newline each: 3,200,008 bytes
BIG = "seq 1000000 1400000"
BIG_TEXT = "".join(f"{n}\n" for n in range(1000000, 1400001))


def identity_for(host) -> SshIdentity:
    return SshIdentity(
        username=host.user, private_key=host.client_key.read_text(),
        known_hosts=host.known_hosts_line, port=host.port, connect_timeout=5,
    )  # fmt: skip


def run(session: SshSession, mode: str, command: str, **options):
    """The pump in `mode`: the result and, streaming, the lines `on_line` was given."""
    lines: list[str] = []
    on_line = lines.append if mode == "stream" else None
    result = session.run(command, expect_success=False, on_line=on_line, **options)
    return result, lines


def test_three_megabytes_are_collected_whole_on_stdout_and_stderr(ssh_host):
    with identity_for(ssh_host).session(ssh_host.address) as session:
        result, _ = run(session, "collect", f"{BIG}; {BIG} >&2")

    assert len(result.stdout) == len(result.stderr) == 3_200_008
    assert result.stdout == BIG_TEXT and result.stderr == BIG_TEXT
    assert result.exit_status == 0


def test_three_megabytes_are_streamed_line_by_line_complete(ssh_host):
    with identity_for(ssh_host).session(ssh_host.address) as session:
        result, lines = run(session, "stream", BIG)

    assert sum(len(line) + 1 for line in lines) == 3_200_008
    assert "".join(f"{line}\n" for line in lines) == BIG_TEXT
    assert result.stdout == "\n".join(lines[-40:])  # the tail, for error messages
    assert result.exit_status == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_killed_sshd_is_a_lost_connection_naming_host_and_command(ssh_host, mode):
    cutter = threading.Timer(0.5, ssh_host.cut_connections)
    with identity_for(ssh_host).session(ssh_host.address) as session:
        cutter.start()
        try:
            with pytest.raises(ConnectionLost) as lost:
                run(session, mode, "echo started; sleep 20")
        finally:
            cutter.cancel()

    assert lost.value.host == ssh_host.address
    message = str(lost.value)
    assert f"connection to {ssh_host.address} was lost while running `echo started; sleep 20`" \
        in message  # fmt: skip
    assert "started" in message or mode == "collect"  # the output so far, streamed lines too


@pytest.mark.parametrize("mode", MODES)
def test_a_transport_closed_mid_command_is_a_lost_connection(ssh_host, mode):
    with identity_for(ssh_host).session(ssh_host.address) as session:
        closer = threading.Timer(0.5, session.client.get_transport().close)
        closer.start()
        started = time.monotonic()
        with pytest.raises(ConnectionLost, match=r"lost while running `sleep 20`"):
            run(session, mode, "sleep 20")

    assert time.monotonic() - started < 5


@pytest.mark.parametrize("mode", MODES)
def test_a_timeout_is_raised_in_time_and_frees_the_channel(ssh_host, mode):
    with identity_for(ssh_host).session(ssh_host.address) as session:
        started = time.monotonic()
        with pytest.raises(RemoteCommandTimeout) as late:
            run(session, mode, "echo started; sleep 30", timeout=1)
        elapsed = time.monotonic() - started

        assert 1 <= elapsed < 1.5
        # the sleeping command keeps neither the pump, nor the connection, nor its closing
        assert session.run("echo next").stdout == "next\n"
        closing = time.monotonic()
    assert time.monotonic() - closing < 1
    assert isinstance(late.value, TimeoutError)
    assert str(late.value) == f"`echo started; sleep 30` on {ssh_host.address} did not finish " \
        "within 1s"  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_a_command_that_closes_stdout_first_still_gives_stderr_and_status(ssh_host, mode):
    with identity_for(ssh_host).session(ssh_host.address) as session:
        result, lines = run(session, mode, "echo out; exec 1>&-; sleep 1; echo done >&2; exit 3")

    assert result.exit_status == 3
    if mode == "collect":
        assert (result.stdout, result.stderr) == ("out\n", "done\n")
    else:
        assert lines == ["out", "done"]


def test_a_session_reads_and_writes_files_over_its_sftp(ssh_host, tmp_path):
    target = tmp_path / "sub" / "file"
    with identity_for(ssh_host).session(ssh_host.address) as session:
        session.run(f"mkdir -p {target.parent}")
        assert session.read_file(str(target)) is None
        session.write_file(str(target), b"secret\n", 0o600)
        assert session.read_file(str(target)) == b"secret\n"
        assert session.run(f"cat {target}").stdout == "secret\n"  # commands and SFTP together

    assert target.stat().st_mode & 0o777 == 0o600
    assert session.client.get_transport() is None or not session.client.get_transport().is_active()
