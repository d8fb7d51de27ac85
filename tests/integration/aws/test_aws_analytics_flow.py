"""deploy-aws-analytics and destroy-aws-analytics against the bed's moto server: plan, apply,
nothing to do, drift corrected, lint refusals, teardown keeping data unless forced, and no
secret in logs, artifacts or exceptions."""

from __future__ import annotations

import json
import logging

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect_aws import AwsCredentials

from domain.aws_plan import UnsafeRuleRefused, shown
from flows.aws_analytics import deploy_aws_analytics
from flows.aws_analytics_destroy import destroy_aws_analytics
from tests.integration.aws.conftest import BLOCK, RDS_PASSWORD, SECRET_ACCESS_KEY, site_of

pytestmark = pytest.mark.slow


def deploy(settings, **options):
    return deploy_aws_analytics(
        site=site_of(settings), aws_block=BLOCK, poll_interval_seconds=0.1, timeout_seconds=60,
        return_state=True, **options,
    )  # fmt: skip


def destroy(settings, **options):
    return destroy_aws_analytics(
        site=site_of(settings), aws_block=BLOCK, poll_interval_seconds=0.1, timeout_seconds=60,
        return_state=True, **options,
    )  # fmt: skip


def completed(state) -> dict:
    assert state.is_completed(), state.message
    return state.result()


async def artifacts_of(flow_run_id):
    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


async def logs_of(flow_run_id):
    async with get_client() as client:
        return await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )


def plan_rows(state) -> list[dict]:
    import asyncio

    (plan,) = [a for a in asyncio.run(artifacts_of(state.state_details.flow_run_id))
               if (a.key or "").startswith("aws-plan-")]  # fmt: skip
    return json.loads(plan.data) if isinstance(plan.data, str) else plan.data


def access_keys(aws) -> dict[str, str]:
    """User -> its one access key id (fails if a user has several)."""
    iam, found = aws.client("iam"), {}
    for user in iam.list_users()["Users"]:
        (key,) = iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]
        found[user["UserName"]] = key["AccessKeyId"]
    return found


def instances_named(aws, name) -> list[dict]:
    pages = aws.client("ec2").describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])[
        "Reservations"
    ]
    return [instance for page in pages for instance in page["Instances"]]


def ingress(aws, vpc, name) -> set[tuple]:
    ec2 = aws.client("ec2")
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "SecurityGroups"
    ]
    names = {g["GroupId"]: g["GroupName"] for g in groups}
    (group,) = [g for g in groups if g["GroupName"] == name]
    return {
        (p["FromPort"], r.get("CidrIp") or names[r.get("GroupId")])
        for p in group["IpPermissions"]
        for r in p.get("IpRanges", []) + p.get("UserIdGroupPairs", [])
    }


