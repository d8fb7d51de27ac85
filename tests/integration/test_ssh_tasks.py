"""blocks.ssh.SshIdentity and tasks.ssh against real sshd hosts: host keys always verified,
failures named by host and command, a cut connection is a failure."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time

import paramiko
import pytest

from blocks.ssh import (
    HostKeyMismatch,
    SshConnectFailed,
    SshIdentity,
    UnknownHostKey,
    sha256_fingerprint,
)
from remote.ssh import fetch_host_key
from tasks.ssh import (
    ConnectionLost,
    RemoteCommandFailed,
    RemoteCommandTimeout,
    read_host_facts,
    run_command,
)
from tests.bed.sshd import generate_key, public_key_line

pytestmark = pytest.mark.slow


def identity_for(host, **overrides) -> SshIdentity:
    fields = {
        "username": host.user,
        "private_key": host.client_key.read_text(),
        "known_hosts": host.known_hosts_line,
        "port": host.port,
        "connect_timeout": 5,
    }
    return SshIdentity(**{**fields, **overrides})


def test_command_output_and_exit_status_come_back_as_data(ssh_host):
    result = run_command(identity_for(ssh_host), ssh_host.address, "echo out; echo err >&2; cat")

    assert (result.exit_status, result.stdout, result.stderr) == (0, "out\n", "err\n")
    assert result.host == ssh_host.address  # `cat` got EOF on stdin instead of hanging


def test_large_output_is_collected_completely(ssh_host):
    result = run_command(identity_for(ssh_host), ssh_host.address, "head -c 3000000 /dev/zero")

    assert len(result.stdout) == 3_000_000


def test_a_failing_command_names_host_command_status_and_stderr(ssh_host):
    identity = identity_for(ssh_host)

    with pytest.raises(RemoteCommandFailed) as failed:
        run_command(identity, ssh_host.address, "echo 'Unit mariadb not found.' >&2; exit 5")

    message = str(failed.value)
    for fragment in (ssh_host.address, "exit 5`", "exit status 5", "mariadb not found"):
        assert fragment in message
    assert run_command(identity, ssh_host.address, "exit 5", expect_success=False).exit_status == 5


def test_an_unknown_host_is_refused(ssh_host_factory):
    known, unknown = ssh_host_factory(name="known"), ssh_host_factory(name="unknown")
    identity = identity_for(known, port=unknown.port)

    with pytest.raises(UnknownHostKey) as refused:
        run_command(identity, unknown.address, "true")

    assert f"[{unknown.address}]:{unknown.port} is not in" in str(refused.value)


def test_a_changed_host_key_is_refused(ssh_host):
    identity = identity_for(ssh_host)
    ssh_host.replace_host_key()

    with pytest.raises(HostKeyMismatch, match=r"does not match known_hosts") as refused:
        run_command(identity, ssh_host.address, "true")

    assert refused.value.host == f"[{ssh_host.address}]:{ssh_host.port}"
    assert run_command(identity_for(ssh_host), ssh_host.address, "true").ok  # the new line works


def test_a_refused_login_is_clear_and_quotes_no_key(ssh_host):
    other = io.StringIO()
    paramiko.RSAKey.generate(2048).write_private_key(other)
    identity = identity_for(ssh_host, private_key=other.getvalue())

    with pytest.raises(SshConnectFailed, match="was refused") as refused:
        run_command(identity, ssh_host.address, "true")

    assert other.getvalue().splitlines()[1] not in str(refused.value)


def test_a_cut_connection_is_a_failure_and_the_next_command_works(ssh_host):
    identity = identity_for(ssh_host)
    threading.Timer(0.5, ssh_host.cut_connections).start()

    with pytest.raises(ConnectionLost, match=r"lost while running `sleep 30`"):
        run_command(identity, ssh_host.address, "sleep 30")

    assert run_command(identity, ssh_host.address, "echo back").stdout == "back\n"


def test_a_command_outliving_its_timeout_fails_in_time(ssh_host):
    started = time.monotonic()

    with pytest.raises(RemoteCommandTimeout, match=r"did not finish within 0.5s"):
        run_command(identity_for(ssh_host), ssh_host.address, "sleep 30", timeout=0.5)

    assert time.monotonic() - started < 5


def test_an_unreachable_host_fails_within_the_connect_timeout(ssh_host):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    identity = identity_for(ssh_host, port=port)

    with pytest.raises(SshConnectFailed, match=f"cannot connect to \\[127.0.0.1\\]:{port}"):
        identity.connect("127.0.0.1")


def test_host_facts_come_from_the_host_itself(ssh_host):
    facts = read_host_facts.fn(identity_for(ssh_host), ssh_host.address)

    assert facts.hostname == socket.gethostname()
    assert facts.has_address("127.0.0.1")


def rsa_line_the_host_does_not_have(host, tmp_path) -> str:
    key = generate_key(tmp_path / "old-rsa-host-key", key_type="rsa")
    return f"{host.known_hosts_name} {public_key_line(key)}"


def test_a_host_known_under_rsa_presenting_ed25519_has_changed(ssh_host, tmp_path):
    # as after a rebuild whose new image has an ed25519 key only: not a new host
    known = rsa_line_the_host_does_not_have(ssh_host, tmp_path)
    identity = identity_for(ssh_host, known_hosts=known)

    with pytest.raises(HostKeyMismatch) as refused:
        identity.connect(ssh_host.address)

    label = f"[{ssh_host.address}]:{ssh_host.port}"
    presented = paramiko.Ed25519Key(filename=str(ssh_host.host_key))
    old = paramiko.PKey.from_type_string("ssh-rsa", base64.b64decode(known.split()[2]))
    assert refused.value.host == label
    assert f"{label} CHANGED: it presents ssh-ed25519 {sha256_fingerprint(presented)}" in str(
        refused.value
    )
    assert f"known_hosts (ssh-rsa {sha256_fingerprint(old)})" in str(refused.value)


def test_a_host_with_a_known_rsa_key_and_a_new_ed25519_key_is_reached_by_its_rsa_key(ssh_host):
    rsa_line = ssh_host.add_host_key("rsa")
    # unasked, the host presents ed25519 (the first type paramiko offers)
    assert fetch_host_key(ssh_host.address, ssh_host.port).get_name() == "ssh-ed25519"

    client = identity_for(ssh_host, known_hosts=rsa_line).connect(ssh_host.address)
    client.close()
    known = SshIdentity(username="x", private_key="-", known_hosts=rsa_line).host_keys()
    presented = fetch_host_key(
        ssh_host.address, ssh_host.port, known=list(known[ssh_host.known_hosts_name].values())
    )
    assert presented.get_name() == "ssh-rsa"
