"""Prefect tasks on AWS for the analytics site (seed 004): read, apply, destroy, outputs.

`read_site_state` reads what AWS has for each wanted `Resource` (`domain.aws_site`) into the
same plain shapes (`{(kind, name): attributes}`), for `domain.aws_plan` to compare. Names are
what things are found by: IAM and bucket names, security groups by name in the site's VPC,
instances and the Elastic IP by their `Name` and `site` tags. Ids (groups, instances) never
enter the comparison; group sources are translated to group names.

`apply_item` carries one resource's plan out (create or update, and for an instance a
replace) and waits where AWS is asynchronous (instance running, RDS available, Elasticsearch
active) through `domain.polling.wait_until`. `destroy_item` deletes one resource. Clients come
from prefect-aws's `AwsCredentials` block (`get_client`); the RDS master password from a
Prefect `Secret` block, loaded in the task that uses it and passed to boto3 alone.

Reading is retried on outages (throttling, connection errors); creating is not (a second
create after a lost answer would collide with the first, or make a second instance).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from blocks.ssh import SshIdentity
from domain.aws_plan import DestroyItem, ReplaceRefused, ResourcePlan
from domain.aws_site import (
    ANYWHERE,
    AwsSite,
    Resource,
    sort_rules,
    tags,
)
from domain.polling import wait_until
from pipeline.errors import NotFound, OperationFailed, OperationTimeout, is_transient
from remote.host_keys import ConsoleKeys, parse_console_keys
from remote.setup import StepResult
from tasks.host_setup import public_key_line, record_host_key
from tasks.retries import retry_when

Key = tuple[str, str]
READ_RETRIES, READ_RETRY_DELAY_SECONDS = 3, 5


class AwsOperationFailed(OperationFailed):
    """AWS refused or failed a change; the message names the resource and AWS's error code."""


class AwsWaitTimeout(OperationTimeout):
    """A resource did not reach its state in time; the message says which and the last state."""


#: `retry_condition_fn`: retry only errors that can go away (throttling, network).
retry_on_outage = retry_when(is_transient)


# -- clients and context --------------------------------------------------------------------------


class AwsClients:
    """boto3 clients of one `AwsCredentials` block, one per service."""

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials
        self._clients: dict[str, Any] = {}

    @classmethod
    def from_block(cls, block_name: str) -> AwsClients:
        from prefect_aws import AwsCredentials

        return cls(AwsCredentials.load(block_name))

    @property
    def credentials(self) -> Any:
        """The block itself (its region and client parameters; its secret stays inside)."""
        return self._credentials

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._credentials.get_client(service)
        return self._clients[service]


@dataclass(frozen=True)
class SiteContext:
    """What every step needs besides clients: the site, the account, the run's tag, deadlines."""

    site: AwsSite
    account_id: str
    flow_run: str | None = None
    timeout: float = 1800
    poll_interval: float = 5

    @property
    def tags(self) -> dict[str, str]:
        return tags(self.site, self.flow_run)

    def tag_list(self, name: str | None = None) -> list[dict[str, str]]:
        found = {**self.tags, **({"Name": name} if name else {})}
        return [{"Key": k, "Value": v} for k, v in found.items()]


def open_site(
    aws_block: str, site: AwsSite, timeout: float, poll_interval: float
) -> tuple[AwsClients, SiteContext]:
    """The clients of the `AwsCredentials` block and the context of this flow run's steps."""
    clients = AwsClients.from_block(aws_block)
    ctx = SiteContext(site=site, account_id=account_id(clients), flow_run=flow_run.get_id(),
                      timeout=timeout, poll_interval=poll_interval)  # fmt: skip
    return clients, ctx


def error_code(error: ClientError) -> str:
    """The AWS error code of a failed call (`NoSuchEntity`, ...), or "" when it has none."""
    return str(error.response.get("Error", {}).get("Code", ""))


def _failed(resource: Resource, doing: str, error: ClientError) -> AwsOperationFailed:
    message = error.response.get("Error", {}).get("Message", "")
    return AwsOperationFailed(
        f"{doing} {resource.kind} {resource.name}: AWS said {error_code(error)}: {message}"
    )


def _owned(tag_list: list[dict[str, str]] | None, site: AwsSite) -> bool:
    return any(t.get("Key") == "site" and t.get("Value") == site.client for t in tag_list or [])


@task(name="aws-account", cache_policy=NO_CACHE, retries=READ_RETRIES,
      retry_delay_seconds=READ_RETRY_DELAY_SECONDS, retry_condition_fn=retry_on_outage,
      timeout_seconds=120)  # fmt: skip
def account_id(clients: AwsClients) -> str:
    """The account the block's credentials belong to (ARNs in the policies need it)."""
    return str(clients("sts").get_caller_identity()["Account"])


# -- reading --------------------------------------------------------------------------------------


def _iam_policy_arn(ctx: SiteContext, name: str) -> str:
    return f"arn:aws:iam::{ctx.account_id}:policy/{name}"


def read_iam_policy(clients: AwsClients, ctx: SiteContext, resource: Resource) -> dict | None:
    iam = clients("iam")
    try:
        policy = iam.get_policy(PolicyArn=_iam_policy_arn(ctx, resource.name))["Policy"]
    except ClientError as error:
        if error_code(error) == "NoSuchEntity":
            return None
        raise
    version = iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])[
        "PolicyVersion"
    ]
    return {"document": _document(version["Document"]), "arn": policy["Arn"],
            "owned": _owned(policy.get("Tags"), ctx.site)}  # fmt: skip


def _document(value: Any) -> Any:
    # IAM hands documents back decoded; S3 and OpenSearch as JSON text
    if isinstance(value, str):
        from urllib.parse import unquote

        text = value if value.lstrip().startswith("{") else unquote(value)
        return json.loads(text)
    return value


def read_iam_role(clients: AwsClients, ctx: SiteContext, resource: Resource) -> dict | None:
    iam = clients("iam")
    try:
        role = iam.get_role(RoleName=resource.name)["Role"]
    except ClientError as error:
        if error_code(error) == "NoSuchEntity":
            return None
        raise
    attached = iam.list_attached_role_policies(RoleName=resource.name)["AttachedPolicies"]
    return {
        "trust": _document(role["AssumeRolePolicyDocument"]),
        "policies": sorted(p["PolicyName"] for p in attached),
        "arn": role["Arn"],
        "owned": _owned(role.get("Tags"), ctx.site),
    }


def read_instance_profile(clients: AwsClients, ctx: SiteContext, resource: Resource):
    try:
        profile = clients("iam").get_instance_profile(InstanceProfileName=resource.name)
    except ClientError as error:
        if error_code(error) == "NoSuchEntity":
            return None
        raise
    profile = profile["InstanceProfile"]
    return {"roles": sorted(r["RoleName"] for r in profile["Roles"]), "arn": profile["Arn"],
            "owned": _owned(profile.get("Tags"), ctx.site)}  # fmt: skip