def test_empty_account_all_create_then_apply_then_nothing_to_do(account, aws):
    first = deploy(account)
    result = completed(first)
    rows = plan_rows(first)
    prerequisites = {"vpc", "route", "bucket_policy", "key_pair"}
    assert {r["action"] for r in rows if r["kind"] not in prerequisites | {"s3_bucket"}} == {
        "create"
    }
    # the tracking-logs bucket the LMS already writes to is taken as it is
    assert {r["name"]: r["action"] for r in rows if r["kind"] == "s3_bucket"} == {
        "client-name-tracking-logs": "unchanged",
        "client-name-analytics-emr": "create",
        "client-name-edxanalytics": "create",
        "client-name-analytics-api-reports": "create",
    }
    assert {r["kind"]: r["changes"] for r in rows if r["kind"] == "vpc"} == {
        "vpc": "enable_dns_hostnames: False -> True"
    }
    # what the seed clicks, as AWS now has it
    ec2, iam = aws.client("ec2"), aws.client("iam")
    vpc = account["vpc_id"]
    assert ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsHostnames")[
        "EnableDnsHostnames"]["Value"] is True  # fmt: skip
    assert ingress(aws, vpc, "analytics") == {(22, "director"), (80, "0.0.0.0/0"),
                                              (443, "0.0.0.0/0")}  # fmt: skip
    assert ingress(aws, vpc, "ElasticMapReduce-master") == {(22, "analytics")}
    assert ingress(aws, vpc, "emr-rds") == {(3306, "ElasticMapReduce-master"),
                                            (3306, "ElasticMapReduce-slave")}  # fmt: skip
    attached = iam.list_attached_role_policies(RoleName="EMR_EC2_DefaultRole")["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["elasticsearch_all"]
    profile = iam.get_instance_profile(InstanceProfileName="edxanalytics")["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == ["edxanalytics"]
    (analytics,) = instances_named(aws, "analytics-1")
    assert analytics["State"]["Name"] == "running"
    assert analytics["IamInstanceProfile"]["Arn"].endswith("/edxanalytics")
    assert {g["GroupName"] for g in analytics["SecurityGroups"]} == {"default", "analytics"}
    instance_tags = {t["Key"]: t["Value"] for t in analytics["Tags"]}
    assert instance_tags["project"] == "edx-ops-flows" and instance_tags["site"] == "client-name"
    assert instance_tags["flow-run"] == str(first.state_details.flow_run_id)
    outputs = result["outputs"]
    assert result["analytics_ini"].startswith(
        f"[analytics_servers]\n{analytics['PrivateIpAddress']}"
    )
    assert outputs["analytics_public_ip"] == analytics["PublicIpAddress"]
    assert outputs["rds_endpoint"] and outputs["elasticsearch_endpoint"]
    assert set(outputs["security_groups"]) == {
        "analytics",
        "director",
        "emr-rds",
        "ElasticMapReduce-master",
        "ElasticMapReduce-slave",
    }
    rds = aws.client("rds").describe_db_instances(DBInstanceIdentifier="client-name-analytics")
    assert rds["DBInstances"][0]["DBInstanceStatus"] == "available"
    policy = aws.client("s3").get_bucket_policy(Bucket="client-name-edxapp")["Policy"]
    assert "client-name-edxapp/grades-download/*" in policy

    keys = access_keys(aws)
    assert set(keys) == {"analytics_elasticsearch", "analytics_reports"}
    assert outputs["access_key_blocks"] == {
        "analytics_elasticsearch": "client-name-analytics-elasticsearch",
        "analytics_reports": "client-name-analytics-reports",
    }
    block = AwsCredentials.load("client-name-analytics-reports")
    assert str(block.aws_access_key_id) == keys["analytics_reports"]
    assert block.get_client("sts").get_caller_identity()["Arn"].endswith(":user/analytics_reports")

    second = deploy(account)
    again = completed(second)
    assert access_keys(aws) == keys  # a rerun creates no key
    assert again["changes"] == []
    assert again["summary"].startswith("site client-name: nothing to do")
    assert {r["action"] for r in plan_rows(second)} == {"unchanged"}
    assert again["outputs"] == outputs


def test_drift_by_hand_shows_in_the_plan_and_apply_corrects_it(account, aws):
    completed(deploy(account))
    ec2, vpc = aws.client("ec2"), account["vpc_id"]
    ids = {g["GroupName"]: g["GroupId"] for g in ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]}  # fmt: skip
    # Jenkins opened to the world "briefly", and the director's SSH rule removed
    ec2.authorize_security_group_ingress(GroupId=ids["analytics"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])  # fmt: skip
    ec2.revoke_security_group_ingress(GroupId=ids["director"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "203.0.113.0/24"}]}])  # fmt: skip
    aws.client("iam").detach_role_policy(
        RoleName="edxanalytics", PolicyArn="arn:aws:iam::123456789012:policy/provision_emr_clusters"
    )
    state = deploy(account)
    result = completed(state)
    changed = {r["name"]: r["changes"] for r in plan_rows(state) if r["action"] != "unchanged"}
    assert changed == {
        "analytics": "ingress: [tcp/22 from sg:director, tcp/80 from 0.0.0.0/0, tcp/443 from "
        "0.0.0.0/0, tcp/8080 from 0.0.0.0/0] -> [tcp/22 from sg:director, tcp/80 from 0.0.0.0/0,"
        " tcp/443 from 0.0.0.0/0]",
        "director": "ingress: [] -> [tcp/22 from 203.0.113.0/24]",
        "edxanalytics": "policies: [] -> [provision_emr_clusters]",
    }
    assert len(result["changes"]) == 3
    assert (8080, "0.0.0.0/0") not in ingress(aws, vpc, "analytics")
    assert ingress(aws, vpc, "director") == {(22, "203.0.113.0/24")}
    assert completed(deploy(account))["changes"] == []


