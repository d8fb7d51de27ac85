"""An AWS analytics site (seed 004) as typed settings, and the resources it needs, computed.

`AwsSite` is what an operator writes for a site (`deployments/example-aws-site.yaml`): region,
VPC and subnet, who may SSH to the director, instance types and sizes, the Elasticsearch and
RDS settings. Bucket names follow the seed (`<client>-tracking-logs`, ...). No secret lives
here: the RDS master password comes from a block whose *name* the flow takes.

`desired_resources(site, account_id)` turns the settings into the list of `Resource`s the seed
creates by hand (IAM policies, role, instance profile and users; VPC attributes, internet
gateway and route; security groups; buckets and policies; the Elasticsearch domain; the RDS
instance; the EC2 instances and the Elastic IP), each with plain-data attributes that
`domain.aws_plan` compares with what AWS has. Pure: no boto3, no Prefect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from pipeline_config.fields import NonEmptyStr

PROJECT = "edx-ops-flows"
ANYWHERE = "0.0.0.0/0"
#: Security-group names the seed uses (EMR's are the ones EMR itself creates and reuses).
ANALYTICS_GROUP, DIRECTOR_GROUP, EMR_RDS_GROUP = "analytics", "director", "emr-rds"
EMR_MASTER_GROUP, EMR_SLAVE_GROUP = "ElasticMapReduce-master", "ElasticMapReduce-slave"
DEFAULT_GROUP = "default"
ROLE_NAME, EMR_EC2_ROLE = "edxanalytics", "EMR_EC2_DefaultRole"
EMR_POLICY, ES_POLICY = "provision_emr_clusters", "elasticsearch_all"
ES_USER, REPORTS_USER, REPORTS_POLICY = (
    "analytics_elasticsearch", "analytics_reports", "s3-read-analytics-reports",
)  # fmt: skip

_CLIENT = re.compile(r"^[a-z0-9][a-z0-9-]{1,40}[a-z0-9]$")
_CIDR = re.compile(r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")


def _ipv4_cidr(value: str) -> str:
    if not _CIDR.match(value):
        raise ValueError(f"{value!r} is not an IPv4 CIDR such as 10.0.0.0/16")
    return value


#: An IPv4 CIDR (`203.0.113.0/24`).
Cidr = Annotated[NonEmptyStr, AfterValidator(_ipv4_cidr)]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstanceSettings(_Settings):
    """One EC2 instance of the site."""

    instance_type: NonEmptyStr = Field(..., description="EC2 instance type, e.g. `t2.medium`.")
    volume_size: int = Field(..., ge=8, le=16384, description="Root EBS volume, GB.")
    image_id: NonEmptyStr = Field(
        ..., pattern=r"^ami-[0-9a-f]+$", description="AMI id (Ubuntu), e.g. `ami-d8132bb0`."
    )
    key_name: NonEmptyStr = Field(..., description="EC2 key pair of this set of instances.")
    key_block: NonEmptyStr | None = Field(
        default=None,
        description="SSH Identity block whose public key the key pair `key_name` is imported "
        "from (created when missing; another key there is drift). None: the key pair must "
        "exist already.",
    )


class ElasticsearchSettings(_Settings):
    """The Elasticsearch domain the Learner tasks write to (seed: 1 node, EBS 10 GB)."""

    version: NonEmptyStr = Field(default="1.5", description="Elasticsearch version.")
    instance_type: NonEmptyStr = Field(
        default="t2.small.elasticsearch", description="Node instance type."
    )
    instance_count: int = Field(default=1, ge=1, le=20, description="Number of data nodes.")
    volume_size: int = Field(default=10, ge=10, le=1024, description="EBS volume per node, GB.")
    volume_type: NonEmptyStr = Field(
        default="gp2", description="EBS volume type (`gp2`: General Purpose SSD)."
    )


class RdsSettings(_Settings):
    """The analytics RDS instance (MySQL) holding the Insights and Analytics API databases."""

    instance_class: NonEmptyStr = Field(default="db.t3.medium", description="RDS instance class.")
    allocated_storage: int = Field(default=50, ge=20, le=65536, description="Storage, GB.")
    engine_version: NonEmptyStr = Field(default="8.0", description="MySQL engine version.")
    master_username: NonEmptyStr = Field(default="root", description="Master user name.")
    master_password_block: NonEmptyStr = Field(
        default="aws-rds-master-password",
        description="Name of the Prefect `Secret` block holding the master password.",
    )
    subnet_group: NonEmptyStr | None = Field(
        default=None,
        description="DB subnet group (default: the account's default, or `client-analytics` "
        "when `subnet_ids` are given).",
    )
    subnet_ids: list[Annotated[NonEmptyStr, StringConstraints(pattern=r"^subnet-[0-9a-f]+$")]] = (
        Field(
            default_factory=list,
            description="Subnets of the DB subnet group, in two availability zones at least: "
            "the plan creates the group or corrects its subnets. Empty: the group named in "
            "`subnet_group` must exist already.",
        )
    )

    @field_validator("subnet_ids")
    @classmethod
    def _two_zones(cls, value: list[str]) -> list[str]:
        subnets = sorted(set(value))  # a subnet listed twice still counts once
        if len(subnets) == 1:
            raise ValueError("a DB subnet group needs subnets in two availability zones at least")
        return subnets


@dataclass(frozen=True)
class IngressRule:
    """One more inbound TCP rule on one of the site's own groups (`group:port:cidr`)."""

    group: str
    port: int
    cidr: str