def read_iam_user(clients: AwsClients, ctx: SiteContext, resource: Resource) -> dict | None:
    iam = clients("iam")
    try:
        user = iam.get_user(UserName=resource.name)["User"]
    except ClientError as error:
        if error_code(error) == "NoSuchEntity":
            return None
        raise
    names = iam.list_user_policies(UserName=resource.name)["PolicyNames"]
    inline = {
        name: _document(iam.get_user_policy(UserName=resource.name, PolicyName=name)[
            "PolicyDocument"])
        for name in names
    }  # fmt: skip
    return {"inline_policies": inline, "arn": user["Arn"],
            "owned": _owned(user.get("Tags"), ctx.site)}  # fmt: skip


def read_vpc(clients: AwsClients, ctx: SiteContext, resource: Resource) -> dict | None:
    ec2 = clients("ec2")
    try:
        ec2.describe_vpcs(VpcIds=[resource.name])
    except ClientError as error:
        if error_code(error) in {"InvalidVpcID.NotFound", "InvalidVpcID.Malformed"}:
            return None
        raise
    value = ec2.describe_vpc_attribute(VpcId=resource.name, Attribute="enableDnsHostnames")
    return {"enable_dns_hostnames": bool(value["EnableDnsHostnames"]["Value"])}


def _vpc_gateway(clients: AwsClients, vpc_id: str) -> dict | None:
    found = clients("ec2").describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}]
    )["InternetGateways"]
    return found[0] if found else None


def read_internet_gateway(clients: AwsClients, ctx: SiteContext, resource: Resource):
    # a VPC has at most one: the one attached is the site's, whoever made it
    gateway = _vpc_gateway(clients, ctx.site.vpc_id)
    if gateway is None:
        return None
    return {"vpc": ctx.site.vpc_id, "id": gateway["InternetGatewayId"],
            "owned": _owned(gateway.get("Tags"), ctx.site)}  # fmt: skip


def _main_route_table(clients: AwsClients, vpc_id: str) -> dict | None:
    tables = clients("ec2").describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "association.main", "Values": ["true"]},
    ])["RouteTables"]  # fmt: skip
    return tables[0] if tables else None


def read_route(clients: AwsClients, ctx: SiteContext, resource: Resource) -> dict | None:
    table = _main_route_table(clients, ctx.site.vpc_id)
    if table is None:
        return None
    target = next(
        (r.get("GatewayId", "") for r in table.get("Routes", [])
         if r.get("DestinationCidrBlock") == ANYWHERE),
        "",
    )  # fmt: skip
    return {"internet_gateway": target.startswith("igw-"), "route_table": table["RouteTableId"],
            "target": target}  # fmt: skip


def _groups(clients: AwsClients, vpc_id: str) -> list[dict]:
    return clients("ec2").describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]
    )["SecurityGroups"]


def group_ids(clients: AwsClients, vpc_id: str) -> dict[str, str]:
    """Security-group name -> id in the VPC."""
    return {g["GroupName"]: g["GroupId"] for g in _groups(clients, vpc_id)}


def _rules_of(group: dict, names: dict[str, str]) -> list[dict[str, Any]]:
    found = []
    for permission in group.get("IpPermissions", []):
        protocol = str(permission.get("IpProtocol", "-1"))
        base: dict[str, Any] = {"protocol": protocol, "port": permission.get("FromPort", -1)}
        if permission.get("ToPort", base["port"]) != base["port"]:
            base["to_port"] = permission["ToPort"]
        for ip_range in permission.get("IpRanges", []):
            found.append({**base, "cidr": ip_range["CidrIp"]})
        for pair in permission.get("UserIdGroupPairs", []):
            found.append({**base, "group": names.get(pair["GroupId"], pair["GroupId"])})
    return sort_rules(found)


def read_security_group(clients: AwsClients, ctx: SiteContext, resource: Resource):
    groups = _groups(clients, ctx.site.vpc_id)
    names = {g["GroupId"]: g["GroupName"] for g in groups}
    group = next((g for g in groups if g["GroupName"] == resource.name), None)
    if group is None:
        return None
    return {
        "vpc": group["VpcId"],
        "description": group.get("Description", ""),
        "ingress": _rules_of(group, names),
        "id": group["GroupId"],
        "owned": _owned(group.get("Tags"), ctx.site),
    }


def read_s3_bucket(clients: AwsClients, ctx: SiteContext, resource: Resource) -> dict | None:
    s3 = clients("s3")
    try:
        s3.head_bucket(Bucket=resource.name)
    except ClientError as error:
        if error_code(error) in {"404", "NoSuchBucket", "NotFound"}:
            return None
        raise
    region = s3.get_bucket_location(Bucket=resource.name).get("LocationConstraint")
    try:
        tag_set = s3.get_bucket_tagging(Bucket=resource.name)["TagSet"]
    except ClientError as error:
        if error_code(error) != "NoSuchTagSet":
            raise
        tag_set = []
    listed = s3.list_object_versions(Bucket=resource.name, MaxKeys=1)
    objects = bool(listed.get("Versions") or listed.get("DeleteMarkers"))
    return {"region": region or "us-east-1", "objects": objects,
            "owned": _owned(tag_set, ctx.site)}  # fmt: skip


def read_bucket_policy(clients: AwsClients, ctx: SiteContext, resource: Resource):
    s3 = clients("s3")
    try:
        text = s3.get_bucket_policy(Bucket=resource.name)["Policy"]
    except ClientError as error:
        if error_code(error) == "NoSuchBucketPolicy":
            return {"policy": None}
        if error_code(error) == "NoSuchBucket":
            return None
        raise
    return {"policy": _document(text)}


def _es_version(engine: str) -> str:
    return engine.removeprefix("Elasticsearch_")


def read_es_domain(clients: AwsClients, ctx: SiteContext, resource: Resource) -> dict | None:
    try:
        domain = clients("opensearch").describe_domain(DomainName=resource.name)["DomainStatus"]
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return None
        raise
    if domain.get("Deleted"):
        return None
    cluster, ebs = domain.get("ClusterConfig", {}), domain.get("EBSOptions", {})
    wanted_options = resource.attributes.get("advanced_options", {})
    options = domain.get("AdvancedOptions", {})
    return {
        "version": _es_version(domain.get("EngineVersion", "")),
        "instance_type": cluster.get("InstanceType"),
        "instance_count": cluster.get("InstanceCount"),
        "dedicated_master": bool(cluster.get("DedicatedMasterEnabled")),
        "zone_awareness": bool(cluster.get("ZoneAwarenessEnabled")),
        "ebs": {"enabled": bool(ebs.get("EBSEnabled")), "type": ebs.get("VolumeType"),
                "size": ebs.get("VolumeSize")},
        # AWS adds defaults of its own: only the options the site sets are compared
        "advanced_options": {k: options.get(k) for k in wanted_options if k in options},
        "access_policy": _document(domain["AccessPolicies"]) if domain.get("AccessPolicies")
        else None,
        "arn": domain.get("ARN"),
        "endpoint": domain.get("Endpoint"),
        "processing": bool(domain.get("Processing")),
        "owned": True,
    }  # fmt: skip


def _db_instance(clients: AwsClients, identifier: str) -> dict | None:
    try:
        found = clients("rds").describe_db_instances(DBInstanceIdentifier=identifier)
    except ClientError as error:
        if error_code(error) == "DBInstanceNotFound":
            return None
        raise
    return found["DBInstances"][0] if found["DBInstances"] else None