def test_an_instance_type_changed_by_hand_is_updated_in_place(account, aws):
    completed(deploy(account))
    ec2 = aws.client("ec2")
    (director,) = [i["InstanceId"] for i in instances_named(aws, "director")]
    ec2.stop_instances(InstanceIds=[director])
    ec2.modify_instance_attribute(InstanceId=director, InstanceType={"Value": "t2.nano"})
    ec2.start_instances(InstanceIds=[director])
    result = completed(deploy(account))
    assert result["changes"] == ["update ec2_instance director; instance_type: t2.nano -> t2.micro"]
    found = ec2.describe_instances(InstanceIds=[director])["Reservations"][0]["Instances"][0]
    assert (found["InstanceType"], found["State"]["Name"]) == ("t2.micro", "running")


def test_a_new_image_is_refused_without_allow_replace(account, aws):
    completed(deploy(account))
    images = [i["ImageId"] for i in aws.client("ec2").describe_images()["Images"]]
    changed = {**account, "director": {**account["director"], "image_id": images[1]}}
    state = deploy(changed)
    assert state.is_failed()
    with pytest.raises(Exception, match="replaces ec2_instance director .image_id"):
        state.result()
    result = completed(deploy(changed, allow_replace=True))
    assert result["changes"][0].startswith("replace ec2_instance director; image_id:")
    assert completed(deploy(changed))["changes"] == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"extra_ingress": ["analytics:8080:10.0.0.0/8"]},
         "analytics: tcp/8080 from 10.0.0.0/8 opens Jenkins' port 8080"),
        ({"director_ssh_cidr": "0.0.0.0/0"}, "director: tcp/22 from 0.0.0.0/0 opens port 22 to "
         "the world"),
    ],
)  # fmt: skip
def test_the_lint_refuses_open_jenkins_and_ssh_from_anywhere_before_any_change(
    account, aws, changes, message
):
    state = deploy({**account, **changes})
    assert state.is_failed()
    with pytest.raises(UnsafeRuleRefused, match=message):
        state.result()
    # the plan was published, and nothing was created
    assert {r["action"] for r in plan_rows(state)} >= {"create"}
    assert aws.client("iam").list_policies(Scope="Local")["Policies"] == []
    groups = aws.client("ec2").describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [account["vpc_id"]]}])["SecurityGroups"]  # fmt: skip
    assert [g["GroupName"] for g in groups] == ["default"]


def test_destroy_keeps_buckets_with_objects_and_rds_unless_forced(account, aws):
    completed(deploy(account))
    s3 = aws.client("s3")
    s3.put_object(Bucket="client-name-edxanalytics", Key="geoip/GeoIP.dat", Body=b"data")
    result = completed(destroy(account))
    assert result["kept"] == {
        "s3_bucket client-name-edxanalytics": "holds objects (force to delete them)",
        "rds_instance client-name-analytics":
            "databases are kept (force: deleted after a final snapshot)",
        "security_group emr-rds": "needed by the kept rds_instance client-name-analytics",
    }  # fmt: skip
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert buckets == {"client-name-edxanalytics", "client-name-tracking-logs",
                       "client-name-edxapp"}  # fmt: skip
    ec2, iam, vpc = aws.client("ec2"), aws.client("iam"), account["vpc_id"]
    states = {i["State"]["Name"] for r in ec2.describe_instances()["Reservations"]
              for i in r["Instances"]}  # fmt: skip
    assert states == {"terminated"}
    assert ec2.describe_addresses()["Addresses"] == []
    assert (
        ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc]}])[
            "InternetGateways"
        ]
        == []
    )
    groups = {g["GroupName"] for g in ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]}  # fmt: skip
    assert groups == {"default", "emr-rds", "ElasticMapReduce-master", "ElasticMapReduce-slave"}
    assert ingress(aws, vpc, "ElasticMapReduce-master") == set()
    assert iam.list_policies(Scope="Local")["Policies"] == []
    assert [u["UserName"] for u in iam.list_users()["Users"]] == []
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == ["EMR_EC2_DefaultRole"]
    assert aws.client("opensearch").list_domain_names()["DomainNames"] == []
    rds = aws.client("rds")
    assert rds.describe_db_instances()["DBInstances"][0]["DBInstanceStatus"] == "available"

    forced = completed(destroy(account, force=True))
    assert "rds_instance client-name-analytics" in forced["deleted"]
    assert "s3_bucket client-name-edxanalytics" in forced["deleted"]
    assert rds.describe_db_instances()["DBInstances"] == []
    (snapshot,) = rds.describe_db_snapshots()["DBSnapshots"]
    assert snapshot["DBSnapshotIdentifier"].startswith("client-name-analytics-final-")
    # the bucket the LMS wrote before the site was made stays, objects and all
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {
        "client-name-tracking-logs", "client-name-edxapp"}  # fmt: skip
    assert "s3_bucket client-name-tracking-logs" in forced["left"]
    # and a new deploy starts from there
    assert completed(deploy(account))["outputs"]["rds_endpoint"]