_INGRESS = r"^(analytics|director|emr-rds):[0-9]{1,5}:[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$"


def _ingress_rule(value: str) -> str:
    group, port, cidr = value.split(":")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: port {port} is not 1-65535")
    _ipv4_cidr(cidr)
    return value


# A string rather than an object: the UI's run form shows a list of strings with its
# description, where a list of objects shows nothing until an item is added.
IngressRuleText = Annotated[str, StringConstraints(pattern=_INGRESS), AfterValidator(_ingress_rule)]


class AwsSite(_Settings):
    """Everything seed 004 clicks through for one client, but the secrets."""

    client: NonEmptyStr = Field(
        ..., description="Client name: names the buckets (`client-name-tracking-logs`, ...)."
    )
    region: NonEmptyStr = Field(..., description="AWS region of EC2, RDS and Elasticsearch.")
    vpc_id: NonEmptyStr = Field(..., pattern=r"^vpc-[0-9a-f]+$", description="The VPC.")
    subnet_id: NonEmptyStr = Field(
        ..., pattern=r"^subnet-[0-9a-f]+$", description="Subnet of the instances (and EMR)."
    )
    emr_in_vpc: bool = Field(
        default=True, description="EMR runs in the VPC: ensure an internet gateway and route."
    )
    director_ssh_cidr: Cidr = Field(
        ...,
        description=(
            "Who may SSH to the director, a CIDR such as `203.0.113.0/24` (the seed's "
            "anywhere, `0.0.0.0/0`, is refused by the plan's lint)."
        ),
    )
    analytics: InstanceSettings = Field(..., description="The analytics instance (Insights, API).")
    analytics_count: int = Field(
        default=1, ge=1, le=5, description="Analytics instances, tagged `analytics-N`."
    )
    director: InstanceSettings = Field(..., description="The ansible director instance.")
    elasticsearch: ElasticsearchSettings = Field(
        default_factory=ElasticsearchSettings, description="The Elasticsearch domain."
    )
    rds: RdsSettings = Field(default_factory=RdsSettings, description="The RDS instance.")
    reports_bucket: bool = Field(
        default=True, description="Create the analytics-api reports bucket and its read user."
    )
    extra_ingress: list[IngressRuleText] = Field(
        default_factory=list,
        description=(
            "More TCP rules on the site's groups, each `group:port:cidr` such as "
            "`analytics:18110:10.0.0.0/16` (group `analytics`, `director` or `emr-rds`; "
            "checked by the plan's lint)."
        ),
    )
    edxapp_bucket: NonEmptyStr | None = Field(
        default=None, description="The edxapp bucket (EDXAPP_GRADE_BUCKET) for `grades-download/*`."
    )
    edxapp_user_arn: NonEmptyStr | None = Field(
        default=None, description="ARN of the edxapp AWS user allowed to read `grades-download/*`."
    )

    @field_validator("client")
    @classmethod
    def _client_name(cls, value: str) -> str:
        if not _CLIENT.match(value) or "--" in value:
            raise ValueError(
                f"client {value!r}: lower-case letters, digits and single hyphens, 3-42 "
                "characters (it names S3 buckets)"
            )
        return value

    @model_validator(mode="after")
    def _edxapp_pair(self) -> AwsSite:
        if (self.edxapp_bucket is None) != (self.edxapp_user_arn is None):
            raise ValueError("edxapp_bucket and edxapp_user_arn go together (grades-download)")
        return self

    @property
    def extra_rules(self) -> list[IngressRule]:
        found = []
        for text in self.extra_ingress:
            group, port, cidr = text.split(":")
            found.append(IngressRule(group, int(port), cidr))
        return found

    # -- names the seed derives from the client --------------------------------------------------

    @property
    def buckets(self) -> dict[str, str]:
        """Role -> bucket name (seed 004, "S3")."""
        names = {
            "tracking_logs": f"{self.client}-tracking-logs",
            "emr": f"{self.client}-analytics-emr",
            "pipeline": f"{self.client}-edxanalytics",
        }
        if self.reports_bucket:
            names["reports"] = f"{self.client}-analytics-api-reports"
        return names

    @property
    def es_domain(self) -> str:
        # ES domain names: 3-28 characters, so long client names are cut
        return f"{self.client[:15].rstrip('-')}-analytics-es"

    @property
    def rds_identifier(self) -> str:
        return f"{self.client}-analytics"

    @property
    def rds_subnet_group(self) -> str | None:
        """The DB subnet group of the RDS instance (None: the account's default)."""
        if self.rds.subnet_group or not self.rds.subnet_ids:
            return self.rds.subnet_group
        return f"{self.client}-analytics"

    @property
    def analytics_names(self) -> list[str]:
        return [f"analytics-{n}" for n in range(1, self.analytics_count + 1)]

    @property
    def director_name(self) -> str:
        return "director"


