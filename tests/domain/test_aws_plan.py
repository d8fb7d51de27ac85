"""The AWS site's plan (domain.aws_plan): create / update / replace / unchanged, drift, lint,
destroy; on the resources `domain.aws_site` computes for the example site."""

from __future__ import annotations

import copy

import pytest

from domain.aws_plan import (
    PrerequisiteNotFound,
    ReplaceRefused,
    UnsafeRuleRefused,
    check_replacements,
    destroy_plan,
    diff_site,
    lint_plan,
    order_resources,
    site_inventory,
)
from domain.aws_site import Resource, desired_resources
from pipeline.errors import InvalidInput
from tests.domain.test_aws_site import ACCOUNT, site


def everything_exists(resources):
    """What AWS would report right after an apply: exactly the wanted attributes."""
    return {r.key: copy.deepcopy(r.attributes) for r in resources}


def prerequisites_only(resources):
    """An account holding only what the site builds on (VPC, edxapp bucket, route table)."""
    return {
        r.key: {"enable_dns_hostnames": False} if r.kind == "vpc" else
        {"policy": None} if r.kind == "bucket_policy" else {"internet_gateway": False}
        for r in resources
        if not r.creatable
    }  # fmt: skip


def test_an_empty_account_is_all_create_but_what_the_site_builds_on():
    resources = desired_resources(site(), ACCOUNT)
    plan = diff_site("client-name", resources, prerequisites_only(resources))
    actions = {item.key: item.action for item in plan.items}
    assert actions.pop(("vpc", "vpc-0123456789abcdef0")) == "update"
    assert actions.pop(("route", "vpc-0123456789abcdef0:0.0.0.0/0")) == "update"
    assert actions.pop(("bucket_policy", "client-name-edxapp")) == "update"
    # the key pairs made by hand before the site (no key_block): there, nothing to compare
    assert (
        actions.pop(("key_pair", "analytics"))
        == actions.pop(("key_pair", "director"))
        == ("unchanged")
    )
    assert set(actions.values()) == {"create"}
    assert plan.item("vpc", "vpc-0123456789abcdef0").changes[0].describe() == (
        "enable_dns_hostnames: False -> True"
    )
    assert "22 to create" in plan.summary()


def test_a_missing_vpc_stops_the_plan_naming_it():
    with pytest.raises(PrerequisiteNotFound, match="vpc 'vpc-0123456789abcdef0'"):
        diff_site("client-name", desired_resources(site(), ACCOUNT), {})


def test_everything_in_place_is_nothing_to_do():
    resources = desired_resources(site(), ACCOUNT)
    plan = diff_site("client-name", resources, everything_exists(resources))
    assert not plan.has_changes
    assert plan.summary().startswith("site client-name: nothing to do")
    assert {row["action"] for row in plan.table()} == {"unchanged"}


def test_order_and_list_shapes_do_not_count_as_changes():
    resources = desired_resources(site(), ACCOUNT)
    current = everything_exists(resources)
    current[("security_group", "analytics")]["ingress"].reverse()
    policy = current[("iam_policy", "provision_emr_clusters")]["document"]
    policy["Statement"][0]["Action"].reverse()
    assert not diff_site("client-name", resources, current).has_changes


def test_a_rule_added_by_hand_is_drift_shown_old_to_new():
    resources = desired_resources(site(), ACCOUNT)
    current = everything_exists(resources)
    current[("security_group", "analytics")]["ingress"].append(
        {"protocol": "tcp", "port": 8080, "cidr": "0.0.0.0/0"}
    )
    current[("security_group", "director")]["ingress"] = []  # and one removed
    plan = diff_site("client-name", resources, current)
    analytics = plan.item("security_group", "analytics")
    assert analytics.action == "update"
    (change,) = analytics.changes
    assert "tcp/8080 from 0.0.0.0/0" in change.describe().split("->")[0]
    assert "8080" not in change.describe().split("->")[1]
    director = plan.item("security_group", "director")
    assert director.changes[0].describe() == ("ingress: [] -> [tcp/22 from 203.0.113.0/24]")
    assert plan.count("update") == 2
    lint_plan(plan)  # the plan closes 8080 again: nothing to refuse


