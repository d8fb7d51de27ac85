"""setup-analytics-host on a real sshd and the OpenStack fake.

The analytics server exists in the fake with the test sshd's address and a console log in
which cloud-init printed that sshd's real host key fingerprint (or another one). Paths the
seed puts under ~/.ssh and /var/lib/analytics-tasks are temporary directories here: the
sshd's user is the one running the tests.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from prefect.artifacts import Artifact

from blocks.database import MySqlDatabase
from blocks.openstack import OpenStackCloud
from blocks.ssh import HostKeyMismatch, SshIdentity
from flows.host_setup import (
    HostAccess,
    InsightsMigration,
    KeyDistribution,
    PipelineSetup,
    setup_analytics_host,
)
from remote.host_keys import HostKeyNotVerified
from remote.setup import PROJECT_ROOT, project_source_files
from tests.bed.sshd import SshHost, generate_ed25519_key, generate_key, public_key_line
from tests.fakes.openstack.console import console_log as cloud_init_console
from tests.fakes.openstack.console import fingerprint_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),
]


#: An RSA host key the console lists but the sshd never presents.
OTHER_RSA = "3072 SHA256:0000000000000000000000000000000000000000000 root@analytics (RSA)"


def console_log(fingerprint_line: str, key_line: str | None = None) -> str:
    """A console log listing OTHER_RSA and `fingerprint_line` (and `key_line` as a key)."""
    return cloud_init_console([OTHER_RSA, fingerprint_line], [key_line] if key_line else [])


class Site:
    """The analytics server in the fake, its sshd, the blocks, and the node's directories."""

    def __init__(
        self,
        fake,
        host: SshHost,
        tmp: Path,
        console: str | None = None,
        install: dict | None = None,
    ) -> None:
        """`install`: the pipeline venv step's installer settings (None: the step is off)."""
        self.fake, self.host, self.tmp = fake, host, tmp
        self.install = install or {"enabled": False}
        if console is None:
            console = console_log(fingerprint_of(host.public_host_key))
        self.server = fake.add_server(
            "analytics", addresses={"management": [host.address]}, console_output=console
        )
        suffix = uuid.uuid4().hex[:8]
        self.cloud_block, self.ssh_block = f"cloud-{suffix}", f"ssh-{suffix}"
        self.deploy_block, self.db_block = f"deploy-{suffix}", f"db-{suffix}"
        OpenStackCloud(**fake.credentials).save(self.cloud_block)
        SshIdentity(
            username=host.user, private_key=host.client_key.read_text(), known_hosts="",
            port=host.port,
        ).save(self.ssh_block)  # fmt: skip
        deploy_key = generate_ed25519_key(tmp / "deploy" / "id_ed25519", comment="deploy")
        self.deploy_public = deploy_key.with_name("id_ed25519.pub").read_text().split()[:2]
        SshIdentity(
            username=host.user, private_key=deploy_key.read_text(), known_hosts=""
        ).save(self.deploy_block)  # fmt: skip
        MySqlDatabase(
            host="db.example", username="pipeline", password="s3cret-Pw", database="reports"
        ).save(self.db_block)  # fmt: skip
        self.home = tmp / "node-home"
        self.base = tmp / "analytics-tasks"
        self.marker = tmp / "insights-migrated"

    def access(self, **overrides) -> HostAccess:
        return HostAccess(openstack_block=self.cloud_block, ssh_block=self.ssh_block, **overrides)

    def run(self, access: HostAccess | None = None, **overrides):
        arguments = {
            "server": "analytics",
            "access": access or self.access(),
            "keys": KeyDistribution(
                deploy_key_block=self.deploy_block,
                authorized_keys=str(self.host.authorized_keys),
                key_pair_directory=str(self.home / ".ssh"),
            ),
            "pipeline": PipelineSetup(base_dir=str(self.base), **self.install),
            "override": {
                "elasticsearch_host": "http://192.168.122.111:9201/",
                "event_logs": {"source": [str(self.tmp / "logs")]},
                "warehouse_path": str(self.tmp / "warehouse"),
                "database_export": {"database": "reports", "credentials": self.credentials},
            },
            "database_credentials": {self.credentials: self.db_block},
            "insights": InsightsMigration(
                enabled=True,
                check_command=f"test -e {self.marker}",
                command=f"touch {self.marker}",
            ),  # fmt: skip
        }
        return setup_analytics_host(**{**arguments, **overrides})

    @property
    def credentials(self) -> str:
        return str(self.tmp / "etc" / "reports.json")

    def stored_known_hosts(self) -> str:
        return SshIdentity.load(self.ssh_block).known_hosts


def statuses(rows: list[dict]) -> dict[str, str]:
    return {row["step"]: row["status"] for row in rows}