# -- resources --------------------------------------------------------------------------------

#: The kinds `tasks.aws` reads and applies, in the order they are created (reverse: destroyed).
KINDS = (
    "iam_policy", "iam_role", "instance_profile", "iam_user", "vpc", "internet_gateway", "route",
    "security_group", "s3_bucket", "bucket_policy", "es_domain", "db_subnet_group",
    "rds_instance", "key_pair", "ec2_instance", "elastic_ip",
)  # fmt: skip


@dataclass(frozen=True)
class Resource:
    """One thing the site needs, as plain data.

    Attributes:
        kind: One of `KINDS`.
        name: Its name (unique per kind): what it is found by.
        attributes: What is compared with AWS (JSON-like values; lists sorted).
        depends_on: (kind, name) of resources that must exist first.
        managed: False for things the site uses but does not own (the VPC, the edxapp bucket,
            EMR's own groups): they are never created (the VPC) nor destroyed.
        partial: Attribute names whose wanted list need only be contained in AWS's (rules we add
            to a group others manage too).
        immutable: Attribute names AWS cannot change in place (a change means a new resource).
        creatable: False for what exists before the site (the VPC, the edxapp bucket's policy,
            the VPC's route table): missing, the plan stops and names it.
    """

    kind: str
    name: str
    attributes: dict[str, Any]
    depends_on: tuple[tuple[str, str], ...] = ()
    managed: bool = True
    partial: frozenset[str] = frozenset()
    immutable: frozenset[str] = frozenset()
    creatable: bool = True

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)


