"""Pure logic of host-key verification (remote.host_keys): console fingerprints, verdicts,
known_hosts entries."""

from __future__ import annotations

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from blocks.ssh import HostKeyMismatch, check_host_key, preferred_key_types
from remote.host_keys import (
    HostKeyNotVerified,
    console_matches,
    known_hosts_with,
    md5_fingerprint,
    parse_console_keys,
    sha256_fingerprint,
    verify_host_key,
)


def ed25519_public_key() -> paramiko.PKey:
    """A fresh ed25519 public key (only public keys take part in verification)."""
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    blob = paramiko.Message()
    blob.add_string("ssh-ed25519")
    blob.add_string(raw)
    return paramiko.Ed25519Key(data=blob.asbytes())


KEY = ed25519_public_key()
OTHER = "SHA256:" + "A" * 43


def console(*lines: str) -> str:
    return "\n".join(
        ["ci-info: ...", "-----BEGIN SSH HOST KEY FINGERPRINTS-----", *lines,
         "-----END SSH HOST KEY FINGERPRINTS-----"]
    )  # fmt: skip


def test_sha256_fingerprint_is_openssh_format():
    assert sha256_fingerprint(KEY) == KEY.fingerprint  # paramiko prints OpenSSH's format


def test_console_fingerprints_are_read_with_prefixes_and_formats():
    text = console(
        f"ec2: 256 {sha256_fingerprint(KEY)} root@analytics (ED25519)",
        "[ 9.1] cloud-init[1]: 3072 aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99 r@h (RSA)",
    )
    keys = parse_console_keys(text)
    assert keys.fingerprints == (
        ("ED25519", sha256_fingerprint(KEY)),
        ("RSA", "MD5:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99"),
    )
    assert console_matches(KEY, keys) is True
    assert parse_console_keys("no blocks at all") .fingerprints == ()  # fmt: skip
    # outside the BEGIN/END block, fingerprints are not trusted
    assert not parse_console_keys(f"256 {sha256_fingerprint(KEY)} x (ED25519)")


def test_md5_fingerprints_of_older_cloud_init_match_too():
    md5 = md5_fingerprint(KEY).removeprefix("MD5:")
    assert console_matches(KEY, parse_console_keys(console(f"256 {md5} root@h (ED25519)")))


def test_a_console_with_only_other_types_proves_nothing():
    keys = parse_console_keys(console(f"3072 {OTHER} root@h (RSA)"))
    assert console_matches(KEY, keys) is None
    with pytest.raises(HostKeyNotVerified, match="lists none of its type"):
        verify_host_key("10.0.0.5", 22, KEY, paramiko.HostKeys(), keys)


def test_verdicts():
    trusted = paramiko.HostKeys()
    good = parse_console_keys(console(f"256 {sha256_fingerprint(KEY)} root@h (ED25519)"))
    bad = parse_console_keys(console(f"256 {OTHER} root@h (ED25519)"))
    check = verify_host_key("10.0.0.5", 2222, KEY, trusted, good)
    assert (check.label, check.source, check.status) == ("[10.0.0.5]:2222", "console", "changed")
    with pytest.raises(HostKeyNotVerified, match=r"\[10.0.0.5\]:2222 .* does NOT match"):
        verify_host_key("10.0.0.5", 2222, KEY, trusted, bad, trust_on_first_use=True)
    tofu = verify_host_key("10.0.0.5", 22, KEY, trusted, parse_console_keys(""),
                           trust_on_first_use=True)  # fmt: skip
    assert tofu.source == "trust-on-first-use"
    trusted.add("10.0.0.5", KEY.get_name(), KEY)
    assert verify_host_key("10.0.0.5", 22, KEY, trusted, bad).status == "ok"
    changed = paramiko.HostKeys()
    changed.add("10.0.0.5", "ssh-ed25519", ed25519_public_key())
    with pytest.raises(HostKeyMismatch, match="10.0.0.5 CHANGED"):
        verify_host_key("10.0.0.5", 22, KEY, changed, good, trust_on_first_use=True)


def test_known_hosts_lines_are_added_once():
    text = known_hosts_with("", "[h]:2", KEY)
    assert text == f"[h]:2 ssh-ed25519 {KEY.get_base64()}\n"
    assert known_hosts_with(text, "[h]:2", KEY) == text


def test_pipeline_setup_is_checked_before_anything_runs():
    from flows.host_setup import PipelineSetup

    with pytest.raises(ValueError, match="source 'git' needs the repository URL"):
        PipelineSetup(source="git")
    with pytest.raises(ValueError, match="base_dir 'tmp/x': expected an absolute"):
        PipelineSetup(base_dir="tmp/x")
    with pytest.raises(ValueError, match="remote_name '../x'"):
        PipelineSetup(remote_name="../x")
    assert PipelineSetup().home == "/var/lib/analytics-tasks/analyticstack"


RSA = paramiko.RSAKey.generate(2048)


def test_a_host_known_under_another_key_type_has_changed_with_or_without_tofu():
    trusted = paramiko.HostKeys()
    trusted.add("[10.0.0.5]:2222", "ssh-rsa", RSA)
    # even a console log vouching for the new key does not make it new
    good = parse_console_keys(console(f"256 {sha256_fingerprint(KEY)} root@h (ED25519)"))
    for tofu in (False, True):
        with pytest.raises(HostKeyMismatch) as refused:
            verify_host_key("10.0.0.5", 2222, KEY, trusted, good, trust_on_first_use=tofu)
        message = str(refused.value)
        assert refused.value.host == "[10.0.0.5]:2222"
        assert f"[10.0.0.5]:2222 CHANGED: it presents ssh-ed25519 {sha256_fingerprint(KEY)}" in (
            message
        )
        assert f"known_hosts (ssh-rsa {sha256_fingerprint(RSA)})" in message


def test_a_host_is_known_by_all_its_keys():
    trusted = paramiko.HostKeys()
    trusted.add("10.0.0.5", "ssh-rsa", RSA)
    trusted.add("10.0.0.5", "ssh-ed25519", KEY)
    for key in (KEY, RSA):
        assert verify_host_key("10.0.0.5", 22, key, trusted, parse_console_keys("")).status == "ok"
        assert check_host_key("10.0.0.5", key, trusted) is True
    other = ed25519_public_key()
    with pytest.raises(HostKeyMismatch, match=r"ssh-rsa SHA256:.*, ssh-ed25519 SHA256:") as refused:
        check_host_key("10.0.0.5", other, trusted)
    assert sha256_fingerprint(other) in str(refused.value)
    assert check_host_key("10.0.0.6", other, trusted) is False  # unknown, not changed


def test_hashed_known_hosts_entries_count_as_known():
    hashed = paramiko.HostKeys.hash_host("10.0.0.5")
    trusted = paramiko.HostKeys()
    trusted.add(hashed, "ssh-rsa", RSA)
    with pytest.raises(HostKeyMismatch, match="10.0.0.5 CHANGED"):
        check_host_key("10.0.0.5", KEY, trusted)


def test_known_key_types_are_asked_for_first():
    offered = list(paramiko.Transport._preferred_keys)
    assert offered[0] == "ssh-ed25519"  # paramiko's own choice when nothing is known
    rsa_first = preferred_key_types([RSA], offered)
    assert rsa_first[:2] == ["rsa-sha2-512", "rsa-sha2-256"]
    assert sorted(rsa_first) == sorted(offered)  # nothing added, nothing lost
    assert preferred_key_types([KEY, RSA], offered)[:3] == [
        "ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256",
    ]  # fmt: skip
    assert preferred_key_types([], offered) == offered