def test_every_step_changes_once_then_is_ok(openstack_fake, ssh_host, tmp_path, locked_uv_install):
    site = Site(openstack_fake, ssh_host, tmp_path, install=locked_uv_install)
    first = site.run()
    assert statuses(first) == {
        "host key": "changed", "authorized key": "changed", "key pair": "changed",
        "override.cfg": "changed", "credentials": "changed", "pipeline venv": "changed",
        "insights migration": "changed",
    }  # fmt: skip
    # the verified host key is stored in the block, for every other flow
    assert site.stored_known_hosts().strip() == ssh_host.known_hosts_line
    # ssh-copy-id: the deploy key is authorized (and the bed's own key still is)
    authorized = ssh_host.authorized_keys.read_text()
    assert " ".join(site.deploy_public) in authorized
    deploy = SshIdentity.load(site.deploy_block)
    deploy.known_hosts, deploy.port = site.stored_known_hosts(), ssh_host.port
    client = deploy.connect(ssh_host.address)  # the deploy key now logs in
    client.close()
    # the key pair, 0600, private key from the block
    pair = site.home / ".ssh"
    assert (pair / "id_rsa").read_text() == deploy.private_key.get_secret_value()
    assert (pair / "id_rsa.pub").read_text().split()[:2] == site.deploy_public
    assert {(p.stat().st_mode & 0o777) for p in pair.iterdir()} == {0o600}
    # override.cfg and credentials
    home = site.base / "analyticstack"
    assert (
        "[elasticsearch]\nhost = http://192.168.122.111:9201/"
        in (home / "override.cfg").read_text()
    )
    credentials = Path(site.credentials)
    assert json.loads(credentials.read_text())["password"] == "s3cret-Pw"
    assert credentials.stat().st_mode & 0o777 == 0o600
    # the venv runs launch-task
    launched = subprocess.run(
        [str(home / "venv" / "bin" / "launch-task"), "--help"], capture_output=True, text=True
    )
    assert launched.returncode == 0, launched.stderr
    assert site.marker.exists()
    table = Artifact.get("host-setup-analytics")
    assert "7 of 7 steps changed" in table.description
    assert "s3cret" not in table.data

    second = site.run()
    assert set(statuses(second).values()) == {"ok"}, second
    assert len(second) == 7
    assert "0 of 7 steps changed" in Artifact.get("host-setup-analytics").description

    # a key pair whose mode was loosened is put right, and only that
    (pair / "id_rsa").chmod(0o644)
    third = statuses(site.run())
    assert third["key pair"] == "changed"
    assert [s for s in third.values() if s == "changed"] == ["changed"]
    assert (pair / "id_rsa").stat().st_mode & 0o777 == 0o600


def test_console_fingerprint_mismatch_is_refused(openstack_fake, ssh_host, tmp_path):
    other = generate_ed25519_key(tmp_path / "other" / "key")
    other_fingerprint = fingerprint_of(other.with_name("key.pub"))
    site = Site(openstack_fake, ssh_host, tmp_path, console=console_log(other_fingerprint))
    with pytest.raises(HostKeyNotVerified, match="does NOT match the fingerprints"):
        site.run(pipeline=PipelineSetup(enabled=False))
    assert site.stored_known_hosts() == ""
    assert "deploy" not in ssh_host.authorized_keys.read_text()  # nothing else was done


def test_console_full_key_mismatch_is_refused_even_if_fingerprints_are_absent(
    openstack_fake, ssh_host, tmp_path
):
    other = generate_ed25519_key(tmp_path / "other" / "key")
    key_line = " ".join(other.with_name("key.pub").read_text().split()[:2])
    console = console_log("no fingerprint here", key_line=key_line)
    site = Site(openstack_fake, ssh_host, tmp_path, console=console)
    with pytest.raises(HostKeyNotVerified, match="does NOT match"):
        site.run(pipeline=PipelineSetup(enabled=False))


def test_without_console_fingerprints_only_trust_on_first_use_records_the_key(
    openstack_fake, ssh_host, tmp_path
):
    site = Site(openstack_fake, ssh_host, tmp_path, console="Cloud-init finished\n")
    no_steps = {"keys": KeyDistribution(), "pipeline": PipelineSetup(enabled=False),
                "override": None, "database_credentials": None,
                "insights": InsightsMigration()}  # fmt: skip
    with pytest.raises(HostKeyNotVerified, match="no SSH host key fingerprints"):
        site.run(**no_steps)
    assert site.stored_known_hosts() == ""
    rows = site.run(access=site.access(trust_on_first_use=True), **no_steps)
    assert rows == [
        {"step": "host key", "host": ssh_host.address, "status": "changed",
         "detail": rows[0]["detail"]},
    ]  # fmt: skip
    assert "trust-on-first-use" in rows[0]["detail"]
    assert site.stored_known_hosts().strip() == ssh_host.known_hosts_line