def test_rules_others_put_on_emr_groups_are_not_drift_but_ours_missing_is():
    resources = desired_resources(site(), ACCOUNT)
    current = everything_exists(resources)
    master = current[("security_group", "ElasticMapReduce-master")]
    master["ingress"].append({"protocol": "tcp", "port": 8443, "group": "ElasticMapReduce-slave"})
    assert not diff_site("client-name", resources, current).has_changes
    master["ingress"] = [{"protocol": "tcp", "port": 8443, "group": "ElasticMapReduce-slave"}]
    item = diff_site("client-name", resources, current).item(
        "security_group", "ElasticMapReduce-master"
    )
    assert item.action == "update"
    assert item.changes[0].describe() == "ingress: [] -> [tcp/22 from sg:analytics]"


def test_changed_sizes_are_updates_and_a_new_image_a_replace():
    resources = desired_resources(site(), ACCOUNT)
    current = everything_exists(resources)
    current[("ec2_instance", "director")]["instance_type"] = "t2.nano"
    current[("rds_instance", "client-name-analytics")]["allocated_storage"] = 20
    current[("ec2_instance", "analytics-1")]["image_id"] = "ami-0000"
    plan = diff_site("client-name", resources, current)
    director = plan.item("ec2_instance", "director")
    assert (director.action, director.changes[0].describe()) == (
        "update", "instance_type: t2.nano -> t2.micro",
    )  # fmt: skip
    rds = plan.item("rds_instance", "client-name-analytics")
    assert rds.changes[0].describe() == "allocated_storage: 20 -> 50"
    assert plan.item("ec2_instance", "analytics-1").action == "replace"
    with pytest.raises(ReplaceRefused, match=r"ec2_instance analytics-1 \(image_id: ami-0000"):
        check_replacements(plan, allow_replace=False)
    check_replacements(plan, allow_replace=True)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("analytics:8080:10.0.0.0/8", "Jenkins' port 8080"),
        ("analytics:8080:0.0.0.0/0", "Jenkins' port 8080"),
        ("emr-rds:3306:0.0.0.0/0", "opens port 3306 to the world"),
        ("director:443:0.0.0.0/0", "only 80 and 443 on analytics"),
    ],
)
def test_the_lint_refuses_unsafe_rules(extra, message):
    resources = desired_resources(site(extra_ingress=[extra]), ACCOUNT)
    plan = diff_site("client-name", resources, prerequisites_only(resources))
    with pytest.raises(UnsafeRuleRefused, match=message):
        lint_plan(plan)


def test_the_lint_refuses_ssh_to_the_director_from_anywhere():
    resources = desired_resources(site(director_ssh_cidr="0.0.0.0/0"), ACCOUNT)
    plan = diff_site("client-name", resources, prerequisites_only(resources))
    with pytest.raises(UnsafeRuleRefused, match="director: tcp/22 from 0.0.0.0/0 opens port 22"):
        lint_plan(plan)


def test_the_lint_lets_the_seeds_rules_and_private_extras_through():
    extra = "analytics:18110:10.0.0.0/16"
    resources = desired_resources(site(extra_ingress=[extra]), ACCOUNT)
    lint_plan(diff_site("client-name", resources, prerequisites_only(resources)))