def test_destroy_removes_the_key_blocks_and_their_keys_and_a_second_destroy_does_nothing(
    account, aws
):
    iam = aws.client("iam")
    iam.create_user(UserName="analytics_reports")  # made by hand before the site: it stays
    completed(deploy(account))
    assert set(access_keys(aws)) == {"analytics_elasticsearch", "analytics_reports"}
    blocks = ["client-name-analytics-elasticsearch", "client-name-analytics-reports"]
    first = completed(destroy(account))
    assert first["access_key_blocks_removed"] == blocks
    for name in blocks:
        with pytest.raises(ValueError, match="Unable to find block document"):
            AwsCredentials.load(name)
    # the user the site did not make is left, without the key the deploy gave it
    assert "iam_user analytics_reports" in first["left"]
    assert [u["UserName"] for u in iam.list_users()["Users"]] == ["analytics_reports"]
    assert iam.list_access_keys(UserName="analytics_reports")["AccessKeyMetadata"] == []
    second = completed(destroy(account))
    assert second["deleted"] == [] and second["access_key_blocks_removed"] == []
    assert second["kept"] == first["kept"] and second["left"] == first["left"]


def test_key_pairs_and_the_db_subnet_group_are_planned_created_corrected_and_destroyed(
    account, aws, tmp_path, monkeypatch
):
    from moto.rds.models import RDSBackend

    from blocks.ssh import SshIdentity
    from tests.bed.sshd import generate_ed25519_key, public_key_line

    # moto 5.2's ModifyDBSubnetGroup forgets the group it modified (pops it, never puts it
    # back): the fake is fixed here, so that a modified group stays, as on AWS
    modify = RDSBackend.modify_db_subnet_group

    def modify_and_keep(backend, subnet_name, description, subnets):
        group = modify(backend, subnet_name, description, subnets)
        backend.subnet_groups[subnet_name] = group
        return group

    monkeypatch.setattr(RDSBackend, "modify_db_subnet_group", modify_and_keep)

    ec2, rds, vpc = aws.client("ec2"), aws.client("rds"), account["vpc_id"]

    def subnet(cidr: str, zone: str) -> str:
        created = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)
        return created["Subnet"]["SubnetId"]

    second, third = subnet("10.20.2.0/24", "us-east-1b"), subnet("10.20.3.0/24", "us-east-1c")
    key = generate_ed25519_key(tmp_path / "analytics-key")
    SshIdentity(username="ubuntu", private_key=key.read_text(), known_hosts="").save(
        "client-name-analytics-key", overwrite=True
    )
    settings = {
        **account,
        "analytics": {**account["analytics"], "key_name": "client-name-analytics",
                      "key_block": "client-name-analytics-key"},
        "rds": {**account["rds"], "subnet_ids": [account["subnet_id"], second]},
    }  # fmt: skip
    first = deploy(settings)
    completed(first)
    actions = {(r["kind"], r["name"]): r["action"] for r in plan_rows(first)}
    assert actions[("key_pair", "client-name-analytics")] == "create"
    assert actions[("key_pair", "director")] == "unchanged"  # made by hand, as the seed does
    assert actions[("db_subnet_group", "client-name-analytics")] == "create"

    def public_key() -> list[str]:
        (pair,) = ec2.describe_key_pairs(KeyNames=["client-name-analytics"],
                                         IncludePublicKey=True)["KeyPairs"]  # fmt: skip
        return pair["PublicKey"].split()[:2]

    assert public_key() == public_key_line(key).split()[:2]
    (analytics,) = instances_named(aws, "analytics-1")
    assert analytics["KeyName"] == "client-name-analytics"

    def subnets() -> list[str]:
        (group,) = rds.describe_db_subnet_groups(DBSubnetGroupName="client-name-analytics")[
            "DBSubnetGroups"]  # fmt: skip
        return sorted(s["SubnetIdentifier"] for s in group["Subnets"])

    assert subnets() == sorted([account["subnet_id"], second])
    (db,) = rds.describe_db_instances(DBInstanceIdentifier="client-name-analytics")["DBInstances"]
    assert db["DBSubnetGroup"]["DBSubnetGroupName"] == "client-name-analytics"
    assert completed(deploy(settings))["changes"] == []

    # by hand: the group moved to other subnets, the key pair re-imported with another key
    rds.modify_db_subnet_group(DBSubnetGroupName="client-name-analytics",
                               SubnetIds=[second, third])  # fmt: skip
    other = generate_ed25519_key(tmp_path / "other-key")
    ec2.delete_key_pair(KeyName="client-name-analytics")
    ec2.import_key_pair(KeyName="client-name-analytics",
                        PublicKeyMaterial=public_key_line(other).encode())  # fmt: skip
    refused = deploy(settings)
    assert refused.is_failed()
    with pytest.raises(Exception, match="replaces key_pair client-name-analytics .public_key"):
        refused.result()
    changed = {(r["kind"], r["action"]): r["changes"] for r in plan_rows(refused)
               if r["action"] != "unchanged"}  # fmt: skip
    assert changed == {
        ("db_subnet_group", "update"): f"subnets: {shown(sorted([second, third]))} -> "
        f"{shown(sorted([account['subnet_id'], second]))}",
        ("key_pair", "replace"): f"public_key: {' '.join(public_key_line(other).split()[:2])} -> "
        f"{' '.join(public_key_line(key).split()[:2])}",
    }
    result = completed(deploy(settings, allow_replace=True))
    assert [c.split(";")[0] for c in result["changes"]] == [
        "update db_subnet_group client-name-analytics", "replace key_pair client-name-analytics",
    ]  # fmt: skip
    assert public_key() == public_key_line(key).split()[:2]
    assert subnets() == sorted([account["subnet_id"], second])
    assert completed(deploy(settings))["changes"] == []

    kept = completed(destroy(settings))
    assert kept["kept"]["db_subnet_group client-name-analytics"] == (
        "needed by the kept rds_instance client-name-analytics"
    )
    assert "key_pair client-name-analytics" in kept["deleted"]
    assert "key_pair director" in kept["left"]
    assert {p["KeyName"] for p in ec2.describe_key_pairs()["KeyPairs"]} == {"analytics",
                                                                            "director"}  # fmt: skip
    forced = completed(destroy(settings, force=True))
    assert "db_subnet_group client-name-analytics" in forced["deleted"]
    assert rds.describe_db_subnet_groups()["DBSubnetGroups"] == []