def read_rds_instance(clients: AwsClients, ctx: SiteContext, resource: Resource):
    db = _db_instance(clients, resource.name)
    if db is None or db.get("DBInstanceStatus") == "deleting":
        return None
    names = {g["GroupId"]: g["GroupName"] for g in _groups(clients, ctx.site.vpc_id)}
    wanted_version = str(resource.attributes.get("engine_version", ""))
    version = str(db.get("EngineVersion", ""))
    if version.startswith(wanted_version + "."):  # "8.0" asked, AWS picked "8.0.35"
        version = wanted_version
    return {
        "engine": db.get("Engine"),
        "engine_version": version,
        "instance_class": db.get("DBInstanceClass"),
        "allocated_storage": db.get("AllocatedStorage"),
        "master_username": db.get("MasterUsername"),
        "security_groups": sorted(
            names.get(g["VpcSecurityGroupId"], g["VpcSecurityGroupId"])
            for g in db.get("VpcSecurityGroups", [])
        ),
        "status": db.get("DBInstanceStatus"),
        "endpoint": (db.get("Endpoint") or {}).get("Address"),
        "port": (db.get("Endpoint") or {}).get("Port"),
        "arn": db.get("DBInstanceArn"),
        "owned": _owned(db.get("TagList"), ctx.site),
    }