@dataclass(frozen=True)
class Rule:
    """An ingress rule: TCP `port` from a CIDR (`cidr`) or from a group (`group`, by name)."""

    port: int
    cidr: str | None = None
    group: str | None = None

    def as_dict(self) -> dict[str, Any]:
        source = {"cidr": self.cidr} if self.cidr else {"group": self.group}
        return {"protocol": "tcp", "port": self.port, **source}


def rules(*items: Rule) -> list[dict[str, Any]]:
    """Rules as sorted plain data, the form both sides of a comparison take."""
    return sort_rules([r.as_dict() for r in items])


def sort_rules(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda r: (r["port"], r.get("protocol", ""), str(r.get("cidr")),
                                        str(r.get("group"))))  # fmt: skip


def tags(site: AwsSite, flow_run: str | None = None) -> dict[str, str]:
    """The tags everything created carries: project, site and (when known) the flow run."""
    found = {"project": PROJECT, "site": site.client}
    if flow_run:
        found["flow-run"] = flow_run
    return found


def _policy(*statements: dict[str, Any], version: str = "2012-10-17") -> dict[str, Any]:
    return {"Version": version, "Statement": list(statements)}


def emr_policy() -> dict[str, Any]:
    """`provision_emr_clusters`: Jenkins launches and terminates EMR clusters (seed 004)."""
    return _policy({
        "Effect": "Allow",
        "Resource": "*",
        "Action": [
            "elasticmapreduce:*", "iam:PassRole", "route53:Get*", "route53:List*",
            "ec2:DescribeInstances", "rds:DescribeDBInstances",
        ],
    })  # fmt: skip


def es_policy() -> dict[str, Any]:
    """`elasticsearch_all`: EMR's instances write to the Elasticsearch index."""
    return _policy({"Effect": "Allow", "Resource": "*", "Action": ["es:*"]})