def test_destroy_keeps_full_buckets_and_the_database_unless_forced():
    resources = desired_resources(site(), ACCOUNT)
    current = everything_exists(resources)
    current[("s3_bucket", "client-name-edxanalytics")]["objects"] = True
    del current[("elastic_ip", "analytics-1-eip")]
    items = {i.resource.key: i for i in destroy_plan("client-name", resources, current)}
    assert items[("s3_bucket", "client-name-edxanalytics")].action == "keep"
    assert items[("s3_bucket", "client-name-analytics-emr")].action == "delete"
    assert items[("rds_instance", "client-name-analytics")].action == "keep"
    assert items[("elastic_ip", "analytics-1-eip")].action == "absent"
    assert items[("vpc", "vpc-0123456789abcdef0")].action == "leave"
    # the rule the site put on EMR's group goes, EMR's group stays
    assert items[("security_group", "ElasticMapReduce-master")].action == "strip"
    assert items[("iam_role", "EMR_EC2_DefaultRole")].action == "strip"
    # the kept database keeps its group; the groups it names need only exist (EMR's)
    assert items[("security_group", "emr-rds")].reason == (
        "needed by the kept rds_instance client-name-analytics"
    )
    assert items[("security_group", "analytics")].action == "delete"
    order = [i.resource.key for i in destroy_plan("client-name", resources, current)]
    assert order.index(("ec2_instance", "analytics-1")) < order.index(
        ("security_group", "analytics")
    ) < order.index(("security_group", "director"))  # fmt: skip
    forced = {
        i.resource.key: i.action
        for i in destroy_plan("client-name", resources, current, force=True)
    }
    assert forced[("s3_bucket", "client-name-edxanalytics")] == "delete"
    assert forced[("rds_instance", "client-name-analytics")] == "delete"
    assert forced[("security_group", "emr-rds")] == "delete"


def test_destroy_leaves_what_was_there_before_the_site():
    resources = desired_resources(site(), ACCOUNT)
    current = everything_exists(resources)
    current[("s3_bucket", "client-name-tracking-logs")]["owned"] = False
    current[("internet_gateway", "client-name-igw")]["owned"] = False
    items = {i.resource.key: i for i in destroy_plan("client-name", resources, current)}
    assert items[("s3_bucket", "client-name-tracking-logs")].action == "leave"
    assert items[("internet_gateway", "client-name-igw")].action == "leave"
    assert items[("s3_bucket", "client-name-analytics-emr")].action == "delete"


def test_bad_resource_lists_are_refused():
    one = Resource("s3_bucket", "b", {})
    with pytest.raises(InvalidInput, match="appears twice"):
        order_resources([one, one])
    with pytest.raises(InvalidInput, match="not planned"):
        order_resources([Resource("s3_bucket", "c", {}, depends_on=(("iam_user", "u"),))])
    with pytest.raises(InvalidInput, match="unknown kind"):
        order_resources([Resource("lambda", "f", {})])


def test_the_applied_instances_make_the_inventory():
    resources = desired_resources(site(), ACCOUNT)
    current = everything_exists(resources)
    current[("ec2_instance", "analytics-1")].update(id="i-1", private_ip="10.0.1.4",
                                                    public_ip="54.0.0.9")  # fmt: skip
    current[("ec2_instance", "director")].update(id="i-2", private_ip="10.0.1.5", public_ip=None)
    current[("elastic_ip", "analytics-1-eip")]["public_ip"] = "3.3.3.3"
    inventory = site_inventory(site(), current)
    analytics = inventory.host("10.0.1.4")
    assert (analytics.groups, analytics.name) == (("analytics_servers",), "analytics-1")
    assert analytics.vars == {"instance_id": "i-1", "public_ip": "3.3.3.3"}
    assert inventory.host("10.0.1.5").groups == ("deploy",)
    assert inventory.host("10.0.1.5").vars == {"instance_id": "i-2"}
    del current[("ec2_instance", "director")]
    with pytest.raises(InvalidInput, match="instance director has no address"):
        site_inventory(site(), current)


def test_a_missing_key_pair_made_by_hand_stops_the_plan_naming_it():
    resources = desired_resources(site(), ACCOUNT)
    current = prerequisites_only(resources)
    del current[("key_pair", "director")]
    with pytest.raises(PrerequisiteNotFound, match="key_pair 'director' does not exist"):
        diff_site("client-name", resources, current)