def _instances(clients: AwsClients, site: AwsSite, name: str) -> list[dict]:
    pages = clients("ec2").describe_instances(Filters=[
        {"Name": "tag:Name", "Values": [name]},
        {"Name": "tag:site", "Values": [site.client]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
    ])["Reservations"]  # fmt: skip
    return [instance for page in pages for instance in page["Instances"]]


def read_ec2_instance(clients: AwsClients, ctx: SiteContext, resource: Resource):
    found = _instances(clients, ctx.site, resource.name)
    if not found:
        return None
    if len(found) > 1:
        ids = ", ".join(i["InstanceId"] for i in found)
        raise AwsOperationFailed(
            f"ec2_instance {resource.name}: {len(found)} instances carry its tags ({ids}); "
            "terminate the extra ones by hand"
        )
    instance = found[0]
    root = next(
        (m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", [])
         if m.get("DeviceName") == instance.get("RootDeviceName")),
        None,
    )  # fmt: skip
    size = None
    if root:
        size = clients("ec2").describe_volumes(VolumeIds=[root])["Volumes"][0]["Size"]
    profile = (instance.get("IamInstanceProfile") or {}).get("Arn")
    return {
        "instance_type": instance["InstanceType"],
        "image_id": instance["ImageId"],
        "volume_size": size,
        "key_name": instance.get("KeyName"),
        "subnet_id": instance.get("SubnetId"),
        "instance_profile": profile.rsplit("/", 1)[-1] if profile else None,
        "security_groups": sorted(g["GroupName"] for g in instance.get("SecurityGroups", [])),
        "id": instance["InstanceId"],
        "state": instance["State"]["Name"],
        "private_ip": instance.get("PrivateIpAddress"),
        "public_ip": instance.get("PublicIpAddress"),
        "owned": True,
    }


def _address(clients: AwsClients, site: AwsSite, name: str) -> dict | None:
    found = clients("ec2").describe_addresses(Filters=[
        {"Name": "tag:Name", "Values": [name]}, {"Name": "tag:site", "Values": [site.client]},
    ])["Addresses"]  # fmt: skip
    return found[0] if found else None


def read_elastic_ip(clients: AwsClients, ctx: SiteContext, resource: Resource) -> dict | None:
    address = _address(clients, ctx.site, resource.name)
    if address is None:
        return None
    instance_name = None
    if address.get("InstanceId"):
        reservations = clients("ec2").describe_instances(InstanceIds=[address["InstanceId"]])
        for page in reservations["Reservations"]:
            for instance in page["Instances"]:
                tag = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                instance_name = tag.get("Name", instance["InstanceId"])
    return {"instance": instance_name, "public_ip": address.get("PublicIp"),
            "allocation_id": address.get("AllocationId"), "owned": True}  # fmt: skip


def read_key_pair(clients: AwsClients, ctx: SiteContext, resource: Resource) -> dict | None:
    try:
        found = clients("ec2").describe_key_pairs(KeyNames=[resource.name], IncludePublicKey=True)
    except ClientError as error:
        if error_code(error) == "InvalidKeyPair.NotFound":
            return None
        raise
    pair = found["KeyPairs"][0]
    # `type base64` only: AWS adds the key name as a comment
    public = " ".join(str(pair.get("PublicKey") or "").split()[:2]) or None
    return {"public_key": public, "id": pair.get("KeyPairId"),
            "owned": _owned(pair.get("Tags"), ctx.site)}  # fmt: skip


def read_db_subnet_group(clients: AwsClients, ctx: SiteContext, resource: Resource):
    rds = clients("rds")
    try:
        group = rds.describe_db_subnet_groups(DBSubnetGroupName=resource.name)["DBSubnetGroups"][0]
    except ClientError as error:
        if error_code(error) == "DBSubnetGroupNotFoundFault":
            return None
        raise
    tag_list = rds.list_tags_for_resource(ResourceName=group["DBSubnetGroupArn"])["TagList"]
    return {
        "subnets": sorted(s["SubnetIdentifier"] for s in group.get("Subnets", [])),
        "description": group.get("DBSubnetGroupDescription", ""),
        "arn": group["DBSubnetGroupArn"],
        "owned": _owned(tag_list, ctx.site),
    }


READERS: dict[str, Callable[[AwsClients, SiteContext, Resource], dict | None]] = {
    "iam_policy": read_iam_policy,
    "iam_role": read_iam_role,
    "instance_profile": read_instance_profile,
    "iam_user": read_iam_user,
    "vpc": read_vpc,
    "internet_gateway": read_internet_gateway,
    "route": read_route,
    "security_group": read_security_group,
    "s3_bucket": read_s3_bucket,
    "bucket_policy": read_bucket_policy,
    "es_domain": read_es_domain,
    "db_subnet_group": read_db_subnet_group,
    "rds_instance": read_rds_instance,
    "key_pair": read_key_pair,
    "ec2_instance": read_ec2_instance,
    "elastic_ip": read_elastic_ip,
}


@task(name="read-aws-site", cache_policy=NO_CACHE, retries=READ_RETRIES,
      retry_delay_seconds=READ_RETRY_DELAY_SECONDS, retry_condition_fn=retry_on_outage,
      timeout_seconds=300)  # fmt: skip
def read_site_state(
    clients: AwsClients, ctx: SiteContext, resources: list[Resource]
) -> dict[Key, dict]:
    """What AWS has for each resource (absent ones are left out); changes nothing."""
    state = {}
    for resource in resources:
        found = READERS[resource.kind](clients, ctx, resource)
        if found is not None:
            state[resource.key] = found
    get_run_logger().info("read %d of %d resources of site %s from AWS", len(state),
                          len(resources), ctx.site.client)  # fmt: skip
    return state


# -- waits ----------------------------------------------------------------------------------------


def _wait(ctx: SiteContext, what: str, probe: Callable[[], Any | None], last: list) -> Any:
    def late() -> Any:
        raise AwsWaitTimeout(
            f"{what}: not reached within {ctx.timeout:.0f} s; last state: "
            f"{last[-1] if last else 'none seen'}"
        )

    return wait_until(probe, timeout=ctx.timeout, interval=ctx.poll_interval, on_timeout=late)


def wait_instance_state(clients: AwsClients, ctx: SiteContext, instance_id: str, state: str):
    last: list[str] = []

    def probe() -> str | None:
        found = clients("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
        seen = found[0]["Instances"][0]["State"]["Name"] if found else "gone"
        last.append(seen)
        if seen == state or (state == "terminated" and seen == "gone"):
            return seen
        if state == "running" and seen in {"terminated", "shutting-down"}:
            raise AwsOperationFailed(f"instance {instance_id} went {seen} instead of running")
        return None

    return _wait(ctx, f"instance {instance_id} {state}", probe, last)


def wait_rds(clients: AwsClients, ctx: SiteContext, identifier: str, gone: bool = False):
    last: list[str] = []

    def probe() -> str | None:
        db = _db_instance(clients, identifier)
        seen = "gone" if db is None else str(db.get("DBInstanceStatus"))
        last.append(seen)
        if gone:
            return seen if db is None else None
        if seen == "available":
            return seen
        if seen in {"failed", "incompatible-parameters", "storage-full"}:
            raise AwsOperationFailed(f"RDS instance {identifier} is {seen}")
        return None

    return _wait(ctx, f"RDS instance {identifier} {'deleted' if gone else 'available'}",
                 probe, last)  # fmt: skip


def wait_es(clients: AwsClients, ctx: SiteContext, name: str, gone: bool = False):
    last: list[str] = []

    def probe() -> str | None:
        try:
            domain = clients("opensearch").describe_domain(DomainName=name)["DomainStatus"]
        except ClientError as error:
            if error_code(error) == "ResourceNotFoundException":
                last.append("gone")
                return "gone" if gone else None
            raise
        processing = bool(domain.get("Processing")) or bool(domain.get("Deleted"))
        last.append("processing" if processing else "active")
        if gone:
            return None
        return "active" if not processing and domain.get("Endpoint") else None

    return _wait(ctx, f"Elasticsearch domain {name} {'deleted' if gone else 'active'}",
                 probe, last)  # fmt: skip


# -- apply ----------------------------------------------------------------------------------------


def _json(document: Any) -> str:
    return json.dumps(document, sort_keys=True)


def apply_iam_policy(clients, ctx, plan: ResourcePlan) -> None:
    iam, resource = clients("iam"), plan.resource
    document = _json(resource.attributes["document"])
    if plan.action == "create":
        iam.create_policy(PolicyName=resource.name, PolicyDocument=document,
                          Tags=ctx.tag_list())  # fmt: skip
        return
    arn = _iam_policy_arn(ctx, resource.name)
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    old = sorted((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
    if len(versions) >= 5:  # IAM keeps five versions: drop the oldest non-default
        iam.delete_policy_version(PolicyArn=arn, VersionId=old[0]["VersionId"])
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=document, SetAsDefault=True)


def apply_iam_role(clients, ctx, plan: ResourcePlan) -> None:
    iam, resource = clients("iam"), plan.resource
    trust = _json(resource.attributes["trust"])
    current = plan.current or {}
    if plan.action == "create":
        iam.create_role(RoleName=resource.name, AssumeRolePolicyDocument=trust,
                        Tags=ctx.tag_list())  # fmt: skip
        current = {"policies": []}
    elif any(c.name == "trust" for c in plan.changes):
        iam.update_assume_role_policy(RoleName=resource.name, PolicyDocument=trust)
    wanted, have = set(resource.attributes["policies"]), set(current.get("policies", []))
    for name in sorted(wanted - have):
        iam.attach_role_policy(RoleName=resource.name, PolicyArn=_iam_policy_arn(ctx, name))
    if "policies" not in resource.partial:
        for name in sorted(have - wanted):
            iam.detach_role_policy(RoleName=resource.name, PolicyArn=_policy_arn_attached(
                clients, resource.name, name))  # fmt: skip


def _policy_arn_attached(clients, role: str, name: str) -> str:
    attached = clients("iam").list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    return next(p["PolicyArn"] for p in attached if p["PolicyName"] == name)


def apply_instance_profile(clients, ctx, plan: ResourcePlan) -> None:
    iam, resource = clients("iam"), plan.resource
    have: set[str] = set((plan.current or {}).get("roles", []))
    if plan.action == "create":
        iam.create_instance_profile(InstanceProfileName=resource.name, Tags=ctx.tag_list())
        have = set()
    wanted = set(resource.attributes["roles"])
    for role in sorted(have - wanted):
        iam.remove_role_from_instance_profile(InstanceProfileName=resource.name, RoleName=role)
    for role in sorted(wanted - have):
        iam.add_role_to_instance_profile(InstanceProfileName=resource.name, RoleName=role)


def apply_iam_user(clients, ctx, plan: ResourcePlan) -> None:
    iam, resource = clients("iam"), plan.resource
    have = dict((plan.current or {}).get("inline_policies", {}))
    if plan.action == "create":
        iam.create_user(UserName=resource.name, Tags=ctx.tag_list())
        have = {}
    wanted = resource.attributes["inline_policies"]
    for name in sorted(set(have) - set(wanted)):
        iam.delete_user_policy(UserName=resource.name, PolicyName=name)
    for name, document in sorted(wanted.items()):
        if have.get(name) != document:
            iam.put_user_policy(UserName=resource.name, PolicyName=name,
                                PolicyDocument=_json(document))  # fmt: skip


def apply_vpc(clients, ctx, plan: ResourcePlan) -> None:
    clients("ec2").modify_vpc_attribute(
        VpcId=plan.resource.name,
        EnableDnsHostnames={"Value": bool(plan.resource.attributes["enable_dns_hostnames"])},
    )


def apply_internet_gateway(clients, ctx, plan: ResourcePlan) -> None:
    ec2 = clients("ec2")
    created = ec2.create_internet_gateway(TagSpecifications=[
        {"ResourceType": "internet-gateway", "Tags": ctx.tag_list(plan.resource.name)},
    ])["InternetGateway"]  # fmt: skip
    ec2.attach_internet_gateway(InternetGatewayId=created["InternetGatewayId"],
                                VpcId=ctx.site.vpc_id)  # fmt: skip


def apply_route(clients, ctx, plan: ResourcePlan) -> None:
    ec2 = clients("ec2")
    gateway = _vpc_gateway(clients, ctx.site.vpc_id)
    table = _main_route_table(clients, ctx.site.vpc_id)
    if gateway is None or table is None:
        raise NotFound(f"route {plan.resource.name}: the VPC has no internet gateway or no main "
                       "route table")  # fmt: skip
    arguments = {"RouteTableId": table["RouteTableId"], "DestinationCidrBlock": ANYWHERE,
                 "GatewayId": gateway["InternetGatewayId"]}  # fmt: skip
    if (plan.current or {}).get("target"):
        ec2.replace_route(**arguments)
    else:
        ec2.create_route(**arguments)


def _permission(rule: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    permission: dict[str, Any] = {
        "IpProtocol": rule.get("protocol", "tcp"),
        "FromPort": rule["port"],
        "ToPort": rule.get("to_port", rule["port"]),
    }
    if rule.get("cidr"):
        permission["IpRanges"] = [{"CidrIp": rule["cidr"]}]
    else:
        group = rule["group"]
        if group not in ids and not str(group).startswith("sg-"):
            raise NotFound(f"security group {group!r} is not in VPC: the rule cannot name it")
        permission["UserIdGroupPairs"] = [{"GroupId": ids.get(group, group)}]
    return permission


def apply_security_group(clients, ctx, plan: ResourcePlan) -> None:
    ec2, resource = clients("ec2"), plan.resource
    have: list[dict] = list((plan.current or {}).get("ingress", []))
    if plan.action == "create":
        ec2.create_security_group(
            GroupName=resource.name, Description=resource.attributes["description"],
            VpcId=ctx.site.vpc_id,
            TagSpecifications=[{"ResourceType": "security-group",
                                "Tags": ctx.tag_list(resource.name)}],
        )  # fmt: skip
        have = []
    ids = group_ids(clients, ctx.site.vpc_id)
    group_id = ids[resource.name]
    wanted = resource.attributes["ingress"]
    extra = [] if "ingress" in resource.partial else [r for r in have if r not in wanted]
    missing = [r for r in wanted if r not in have]
    if extra:
        ec2.revoke_security_group_ingress(
            GroupId=group_id, IpPermissions=[_permission(r, ids) for r in extra]
        )
    if missing:
        ec2.authorize_security_group_ingress(
            GroupId=group_id, IpPermissions=[_permission(r, ids) for r in missing]
        )


def apply_s3_bucket(clients, ctx, plan: ResourcePlan) -> None:
    s3, resource = clients("s3"), plan.resource
    region = resource.attributes["region"]
    options = {} if region == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": region}
    }  # fmt: skip
    s3.create_bucket(Bucket=resource.name, **options)
    s3.put_bucket_tagging(Bucket=resource.name, Tagging={"TagSet": ctx.tag_list()})


def apply_bucket_policy(clients, ctx, plan: ResourcePlan) -> None:
    clients("s3").put_bucket_policy(
        Bucket=plan.resource.name, Policy=_json(plan.resource.attributes["policy"])
    )


def _es_config(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "ClusterConfig": {
            "InstanceType": attributes["instance_type"],
            "InstanceCount": attributes["instance_count"],
            "DedicatedMasterEnabled": attributes["dedicated_master"],
            "ZoneAwarenessEnabled": attributes["zone_awareness"],
        },
        "EBSOptions": {
            "EBSEnabled": attributes["ebs"]["enabled"],
            "VolumeType": attributes["ebs"]["type"],
            "VolumeSize": attributes["ebs"]["size"],
        },
        "AdvancedOptions": dict(attributes["advanced_options"]),
        "AccessPolicies": _json(attributes["access_policy"]),
    }


def apply_es_domain(clients, ctx, plan: ResourcePlan) -> None:
    search, resource = clients("opensearch"), plan.resource
    if plan.action == "create":
        search.create_domain(
            DomainName=resource.name,
            EngineVersion=f"Elasticsearch_{resource.attributes['version']}",
            TagList=ctx.tag_list(), **_es_config(resource.attributes),
        )  # fmt: skip
    else:
        search.update_domain_config(DomainName=resource.name, **_es_config(resource.attributes))
    wait_es(clients, ctx, resource.name)


def _rds_password(ctx: SiteContext) -> str:
    return rds_master_password(ctx.site)


def rds_master_password(site: AwsSite) -> str:
    """The RDS master password, from the Secret block the site names.

    Raises:
        NotFound: there is no such block.
    """
    from prefect.blocks.system import Secret

    name = site.rds.master_password_block
    try:
        return str(Secret.load(name).get())
    except ValueError:
        raise NotFound(f"there is no Secret block {name!r} (rds.master_password_block)") from None


@contextmanager
def botocore_quiet() -> Iterator[None]:
    """No botocore DEBUG records while a call carries a secret.

    botocore logs every request's parameters at DEBUG ("Making request ... with params"),
    the master password among them; a worker that turned DEBUG on would ship it to the API.
    """
    logger = logging.getLogger("botocore")
    old = logger.level
    logger.setLevel(max(logging.INFO, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(old)


def apply_rds_instance(clients, ctx, plan: ResourcePlan) -> None:
    rds, resource = clients("rds"), plan.resource
    a = resource.attributes
    ids = group_ids(clients, ctx.site.vpc_id)
    groups = [ids[name] for name in a["security_groups"]]
    if plan.action == "create":
        subnet_group = ctx.site.rds_subnet_group
        options = {"DBSubnetGroupName": subnet_group} if subnet_group else {}
        with botocore_quiet():
            rds.create_db_instance(
                DBInstanceIdentifier=resource.name, Engine=a["engine"],
                EngineVersion=a["engine_version"], DBInstanceClass=a["instance_class"],
                AllocatedStorage=a["allocated_storage"], MasterUsername=a["master_username"],
                MasterUserPassword=_rds_password(ctx), VpcSecurityGroupIds=groups,
                PubliclyAccessible=False, Tags=ctx.tag_list(), **options,
            )  # fmt: skip
    else:
        changed = {c.name for c in plan.changes}
        options = {}
        if "instance_class" in changed:
            options["DBInstanceClass"] = a["instance_class"]
        if "allocated_storage" in changed:
            options["AllocatedStorage"] = a["allocated_storage"]
        if "engine_version" in changed:
            options["EngineVersion"] = a["engine_version"]
        if "security_groups" in changed:
            options["VpcSecurityGroupIds"] = groups
        rds.modify_db_instance(DBInstanceIdentifier=resource.name, ApplyImmediately=True,
                               **options)  # fmt: skip
    wait_rds(clients, ctx, resource.name)


def _create_instance(clients, ctx, resource: Resource) -> str:
    ec2, a = clients("ec2"), resource.attributes
    images = ec2.describe_images(ImageIds=[a["image_id"]])["Images"]
    if not images:
        raise NotFound(f"ec2_instance {resource.name}: there is no image {a['image_id']}")
    ids = group_ids(clients, ctx.site.vpc_id)
    missing = [g for g in a["security_groups"] if g not in ids]
    if missing:
        raise NotFound(f"ec2_instance {resource.name}: no security group {missing} in the VPC")
    options: dict[str, Any] = {}
    if a["instance_profile"]:
        # the seed: the role cannot be added after launch, so it goes in now
        options["IamInstanceProfile"] = {"Name": a["instance_profile"]}
    created = ec2.run_instances(
        ImageId=a["image_id"], InstanceType=a["instance_type"], KeyName=a["key_name"],
        SubnetId=a["subnet_id"], MinCount=1, MaxCount=1,
        SecurityGroupIds=[ids[g] for g in a["security_groups"]],
        BlockDeviceMappings=[{"DeviceName": images[0].get("RootDeviceName", "/dev/sda1"),
                              "Ebs": {"VolumeSize": a["volume_size"], "VolumeType": "gp2",
                                      "DeleteOnTermination": True}}],
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": ctx.tag_list(resource.name)},
            {"ResourceType": "volume", "Tags": ctx.tag_list(resource.name)},
        ],
        **options,
    )["Instances"][0]  # fmt: skip
    instance_id = created["InstanceId"]
    get_run_logger().info("launched %s as %s; waiting until it runs", resource.name, instance_id)
    wait_instance_state(clients, ctx, instance_id, "running")
    return instance_id


def apply_ec2_instance(clients, ctx, plan: ResourcePlan) -> None:
    ec2, resource = clients("ec2"), plan.resource
    if plan.action == "create":
        _create_instance(clients, ctx, resource)
        return
    current = plan.current or {}
    instance_id = current["id"]
    if plan.action == "replace":
        ec2.terminate_instances(InstanceIds=[instance_id])
        wait_instance_state(clients, ctx, instance_id, "terminated")
        _create_instance(clients, ctx, resource)
        return
    changed = {c.name for c in plan.changes}
    if "security_groups" in changed:
        ids = group_ids(clients, ctx.site.vpc_id)
        ec2.modify_instance_attribute(
            InstanceId=instance_id, Groups=[ids[g] for g in resource.attributes["security_groups"]]
        )
    if "instance_type" in changed:  # only a stopped instance changes type
        ec2.stop_instances(InstanceIds=[instance_id])
        wait_instance_state(clients, ctx, instance_id, "stopped")
        ec2.modify_instance_attribute(
            InstanceId=instance_id, InstanceType={"Value": resource.attributes["instance_type"]}
        )
        ec2.start_instances(InstanceIds=[instance_id])
        wait_instance_state(clients, ctx, instance_id, "running")


def apply_elastic_ip(clients, ctx, plan: ResourcePlan) -> None:
    ec2, resource = clients("ec2"), plan.resource
    if plan.action == "create":
        allocation = ec2.allocate_address(Domain="vpc", TagSpecifications=[
            {"ResourceType": "elastic-ip", "Tags": ctx.tag_list(resource.name)},
        ])["AllocationId"]  # fmt: skip
    else:
        allocation = (plan.current or {})["allocation_id"]
    target = resource.attributes["instance"]
    instances = _instances(clients, ctx.site, target)
    if not instances:
        raise NotFound(f"elastic_ip {resource.name}: no instance {target} to associate")
    ec2.associate_address(AllocationId=allocation, InstanceId=instances[0]["InstanceId"])


def apply_key_pair(clients, ctx, plan: ResourcePlan) -> None:
    ec2, resource = clients("ec2"), plan.resource
    public = resource.attributes["public_key"]
    if not public:
        raise NotFound(f"key_pair {resource.name}: no public key to import (its key_block)")
    if plan.action == "replace":  # AWS cannot change a key pair's key: a new pair, same name
        ec2.delete_key_pair(KeyName=resource.name)
    ec2.import_key_pair(KeyName=resource.name, PublicKeyMaterial=public.encode(),
                        TagSpecifications=[{"ResourceType": "key-pair",
                                            "Tags": ctx.tag_list(resource.name)}])  # fmt: skip


def apply_db_subnet_group(clients, ctx, plan: ResourcePlan) -> None:
    rds, resource = clients("rds"), plan.resource
    a = resource.attributes
    if plan.action == "create":
        rds.create_db_subnet_group(DBSubnetGroupName=resource.name,
                                   DBSubnetGroupDescription=a["description"],
                                   SubnetIds=list(a["subnets"]), Tags=ctx.tag_list())  # fmt: skip
    else:
        rds.modify_db_subnet_group(DBSubnetGroupName=resource.name,
                                   DBSubnetGroupDescription=a["description"],
                                   SubnetIds=list(a["subnets"]))  # fmt: skip


APPLIERS: dict[str, Callable[[AwsClients, SiteContext, ResourcePlan], None]] = {
    "iam_policy": apply_iam_policy,
    "iam_role": apply_iam_role,
    "instance_profile": apply_instance_profile,
    "iam_user": apply_iam_user,
    "vpc": apply_vpc,
    "internet_gateway": apply_internet_gateway,
    "route": apply_route,
    "security_group": apply_security_group,
    "s3_bucket": apply_s3_bucket,
    "bucket_policy": apply_bucket_policy,
    "es_domain": apply_es_domain,
    "db_subnet_group": apply_db_subnet_group,
    "rds_instance": apply_rds_instance,
    "key_pair": apply_key_pair,
    "ec2_instance": apply_ec2_instance,
    "elastic_ip": apply_elastic_ip,
}


#: What the apply replaces (delete, then create) when the plan says so and it is allowed.
REPLACEABLE = frozenset({"ec2_instance", "key_pair"})


@task(name="apply-aws-resource", cache_policy=NO_CACHE,
      task_run_name="{plan.action} {plan.resource.kind} {plan.resource.name}")  # fmt: skip
def apply_item(clients: AwsClients, ctx: SiteContext, plan: ResourcePlan) -> str:
    """Create or update one resource as planned, and wait until it is usable.

    Not retried: a second create after a lost answer would make a second resource.

    Raises:
        AwsOperationFailed: AWS refused the change (the message names the resource and the code).
        AwsWaitTimeout: the resource did not become usable in time.
        ReplaceRefused: a replace of anything but an instance (do that one by hand).
    """
    resource = plan.resource
    if plan.action == "unchanged":
        return "unchanged"
    if plan.action == "replace" and resource.kind not in REPLACEABLE:
        raise ReplaceRefused(
            f"{resource.kind} {resource.name} cannot be replaced by this flow ("
            + ", ".join(c.describe() for c in plan.changes)
            + "): change it by hand"
        )
    try:
        APPLIERS[resource.kind](clients, ctx, plan)
    except ClientError as error:
        raise _failed(resource, plan.action, error) from None
    get_run_logger().info("%s %s %s%s", plan.action, resource.kind, resource.name,
                          "".join(f"; {c.describe()}" for c in plan.changes))  # fmt: skip
    return plan.action


# -- destroy --------------------------------------------------------------------------------------


def destroy_iam_policy(clients, ctx, item: DestroyItem) -> None:
    iam = clients("iam")
    arn = _iam_policy_arn(ctx, item.resource.name)
    for version in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
        if not version["IsDefaultVersion"]:
            iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
    iam.delete_policy(PolicyArn=arn)


def destroy_iam_role(clients, ctx, item: DestroyItem) -> None:
    iam, name = clients("iam"), item.resource.name
    attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
    if item.action == "strip":  # EMR's role: only the site's policy comes off
        ours = set(item.resource.attributes["policies"])
        for policy in attached:
            if policy["PolicyName"] in ours:
                iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
        return
    for policy in attached:
        iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
    for profile in iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]:
        iam.remove_role_from_instance_profile(
            InstanceProfileName=profile["InstanceProfileName"], RoleName=name
        )
    iam.delete_role(RoleName=name)


def destroy_instance_profile(clients, ctx, item: DestroyItem) -> None:
    iam, name = clients("iam"), item.resource.name
    for role in (item.current or {}).get("roles", []):
        iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=role)
    iam.delete_instance_profile(InstanceProfileName=name)


def destroy_iam_user(clients, ctx, item: DestroyItem) -> None:
    iam, name = clients("iam"), item.resource.name
    for policy in iam.list_user_policies(UserName=name)["PolicyNames"]:
        iam.delete_user_policy(UserName=name, PolicyName=policy)
    for key in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    iam.delete_user(UserName=name)


def destroy_internet_gateway(clients, ctx, item: DestroyItem) -> None:
    ec2, gateway = clients("ec2"), (item.current or {})["id"]
    ec2.detach_internet_gateway(InternetGatewayId=gateway, VpcId=ctx.site.vpc_id)
    ec2.delete_internet_gateway(InternetGatewayId=gateway)


def destroy_route(clients, ctx, item: DestroyItem) -> None:
    # only a route to a gateway the site made goes (one there before the site stays)
    gateway = _vpc_gateway(clients, ctx.site.vpc_id)
    current = item.current or {}
    if gateway and _owned(gateway.get("Tags"), ctx.site) and current.get("target") == gateway[
            "InternetGatewayId"]:  # fmt: skip
        clients("ec2").delete_route(RouteTableId=current["route_table"],
                                    DestinationCidrBlock=ANYWHERE)  # fmt: skip


def destroy_security_group(clients, ctx, item: DestroyItem) -> None:
    ec2 = clients("ec2")
    current = item.current or {}
    ids = group_ids(clients, ctx.site.vpc_id)
    if item.action == "strip":  # EMR's groups: only the site's rules come off
        ours = [r for r in item.resource.attributes["ingress"] if r in current.get("ingress", [])]
        if ours:
            ec2.revoke_security_group_ingress(
                GroupId=current["id"], IpPermissions=[_permission(r, ids) for r in ours]
            )
        return
    ec2.delete_security_group(GroupId=current["id"])


def destroy_s3_bucket(clients, ctx, item: DestroyItem) -> None:
    s3, name = clients("s3"), item.resource.name
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=name):
        doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                  for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]  # fmt: skip
        if doomed:
            s3.delete_objects(Bucket=name, Delete={"Objects": doomed, "Quiet": True})
    s3.delete_bucket(Bucket=name)