def reports_read_policy(bucket: str) -> dict[str, Any]:
    """Read the reports bucket: the bucket ARN (listing) and `/*` (the files); both needed."""
    return _policy({
        "Effect": "Allow",
        "Action": ["s3:Get*", "s3:List*"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    })  # fmt: skip


def grades_download_policy(bucket: str, user_arn: str) -> dict[str, Any]:
    """The edxapp bucket's `grades-download/*` readable by the edxapp user (instructor UI)."""
    return {
        "Version": "2008-10-17",
        "Id": "grades-download",
        "Statement": [{
            "Sid": "edxapp-reads-grades-download",
            "Effect": "Allow",
            "Principal": {"AWS": user_arn},
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/grades-download/*",
        }],
    }  # fmt: skip


def ec2_trust_policy() -> dict[str, Any]:
    """Who may assume the instance roles: EC2 (the seed's "Amazon EC2 role type")."""
    return _policy({
        "Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole",
    })  # fmt: skip


def es_access_policy(domain_arn: str, user_arn: str) -> dict[str, Any]:
    """Full access to the domain for the `analytics_elasticsearch` user."""
    return _policy({
        "Effect": "Allow",
        "Principal": {"AWS": user_arn},
        "Action": "es:*",
        "Resource": f"{domain_arn}/*",
    })  # fmt: skip


def desired_resources(
    site: AwsSite, account_id: str, public_keys: Mapping[str, str] | None = None
) -> list[Resource]:
    """What the site needs, in creation order (dependencies first).

    Args:
        site: The site's settings.
        account_id: The AWS account (ARNs in the policies).
        public_keys: Key pair name -> `type base64` of the public key it is imported from
            (read from the instances' `key_block`s by the caller; not needed to destroy).
    """
    iam = f"arn:aws:iam::{account_id}"
    found: list[Resource] = [
        Resource("iam_policy", EMR_POLICY, {"document": emr_policy()}),
        Resource("iam_policy", ES_POLICY, {"document": es_policy()}),
        Resource(
            "iam_role", ROLE_NAME,
            {"trust": ec2_trust_policy(), "policies": [EMR_POLICY]},
            depends_on=(("iam_policy", EMR_POLICY),),
        ),
        # EMR creates this role itself (its default roles); the site only attaches its policy
        Resource(
            "iam_role", EMR_EC2_ROLE, {"trust": ec2_trust_policy(), "policies": [ES_POLICY]},
            depends_on=(("iam_policy", ES_POLICY),), managed=False,
            partial=frozenset({"policies"}), immutable=frozenset({"trust"}),
        ),
        Resource(
            "instance_profile", ROLE_NAME, {"roles": [ROLE_NAME]},
            depends_on=(("iam_role", ROLE_NAME),),
        ),
        Resource("iam_user", ES_USER, {"inline_policies": {}}),
    ]  # fmt: skip
    buckets = site.buckets
    if "reports" in buckets:
        found.append(Resource(
            "iam_user", REPORTS_USER,
            {"inline_policies": {REPORTS_POLICY: reports_read_policy(buckets["reports"])}},
        ))  # fmt: skip
    vpc = ("vpc", site.vpc_id)
    found.append(Resource("vpc", site.vpc_id, {"enable_dns_hostnames": True}, creatable=False,
                          managed=False))  # fmt: skip
    if site.emr_in_vpc:
        found += [
            Resource("internet_gateway", f"{site.client}-igw", {"vpc": site.vpc_id},
                     depends_on=(vpc,)),
            Resource("route", f"{site.vpc_id}:{ANYWHERE}", {"internet_gateway": True},
                     depends_on=(("internet_gateway", f"{site.client}-igw"),), managed=False,
                     creatable=False),
        ]  # fmt: skip

    def group(name: str, description: str, ingress: list, **options: Any) -> Resource:
        needs = {("security_group", r["group"]) for r in ingress if r.get("group")} - {
            ("security_group", name)
        }
        return Resource(
            "security_group", name, {"vpc": site.vpc_id, "description": description,
                                     "ingress": ingress},
            depends_on=(vpc, *sorted(needs)), immutable=frozenset({"vpc", "description"}),
            **options,
        )  # fmt: skip

    def extra(name: str) -> list[Rule]:
        return [Rule(r.port, cidr=r.cidr) for r in site.extra_rules if r.group == name]

    found += [
        group(DIRECTOR_GROUP, "ansible director: SSH", rules(
            Rule(22, cidr=site.director_ssh_cidr), *extra(DIRECTOR_GROUP),
        )),
        group(ANALYTICS_GROUP, "analytics: Insights over HTTP(S), SSH from the director", rules(
            Rule(22, group=DIRECTOR_GROUP), Rule(80, cidr=ANYWHERE), Rule(443, cidr=ANYWHERE),
            *extra(ANALYTICS_GROUP),
        )),
        # EMR creates and reuses these by name; the site adds one rule and owns no other
        group(EMR_SLAVE_GROUP, "Slave group for Elastic MapReduce created on demand", [],
              managed=False, partial=frozenset({"ingress"})),
        group(EMR_MASTER_GROUP, "Master group for Elastic MapReduce created on demand",
              rules(Rule(22, group=ANALYTICS_GROUP)), managed=False,
              partial=frozenset({"ingress"})),
        group(EMR_RDS_GROUP, "the pipeline's EMR clusters reach the databases", rules(
            Rule(3306, group=EMR_MASTER_GROUP), Rule(3306, group=EMR_SLAVE_GROUP),
            *extra(EMR_RDS_GROUP),
        )),
    ]  # fmt: skip
    for role in buckets.values():
        found.append(Resource("s3_bucket", role, {"region": site.region},
                              immutable=frozenset({"region"})))  # fmt: skip
    if site.edxapp_bucket and site.edxapp_user_arn:
        found.append(Resource(
            "bucket_policy", site.edxapp_bucket,
            {"policy": grades_download_policy(site.edxapp_bucket, site.edxapp_user_arn)},
            managed=False, creatable=False,
        ))  # fmt: skip
    es = site.elasticsearch
    domain_arn = f"arn:aws:es:{site.region}:{account_id}:domain/{site.es_domain}"
    found.append(Resource(
        "es_domain", site.es_domain,
        {
            "version": es.version,
            "instance_type": es.instance_type,
            "instance_count": es.instance_count,
            "dedicated_master": False,
            "zone_awareness": False,
            "ebs": {"enabled": True, "type": es.volume_type, "size": es.volume_size},
            "advanced_options": {"rest.action.multi.allow_explicit_index": "true"},
            "access_policy": es_access_policy(domain_arn, f"{iam}:user/{ES_USER}"),
        },
        depends_on=(("iam_user", ES_USER),), immutable=frozenset({"version"}),
    ))  # fmt: skip
    rds = site.rds
    subnet_group = site.rds_subnet_group
    rds_needs: tuple[tuple[str, str], ...] = (("security_group", EMR_RDS_GROUP),)
    # a group named without subnets is the account's own, which must exist (AWS refuses the
    # create otherwise); with subnets it is the site's
    if subnet_group and rds.subnet_ids:
        found.append(Resource(
            "db_subnet_group", subnet_group,
            {"subnets": list(rds.subnet_ids),
             "description": f"the analytics RDS instance of {site.client}"},
        ))  # fmt: skip
        rds_needs += (("db_subnet_group", subnet_group),)
    found.append(Resource(
        "rds_instance", site.rds_identifier,
        {
            "engine": "mysql",
            "engine_version": rds.engine_version,
            "instance_class": rds.instance_class,
            "allocated_storage": rds.allocated_storage,
            "master_username": rds.master_username,
            "security_groups": [EMR_RDS_GROUP],
        },
        depends_on=rds_needs,
        immutable=frozenset({"engine", "master_username"}),
    ))  # fmt: skip
    keys: dict[str, str | None] = {}
    for settings in (site.analytics, site.director):
        if settings.key_block or settings.key_name not in keys:
            keys[settings.key_name] = settings.key_block
    for name, block in keys.items():
        if block:
            found.append(Resource("key_pair", name, {"public_key": (public_keys or {}).get(name)},
                                  immutable=frozenset({"public_key"})))  # fmt: skip
        else:  # made by hand before the site (seed 004): it must be there
            found.append(Resource("key_pair", name, {}, managed=False, creatable=False))

    def instance(name: str, settings: InstanceSettings, groups: list[str], profile: str | None):
        return Resource(
            "ec2_instance", name,
            {
                "instance_type": settings.instance_type,
                "image_id": settings.image_id,
                "volume_size": settings.volume_size,
                "key_name": settings.key_name,
                "subnet_id": site.subnet_id,
                "instance_profile": profile,
                "security_groups": sorted(groups),
            },
            depends_on=tuple(("security_group", g) for g in groups if g != DEFAULT_GROUP)
            + ((("instance_profile", profile),) if profile else ())
            + (("key_pair", settings.key_name),),
            # the seed: "roles can't be added after instance is launched"
            immutable=frozenset({"image_id", "volume_size", "key_name", "subnet_id",
                                 "instance_profile"}),
        )  # fmt: skip

    for name in site.analytics_names:
        found.append(instance(name, site.analytics, [DEFAULT_GROUP, ANALYTICS_GROUP], ROLE_NAME))
    found.append(instance(site.director_name, site.director, [DEFAULT_GROUP, DIRECTOR_GROUP],
                          None))  # fmt: skip
    first = site.analytics_names[0]
    found.append(Resource("elastic_ip", f"{first}-eip", {"instance": first},
                          depends_on=(("ec2_instance", first),)))  # fmt: skip
    return found
