"""The AWS site description (domain.aws_site): the example file, names and resources of seed 004."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from domain.aws_site import (
    AwsSite,
    desired_resources,
    grades_download_policy,
    reports_read_policy,
    tags,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "deployments" / "example-aws-site.yaml"
ACCOUNT = "123456789012"


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def site(**changes) -> AwsSite:
    return AwsSite.model_validate({**example(), **changes})


def by_key(found):
    return {r.key: r for r in found}


def test_the_example_file_is_a_valid_site_with_the_seeds_bucket_names():
    loaded = site()
    assert loaded.client == "client-name"
    assert loaded.buckets == {
        "tracking_logs": "client-name-tracking-logs",
        "emr": "client-name-analytics-emr",
        "pipeline": "client-name-edxanalytics",
        "reports": "client-name-analytics-api-reports",
    }
    assert loaded.es_domain == "client-name-analytics-es"
    assert loaded.analytics_names == ["analytics-1"]


def test_every_field_has_a_description():
    def walk(model):
        for name, info in model.model_fields.items():
            yield model.__name__, name, info.description
            annotation = info.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                yield from walk(annotation)

    assert [(m, n) for m, n, text in walk(AwsSite) if not (text and text.strip())] == []


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"client": "Client_Name"}, "client"),
        ({"client": "a--b"}, "client"),
        ({"vpc_id": "my-vpc"}, "vpc_id"),
        ({"director_ssh_cidr": "the office"}, "director_ssh_cidr"),
        ({"edxapp_user_arn": None}, "edxapp_bucket"),
        ({"unknown": 1}, "unknown"),
        ({"extra_ingress": ["analytics:99999:10.0.0.0/8"]}, "extra_ingress"),
        ({"extra_ingress": ["analytics:22:10.0.0/8"]}, "extra_ingress"),
        ({"extra_ingress": ["default:22:10.0.0.0/8"]}, "extra_ingress"),
        ({"client": "   "}, "client"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(changes, named):
    with pytest.raises(ValidationError, match=named):
        site(**changes)


def test_the_resources_of_seed_004():
    found = by_key(desired_resources(site(), ACCOUNT))
    emr = found[("iam_policy", "provision_emr_clusters")].attributes["document"]
    assert emr["Statement"][0]["Resource"] == "*"
    assert set(emr["Statement"][0]["Action"]) == {
        "elasticmapreduce:*", "iam:PassRole", "route53:Get*", "route53:List*",
        "ec2:DescribeInstances", "rds:DescribeDBInstances",
    }  # fmt: skip
    assert found[("iam_policy", "elasticsearch_all")].attributes["document"]["Statement"] == [
        {"Effect": "Allow", "Resource": "*", "Action": ["es:*"]}
    ]
    assert found[("iam_role", "edxanalytics")].attributes["policies"] == ["provision_emr_clusters"]
    assert found[("iam_role", "EMR_EC2_DefaultRole")].attributes["policies"] == [
        "elasticsearch_all"
    ]
    assert found[("instance_profile", "edxanalytics")].attributes == {"roles": ["edxanalytics"]}
    reports = found[("iam_user", "analytics_reports")].attributes["inline_policies"]
    assert reports["s3-read-analytics-reports"]["Statement"][0]["Resource"] == [
        "arn:aws:s3:::client-name-analytics-api-reports",
        "arn:aws:s3:::client-name-analytics-api-reports/*",
    ]
    assert found[("vpc", "vpc-0123456789abcdef0")].attributes == {"enable_dns_hostnames": True}
    assert ("internet_gateway", "client-name-igw") in found
    groups = {n: r.attributes["ingress"] for (k, n), r in found.items() if k == "security_group"}
    assert groups["analytics"] == [
        {"protocol": "tcp", "port": 22, "group": "director"},
        {"protocol": "tcp", "port": 80, "cidr": "0.0.0.0/0"},
        {"protocol": "tcp", "port": 443, "cidr": "0.0.0.0/0"},
    ]
    assert groups["director"] == [{"protocol": "tcp", "port": 22, "cidr": "203.0.113.0/24"}]
    assert groups["ElasticMapReduce-master"] == [{"protocol": "tcp", "port": 22,
                                                  "group": "analytics"}]  # fmt: skip
    assert groups["emr-rds"] == [
        {"protocol": "tcp", "port": 3306, "group": "ElasticMapReduce-master"},
        {"protocol": "tcp", "port": 3306, "group": "ElasticMapReduce-slave"},
    ]
    grades = found[("bucket_policy", "client-name-edxapp")].attributes["policy"]
    assert grades["Statement"][0]["Resource"] == "arn:aws:s3:::client-name-edxapp/grades-download/*"
    assert grades["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::123456789012:user/edxapp"}
    es = found[("es_domain", "client-name-analytics-es")].attributes
    assert es["instance_count"] == 1 and es["ebs"] == {"enabled": True, "type": "gp2", "size": 10}
    assert es["advanced_options"] == {"rest.action.multi.allow_explicit_index": "true"}
    assert es["access_policy"]["Statement"][0]["Principal"] == {
        "AWS": f"arn:aws:iam::{ACCOUNT}:user/analytics_elasticsearch"
    }
    assert found[("rds_instance", "client-name-analytics")].attributes["security_groups"] == [
        "emr-rds"
    ]
    analytics = found[("ec2_instance", "analytics-1")].attributes
    assert analytics["instance_type"] == "t2.medium" and analytics["volume_size"] == 50
    assert analytics["instance_profile"] == "edxanalytics"
    assert analytics["security_groups"] == ["analytics", "default"]
    assert found[("ec2_instance", "director")].attributes["instance_type"] == "t2.micro"
    assert found[("elastic_ip", "analytics-1-eip")].attributes == {"instance": "analytics-1"}


def test_optional_parts_follow_the_settings():
    found = by_key(desired_resources(
        site(reports_bucket=False, emr_in_vpc=False, edxapp_bucket=None, edxapp_user_arn=None,
             analytics_count=2),
        ACCOUNT,
    ))  # fmt: skip
    kinds = {k for k, _ in found}
    assert "internet_gateway" not in kinds and "route" not in kinds
    assert "bucket_policy" not in kinds
    assert ("iam_user", "analytics_reports") not in found
    assert ("s3_bucket", "client-name-analytics-api-reports") not in found
    assert ("ec2_instance", "analytics-2") in found


def test_policies_name_both_the_bucket_and_its_objects():
    statement = reports_read_policy("b")["Statement"][0]
    assert statement["Resource"] == ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]
    assert grades_download_policy("e", "arn:x")["Statement"][0]["Action"] == "s3:GetObject"


def test_tags_name_project_site_and_run():
    assert tags(site(), "run-1") == {"project": "edx-ops-flows", "site": "client-name",
                                     "flow-run": "run-1"}  # fmt: skip
    assert "flow-run" not in tags(site())


def test_the_deployments_default_site_is_the_example():
    deployments = yaml.safe_load((EXAMPLE.parents[1] / "prefect.yaml").read_text())["deployments"]
    sites = [d["parameters"]["site"] for d in deployments if "site" in d.get("parameters", {})]
    assert len(sites) == 4  # deploy, destroy, host setup, databases
    for given in sites:
        assert AwsSite.model_validate(given) == site()


def test_key_pairs_are_the_sites_with_a_key_block_else_prerequisites():
    analytics = {**example()["analytics"], "key_block": "analytics-key"}
    found = by_key(desired_resources(site(analytics=analytics), ACCOUNT,
                                     {"analytics": "ssh-ed25519 AAAAC3"}))  # fmt: skip
    ours, given = found[("key_pair", "analytics")], found[("key_pair", "director")]
    assert (ours.attributes, ours.managed, ours.creatable) == (
        {"public_key": "ssh-ed25519 AAAAC3"}, True, True,
    )  # fmt: skip
    assert ours.immutable == {"public_key"}  # AWS cannot change a pair's key: replaced
    assert (given.attributes, given.managed, given.creatable) == ({}, False, False)
    assert ("key_pair", "analytics") in found[("ec2_instance", "analytics-1")].depends_on


def test_the_db_subnet_group_is_the_sites_when_it_lists_subnets():
    assert not [k for k in by_key(desired_resources(site(), ACCOUNT)) if k[0] == "db_subnet_group"]
    rds = {**example()["rds"], "subnet_ids": ["subnet-2", "subnet-1", "subnet-2"]}
    found = by_key(desired_resources(site(rds=rds), ACCOUNT))
    group = found[("db_subnet_group", "client-name-analytics")]
    assert group.attributes["subnets"] == ["subnet-1", "subnet-2"]
    assert ("db_subnet_group", "client-name-analytics") in found[
        ("rds_instance", "client-name-analytics")].depends_on  # fmt: skip
    named = site(rds={**rds, "subnet_group": "analytics-db"})
    assert named.rds_subnet_group == "analytics-db"
    with pytest.raises(ValidationError, match="two availability zones"):
        site(rds={**rds, "subnet_ids": ["subnet-1"]})
    with pytest.raises(ValidationError, match="two availability zones"):
        site(rds={**rds, "subnet_ids": ["subnet-1", "subnet-1"]})