def destroy_es_domain(clients, ctx, item: DestroyItem) -> None:
    clients("opensearch").delete_domain(DomainName=item.resource.name)
    wait_es(clients, ctx, item.resource.name, gone=True)


def final_snapshot_name(identifier: str, now: dt.datetime) -> str:
    """The final snapshot a forced delete leaves: `<id>-final-YYYYmmddHHMM`."""
    return f"{identifier}-final-{now:%Y%m%d%H%M}"


def destroy_rds_instance(clients, ctx, item: DestroyItem) -> None:
    name = item.resource.name
    snapshot = final_snapshot_name(name, dt.datetime.now(dt.UTC))
    clients("rds").delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=False,
                                      FinalDBSnapshotIdentifier=snapshot)  # fmt: skip
    get_run_logger().info("deleting RDS instance %s after final snapshot %s", name, snapshot)
    wait_rds(clients, ctx, name, gone=True)


def destroy_ec2_instance(clients, ctx, item: DestroyItem) -> None:
    instance_id = (item.current or {})["id"]
    clients("ec2").terminate_instances(InstanceIds=[instance_id])
    wait_instance_state(clients, ctx, instance_id, "terminated")


def destroy_elastic_ip(clients, ctx, item: DestroyItem) -> None:
    ec2 = clients("ec2")
    address = _address(clients, ctx.site, item.resource.name)
    if address and address.get("AssociationId"):
        ec2.disassociate_address(AssociationId=address["AssociationId"])
    ec2.release_address(AllocationId=(item.current or {})["allocation_id"])


