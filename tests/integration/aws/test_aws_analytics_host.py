"""setup-aws-analytics-host on the bed's moto server and a real sshd standing in for the
analytics instance.

After a deploy on moto, the instance's public address is pointed at the test sshd and its
console output (moto's is a fixed kernel log) is set to what cloud-init prints: the
fingerprint `ssh-keygen -lf` gives for the sshd's real host key, or another key's. Paths the
setup writes under ~/.ssh and /var/lib/analytics-tasks are temporary directories here.
"""

from __future__ import annotations

import json
import uuid

import pytest
from prefect.artifacts import Artifact

from blocks.database import MySqlDatabase
from blocks.ssh import SshIdentity
from flows.aws_analytics import deploy_aws_analytics
from flows.aws_analytics_host import InstanceAccess, setup_aws_analytics_host
from remote.host_keys import HostKeyNotVerified
from remote.setup import PipelineSetup
from tasks.host_setup import InsightsMigration, KeyDistribution
from tests.bed.sshd import generate_ed25519_key
from tests.fakes.openstack.console import console_log, fingerprint_of
from tests.integration.aws.conftest import BLOCK, site_of

pytestmark = pytest.mark.slow
ACCOUNT = "123456789012"


@pytest.fixture
def consoles(monkeypatch):
    """Instance id -> the console output moto returns for it (moto's own log otherwise)."""
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.ec2.responses import general
    from moto.ec2.utils import Base64EncodedString

    outputs: dict[str, str] = {}

    def get_console_output(self):
        instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))
        text = outputs.get(instance.id, general.SAMPLE_CONSOLE_OUTPUT)
        return ActionResult({"InstanceId": instance.id, "Timestamp": utcnow(),
                             "Output": Base64EncodedString.from_raw_string(text)})  # fmt: skip

    monkeypatch.setattr(general.General, "get_console_output", get_console_output)
    return outputs


class Node:
    """The deployed site's analytics-1 as the bed's sshd, the blocks, the node's paths."""

    def __init__(self, account: dict, aws, host, tmp, consoles, console: str | None) -> None:
        from moto.ec2.models import ec2_backends

        state = deploy_aws_analytics(site=site_of(account), aws_block=BLOCK, return_state=True,
                                     poll_interval_seconds=0.1, timeout_seconds=60)  # fmt: skip
        assert state.is_completed(), state.message
        self.site, self.host, self.tmp = site_of(account), host, tmp
        (self.instance_id,) = [
            i["InstanceId"]
            for r in aws.client("ec2").describe_instances(
                Filters=[{"Name": "tag:Name", "Values": ["analytics-1"]}])["Reservations"]
            for i in r["Instances"]
        ]  # fmt: skip
        backend = ec2_backends[ACCOUNT][aws.region].get_instance(self.instance_id)
        backend.nics[0].public_ip = host.address  # the Elastic IP leads to the bed's sshd
        if console is not None:
            consoles[self.instance_id] = console
        suffix = uuid.uuid4().hex[:8]
        self.ssh_block, self.deploy_block = f"ssh-{suffix}", f"deploy-{suffix}"
        self.db_block = f"db-{suffix}"
        SshIdentity(username=host.user, private_key=host.client_key.read_text(), known_hosts="",
                    port=host.port).save(self.ssh_block)  # fmt: skip
        deploy_key = generate_ed25519_key(tmp / "deploy" / "id_ed25519", comment="deploy")
        SshIdentity(username=host.user, private_key=deploy_key.read_text(),
                    known_hosts="").save(self.deploy_block)  # fmt: skip
        MySqlDatabase(host="rds.example", username="pipeline", password="s3cret-Pw",
                      database="reports").save(self.db_block)  # fmt: skip
        self.base, self.marker = tmp / "analytics-tasks", tmp / "insights-migrated"
        self.credentials = str(tmp / "etc" / "reports.json")

    def run(self, **access):
        return setup_aws_analytics_host(
            site=self.site, aws_block=BLOCK,
            access=InstanceAccess(ssh_block=self.ssh_block, poll_interval_seconds=0.1, **access),
            keys=KeyDistribution(deploy_key_block=self.deploy_block,
                                 authorized_keys=str(self.host.authorized_keys),
                                 key_pair_directory=str(self.tmp / "home" / ".ssh")),
            pipeline=PipelineSetup(enabled=False, base_dir=str(self.base)),
            override={
                "elasticsearch_host": "http://es.example:443/",
                "event_logs": {"source": ["s3://client-name-tracking-logs/logs/"]},
                "warehouse_path": "s3://client-name-edxanalytics/warehouse/",
                "database_export": {"database": "reports", "credentials": self.credentials},
            },
            database_credentials={self.credentials: self.db_block},
            insights=InsightsMigration(enabled=True, check_command=f"test -e {self.marker}",
                                       command=f"touch {self.marker}"),
            return_state=True,
        )  # fmt: skip

    def stored_known_hosts(self) -> str:
        return SshIdentity.load(self.ssh_block).known_hosts

    @property
    def override_cfg(self):
        return self.base / "analyticstack" / "override.cfg"


def test_host_key_from_the_console_output_then_every_setup_step(
    account, aws, ssh_host, tmp_path, consoles
):
    console = console_log([fingerprint_of(ssh_host.public_host_key)])
    node = Node(account, aws, ssh_host, tmp_path, consoles, console)
    first = node.run()
    assert first.is_completed(), first.message
    rows = first.result()
    assert {r["step"]: r["status"] for r in rows} == {
        "host key": "changed", "authorized key": "changed", "key pair": "changed",
        "override.cfg": "changed", "credentials": "changed", "insights migration": "changed",
    }  # fmt: skip
    assert rows[0]["host"] == ssh_host.address and rows[0]["detail"].endswith("(console)")
    assert node.stored_known_hosts().strip() == ssh_host.known_hosts_line
    assert "deploy" in ssh_host.authorized_keys.read_text()
    assert "host = http://es.example:443/" in node.override_cfg.read_text()
    assert json.loads((tmp_path / "etc" / "reports.json").read_text())["host"] == "rds.example"
    assert node.marker.exists()
    table = Artifact.get("aws-host-setup-client-name-analytics-1")
    assert "6 of 6 steps changed" in table.description and "s3cret" not in table.data

    # a rerun knows the host by known_hosts (the console is not asked again) and changes nothing
    consoles[node.instance_id] = "console rotated away\n"
    second = node.run()
    assert second.is_completed(), second.message
    assert {r["status"] for r in second.result()} == {"ok"}
    assert second.result()[0]["detail"].endswith("(known_hosts)")


@pytest.mark.parametrize(
    ("console", "message"),
    [("other key", "does NOT match the fingerprints"),
     (None, "has no SSH host key fingerprints")],
    ids=["another-key", "moto-kernel-log"],
)  # fmt: skip
def test_a_host_key_the_console_output_does_not_confirm_is_refused_and_nothing_runs(
    account, aws, ssh_host, tmp_path, consoles, console, message
):
    if console == "other key":
        other = generate_ed25519_key(tmp_path / "other" / "key")
        console = console_log([fingerprint_of(other.with_name("key.pub"))])
    node = Node(account, aws, ssh_host, tmp_path, consoles, console)
    state = node.run(console_wait_seconds=0.3)
    assert state.is_failed()
    with pytest.raises(HostKeyNotVerified, match=message):
        state.result()
    assert node.stored_known_hosts() == ""
    assert "deploy" not in ssh_host.authorized_keys.read_text()
    assert not node.override_cfg.exists() and not node.marker.exists()
    assert not (tmp_path / "etc" / "reports.json").exists()