def test_secrets_never_reach_logs_artifacts_or_exceptions(account, aws, caplog):
    import asyncio

    caplog.set_level(logging.DEBUG)
    runs = [deploy(account), deploy(account)]
    created = [
        AwsCredentials.load(f"client-name-{user}").aws_secret_access_key.get_secret_value()
        for user in ("analytics-elasticsearch", "analytics-reports")
    ]
    runs.append(destroy(account, force=True))
    # and a failing create with the password in the call: AWS refuses the subnet group
    failing = deploy({**account, "rds": {**account["rds"], "subnet_group": "no-such-group"}})
    assert failing.is_failed()
    with pytest.raises(Exception) as raised:
        failing.result()
    error_text = f"{raised.value!r} {raised.value} {failing.message}"
    assert "rds_instance client-name-analytics" in str(raised.value)
    texts = [caplog.text, error_text]
    for state in [*runs, failing]:
        run_id = state.state_details.flow_run_id
        texts += [str(a.data) + str(a.description) for a in asyncio.run(artifacts_of(run_id))]
        texts += [log.message for log in asyncio.run(logs_of(run_id))]
    assert len(texts) > 20
    for secret in (SECRET_ACCESS_KEY, RDS_PASSWORD, *created):
        assert [t for t in texts if secret in t] == []