def destroy_key_pair(clients, ctx, item: DestroyItem) -> None:
    clients("ec2").delete_key_pair(KeyName=item.resource.name)


def destroy_db_subnet_group(clients, ctx, item: DestroyItem) -> None:
    clients("rds").delete_db_subnet_group(DBSubnetGroupName=item.resource.name)


DESTROYERS: dict[str, Callable[[AwsClients, SiteContext, DestroyItem], None]] = {
    "iam_policy": destroy_iam_policy,
    "iam_role": destroy_iam_role,
    "instance_profile": destroy_instance_profile,
    "iam_user": destroy_iam_user,
    "internet_gateway": destroy_internet_gateway,
    "route": destroy_route,
    "security_group": destroy_security_group,
    "s3_bucket": destroy_s3_bucket,
    "es_domain": destroy_es_domain,
    "db_subnet_group": destroy_db_subnet_group,
    "rds_instance": destroy_rds_instance,
    "key_pair": destroy_key_pair,
    "ec2_instance": destroy_ec2_instance,
    "elastic_ip": destroy_elastic_ip,
}


@task(name="destroy-aws-resource", cache_policy=NO_CACHE,
      task_run_name="{item.action} {item.resource.kind} {item.resource.name}")  # fmt: skip
def destroy_item(clients: AwsClients, ctx: SiteContext, item: DestroyItem) -> str:
    """Delete one resource (or strip what the site added to it); `keep`/`leave`/`absent` do
    nothing but say so.

    Raises:
        AwsOperationFailed: AWS refused (e.g. a group still in use), naming the resource.
    """
    logger = get_run_logger()
    resource = item.resource
    if item.action in {"keep", "leave", "absent"}:
        logger.info("%s %s %s%s", item.action, resource.kind, resource.name,
                    f" ({item.reason})" if item.reason else "")  # fmt: skip
        return item.action
    destroyer = DESTROYERS.get(resource.kind)
    if destroyer is None:  # the VPC's attribute, the edxapp bucket's policy: never undone
        return "leave"
    try:
        destroyer(clients, ctx, item)
    except ClientError as error:
        raise _failed(resource, item.action, error) from None
    logger.info("%s %s %s", "deleted" if item.action == "delete" else "stripped", resource.kind,
                resource.name)  # fmt: skip
    return item.action