def test_a_changed_host_key_stops_the_flow(openstack_fake, ssh_host, tmp_path):
    site = Site(openstack_fake, ssh_host, tmp_path)
    only_keys = {"pipeline": PipelineSetup(enabled=False), "insights": InsightsMigration()}
    site.run(**only_keys)
    recorded = site.stored_known_hosts()
    ssh_host.replace_host_key()
    # even a console log showing the new key does not override known_hosts, nor does TOFU
    openstack_fake.set_console_output(
        "analytics", console_log(fingerprint_of(ssh_host.public_host_key))
    )
    with pytest.raises(HostKeyMismatch, match=r"host key of \[127.0.0.1\]:\d+ CHANGED"):
        site.run(access=site.access(trust_on_first_use=True), **only_keys)
    assert site.stored_known_hosts() == recorded
    table = Artifact.get("host-setup-analytics")
    assert "0 of 0 steps" in table.description


def test_override_settings_are_validated_before_anything_runs(openstack_fake, ssh_host, tmp_path):
    site = Site(openstack_fake, ssh_host, tmp_path)
    with pytest.raises(Exception, match="elasticsearch_host"):
        site.run(override={"elasticsearch_host": "ftp://x", "event_logs": {"source": ["/l"]},
                           "warehouse_path": "/w"})  # fmt: skip
    assert site.stored_known_hosts() == ""


def test_git_source_installs_a_branch_and_follows_its_new_commits(
    ssh_host, tmp_path, locked_uv_install
):
    """`source: git` without a cloud: the host key comes from the block's known_hosts."""
    repo = tmp_path / "repo"
    for path in project_source_files():
        target = repo / path.relative_to(PROJECT_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org",
             *args], check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip

    git("init", "-q", "-b", "release")
    git("add", "-A")
    git("commit", "-qm", "first")
    block = f"ssh-{uuid.uuid4().hex[:8]}"
    SshIdentity(
        username=ssh_host.user, private_key=ssh_host.client_key.read_text(),
        known_hosts=ssh_host.known_hosts_line, port=ssh_host.port,
    ).save(block)  # fmt: skip
    pipeline = PipelineSetup(
        base_dir=str(tmp_path / "tasks"), source="git", repo=f"file://{repo}", branch="release",
        **locked_uv_install,
    )  # fmt: skip

    def run() -> dict[str, str]:
        access = HostAccess(openstack_block=None, ssh_block=block)
        return statuses(setup_analytics_host(server=ssh_host.address, access=access,
                                             pipeline=pipeline))  # fmt: skip

    assert run() == {"host key": "ok", "pipeline venv": "changed"}
    home = tmp_path / "tasks" / "analyticstack"
    marker = home / "venv" / ".edx-ops-flows-installed"
    assert marker.read_text().split()[-1] == git("rev-parse", "HEAD")
    assert (home / "repo" / "pipeline" / "launch.py").exists()
    assert run() == {"host key": "ok", "pipeline venv": "ok"}
    (repo / "README.md").write_text("changed\n")
    git("commit", "-qam", "second")
    assert run()["pipeline venv"] == "changed"
    assert marker.read_text().split()[-1] == git("rev-parse", "HEAD")
    launched = subprocess.run([str(home / "venv" / "bin" / "launch-task"), "--help"],
                              capture_output=True)  # fmt: skip
    assert launched.returncode == 0
    with pytest.raises(ValueError, match="has no branch 'nope'"):
        setup_analytics_host(
            server=ssh_host.address, access=HostAccess(openstack_block=None, ssh_block=block),
            pipeline=pipeline.model_copy(update={"branch": "nope"}),
        )  # fmt: skip


@pytest.mark.parametrize("trust_on_first_use", [False, True])
def test_a_host_known_under_rsa_presenting_ed25519_stops_the_flow(
    openstack_fake, ssh_host, tmp_path, trust_on_first_use
):
    # known_hosts has an RSA key for the node; its sshd now presents only an ed25519 key, which
    # the console log even vouches for: a changed key all the same, not a new key type
    old = generate_key(tmp_path / "old-rsa-host-key", key_type="rsa")
    known = f"{ssh_host.known_hosts_name} {public_key_line(old)}\n"
    site = Site(openstack_fake, ssh_host, tmp_path)
    identity = SshIdentity.load(site.ssh_block)
    identity.known_hosts = known
    identity.save(site.ssh_block, overwrite=True)

    label = re.escape(ssh_host.known_hosts_name)
    with pytest.raises(HostKeyMismatch, match=rf"{label} CHANGED: it presents ssh-ed25519"):
        site.run(access=site.access(trust_on_first_use=trust_on_first_use))
    assert site.stored_known_hosts() == known
    assert "deploy" not in ssh_host.authorized_keys.read_text()  # nothing else was done
    assert "0 of 0 steps" in Artifact.get("host-setup-analytics").description