# -- access keys ----------------------------------------------------------------------------------


def access_key_block_name(site: AwsSite, user: str) -> str:
    """The block holding `user`'s access key: `<client>-<user>` (block names take no `_`)."""
    return f"{site.client}-{user}".replace("_", "-")


@task(name="ensure-access-key-block", cache_policy=NO_CACHE, task_run_name="access key {user}",
      timeout_seconds=120)  # fmt: skip
def ensure_access_key_block(clients: AwsClients, ctx: SiteContext, user: str) -> str:
    """Make sure an `AwsCredentials` block holds a working access key of `user`.

    A block whose key the user still has is left alone (a rerun creates no key); otherwise a
    key is created straight into the block (the secret is never logged nor returned) and the
    key the block held before, if the user still has it, is deleted. The new block copies the
    deploying block's region and client parameters (endpoint).

    Returns:
        The block's name.
    """
    from prefect_aws import AwsCredentials

    iam, name = clients("iam"), access_key_block_name(ctx.site, user)
    keys = {k["AccessKeyId"]: k["Status"] for k in
            iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}  # fmt: skip
    try:
        held = AwsCredentials.load(name)
    except ValueError:  # no such block yet
        held = None
    if held is not None and keys.get(str(held.aws_access_key_id)) == "Active":
        get_run_logger().info("block %s holds an active key of %s: unchanged", name, user)
        return name
    with botocore_quiet():
        created = iam.create_access_key(UserName=user)["AccessKey"]
    deployer = clients.credentials
    AwsCredentials(
        aws_access_key_id=created["AccessKeyId"],
        aws_secret_access_key=created["SecretAccessKey"],
        region_name=deployer.region_name or ctx.site.region,
        aws_client_parameters=deployer.aws_client_parameters,
    ).save(name, overwrite=True)
    if held is not None and str(held.aws_access_key_id) in keys:
        iam.delete_access_key(UserName=user, AccessKeyId=str(held.aws_access_key_id))
    get_run_logger().info("created an access key of %s into block %s", user, name)
    return name


# -- the analytics instance over SSH ------------------------------------------------------------


@dataclass(frozen=True)
class InstanceAddresses:
    """How one of the site's instances is found and reached."""

    name: str
    id: str
    private_ip: str | None
    public_ip: str | None

    def address(self, kind: str) -> str:
        """The `public` or `private` address.

        Raises:
            NotFound: the instance has no address of that kind.
        """
        found = self.public_ip if kind == "public" else self.private_ip
        if not found:
            raise NotFound(f"ec2_instance {self.name} ({self.id}) has no {kind} address")
        return found


@task(name="find-aws-instance", task_run_name="find-aws-instance {name}", cache_policy=NO_CACHE,
      retries=READ_RETRIES, retry_delay_seconds=READ_RETRY_DELAY_SECONDS,
      retry_condition_fn=retry_on_outage, timeout_seconds=120)  # fmt: skip
def find_instance(clients: AwsClients, site: AwsSite, name: str) -> InstanceAddresses:
    """The site's live instance `name` (by its `Name` and `site` tags).

    Raises:
        NotFound: the site has no such instance (not deployed, or terminated).
        AwsOperationFailed: several instances carry its tags.
    """
    found = _instances(clients, site, name)
    if not found:
        raise NotFound(f"site {site.client} has no instance {name!r} (deploy-aws-analytics first)")
    if len(found) > 1:
        ids = ", ".join(i["InstanceId"] for i in found)
        raise AwsOperationFailed(f"ec2_instance {name}: {len(found)} instances carry its tags "
                                 f"({ids}); terminate the extra ones by hand")  # fmt: skip
    instance = found[0]
    return InstanceAddresses(name, instance["InstanceId"], instance.get("PrivateIpAddress"),
                             instance.get("PublicIpAddress"))  # fmt: skip


def console_output(clients: AwsClients, instance_id: str) -> str:
    """The instance's console output as text (botocore decodes EC2's base64)."""
    return str(clients("ec2").get_console_output(InstanceId=instance_id).get("Output") or "")


def console_keys_of(
    clients: AwsClients, instance_id: str, wait_seconds: float, interval: float
) -> ConsoleKeys:
    """cloud-init's host key fingerprints from the instance's console output.

    EC2 publishes the console output a few minutes after boot, so a freshly launched instance
    is asked again for up to `wait_seconds`; after that what it shows is returned (maybe
    nothing, which `verify_host_key` refuses unless trust on first use was asked for).
    """
    last: list[ConsoleKeys] = []

    def probe() -> ConsoleKeys | None:
        keys = parse_console_keys(console_output(clients, instance_id))
        last.append(keys)
        return keys if keys else None

    return wait_until(probe, timeout=wait_seconds, interval=interval,
                      on_timeout=lambda: last[-1])  # fmt: skip


@task(name="verify-aws-host-key", task_run_name="verify-host-key {instance.name} {address}",
      cache_policy=NO_CACHE, timeout_seconds=900)  # fmt: skip
def verify_instance_host_key(
    clients: AwsClients,
    identity: SshIdentity,
    instance: InstanceAddresses,
    address: str,
    trust_on_first_use: bool = False,
    timeout: float = 15,
    console_wait_seconds: float = 300,
    poll_interval: float = 10,
) -> tuple[StepResult, str]:
    """The host-key step of setup-analytics-host for an EC2 instance: a key known_hosts does
    not list yet must match what cloud-init printed on the instance's console output.

    Returns:
        The step and the SSH block's known_hosts, with the key added when it was verified now.

    Raises:
        HostKeyMismatch: known_hosts lists another key for the address.
        HostKeyNotVerified: the console shows other fingerprints, or none (without trust on
            first use).
    """
    return record_host_key(
        identity, address,
        lambda: console_keys_of(clients, instance.id, console_wait_seconds, poll_interval),
        trust_on_first_use, timeout,
    )  # fmt: skip


# -- the RDS instance's databases -------------------------------------------------------------


@dataclass(frozen=True)
class RdsEndpoint:
    """Where the site's RDS instance answers."""

    identifier: str
    address: str
    port: int


@task(name="read-rds-endpoint", cache_policy=NO_CACHE, retries=READ_RETRIES,
      retry_delay_seconds=READ_RETRY_DELAY_SECONDS, retry_condition_fn=retry_on_outage,
      timeout_seconds=120)  # fmt: skip
def rds_endpoint(clients: AwsClients, site: AwsSite) -> RdsEndpoint:
    """The endpoint of the site's RDS instance (the `rds_endpoint` output of the deploy).

    Raises:
        NotFound: the site has no RDS instance (not deployed, or destroyed).
        AwsOperationFailed: the instance is not `available` (still creating, being modified
            or deleted), or has no endpoint yet.
    """
    identifier = site.rds_identifier
    db = _db_instance(clients, identifier)
    if db is None:
        raise NotFound(f"site {site.client} has no RDS instance {identifier!r} "
                       "(deploy-aws-analytics first)")  # fmt: skip
    status, endpoint = db.get("DBInstanceStatus"), db.get("Endpoint") or {}
    if status != "available" or not endpoint.get("Address"):
        raise AwsOperationFailed(f"RDS instance {identifier} is {status}, not available: "
                                 "rerun once it is")  # fmt: skip
    return RdsEndpoint(identifier, str(endpoint["Address"]), int(endpoint.get("Port") or 3306))


@task(name="remove-access-key-block", cache_policy=NO_CACHE, task_run_name="access key {user}",
      timeout_seconds=120)  # fmt: skip
def remove_access_key_block(clients: AwsClients, ctx: SiteContext, user: str) -> str | None:
    """Undo `ensure_access_key_block`: delete the key the block holds (if `user` still has it)
    and the block. Nothing there: nothing done (a second teardown is a no-op).

    Returns:
        The block's name when it was removed, None when there was none.
    """
    from prefect_aws import AwsCredentials

    name = access_key_block_name(ctx.site, user)
    try:
        held = AwsCredentials.load(name)
    except ValueError:  # no such block
        return None
    iam, key_id = clients("iam"), str(held.aws_access_key_id)
    try:
        keys = {k["AccessKeyId"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}
    except ClientError as error:
        if error_code(error) != "NoSuchEntity":
            raise _failed(Resource("iam_user", user, {}), "list access keys of", error) from None
        keys = set()
    if key_id in keys:
        iam.delete_access_key(UserName=user, AccessKeyId=key_id)
        get_run_logger().info("deleted the access key of %s that block %s held", user, name)
    AwsCredentials.delete(name)
    get_run_logger().info("removed block %s", name)
    return name


def site_public_keys(site: AwsSite) -> dict[str, str]:
    """Key pair name -> `type base64` of the public key of its instances' `key_block`.

    Raises:
        ValueError: a key block does not exist (Prefect's message names it).
    """
    return {
        settings.key_name: public_key_line(SshIdentity.load(settings.key_block))
        for settings in (site.analytics, site.director)
        if settings.key_block
    }
