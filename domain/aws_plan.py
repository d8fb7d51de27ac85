"""The AWS site's plan, Terraform style: what exists compared with what the site needs.

`diff_site(resources, current)` takes the wanted `Resource`s (`domain.aws_site`) and what AWS
has, read by `tasks.aws` into the same plain shapes (`{(kind, name): attributes}`), and says
for each resource `create`, `update` (each changed attribute, old -> new), `replace` (an
attribute AWS cannot change in place) or `unchanged`. A rule added or removed by hand on one
of the site's groups is an `update` of its `ingress`, and applying the plan puts it back.

`lint_plan` refuses a plan that opens a port to the world other than 80 and 443 on
`analytics`, and Jenkins' 8080 to anyone (seed 004: "never allow external access to
Jenkins, even briefly"). `destroy_plan` lists what a teardown deletes, in reverse order,
keeping buckets that hold objects and the RDS instance unless forced.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from domain.aws_site import ANALYTICS_GROUP, ANYWHERE, KINDS, AwsSite, Resource, sort_rules
from domain.inventory import Inventory, inventory_from_groups
from pipeline.errors import InvalidInput, NotFound, Refused

Key = tuple[str, str]
Action = Literal["create", "update", "replace", "unchanged"]
#: Ports the world may reach, and only on `analytics` (Insights over HTTP and HTTPS).
PUBLIC_PORTS = frozenset({80, 443})
JENKINS_PORT = 8080


class PrerequisiteNotFound(NotFound):
    """Something the site builds on (the VPC, the edxapp bucket) does not exist."""


class UnsafeRuleRefused(Refused):
    """The plan would open a port the lint forbids; nothing was changed."""


class ReplaceRefused(Refused):
    """The plan replaces a resource (a new instance, domain or database) without leave to."""


@dataclass(frozen=True)
class AttributeChange:
    name: str
    old: Any
    new: Any

    def describe(self) -> str:
        return f"{self.name}: {shown(self.old)} -> {shown(self.new)}"


@dataclass(frozen=True)
class ResourcePlan:
    """What the apply does to one resource."""

    resource: Resource
    action: Action
    changes: tuple[AttributeChange, ...] = ()
    current: Mapping[str, Any] | None = None

    @property
    def key(self) -> Key:
        return self.resource.key


@dataclass(frozen=True)
class SitePlan:
    """Every resource of the site with its action, in creation order."""

    site: str
    items: tuple[ResourcePlan, ...]

    def count(self, action: Action) -> int:
        return sum(1 for item in self.items if item.action == action)

    @property
    def has_changes(self) -> bool:
        return any(item.action != "unchanged" for item in self.items)

    def pending(self) -> list[ResourcePlan]:
        return [item for item in self.items if item.action != "unchanged"]

    def item(self, kind: str, name: str) -> ResourcePlan:
        for entry in self.items:
            if entry.key == (kind, name):
                return entry
        raise NotFound(f"plan of site {self.site} has no {kind} {name!r}")

    def summary(self) -> str:
        counts = ", ".join(
            f"{self.count(a)} to {a}" if a != "unchanged" else f"{self.count(a)} unchanged"
            for a in ("create", "update", "replace", "unchanged")
            if self.count(a)
        )
        if not self.has_changes:
            return f"site {self.site}: nothing to do ({counts})"
        return f"site {self.site}: {counts}"

    def table(self) -> list[dict[str, str]]:
        """One row per resource, for a table artifact: kind, name, action, changes."""
        return [
            {
                "kind": item.resource.kind,
                "name": item.resource.name,
                "action": item.action,
                "changes": "; ".join(c.describe() for c in item.changes) or "-",
            }
            for item in self.items
        ]


def shown(value: Any) -> str:
    """A value as the plan shows it: rules compactly, documents as sorted JSON."""
    if value is None:
        return "(none)"
    if isinstance(value, list) and all(_is_rule(v) for v in value):
        return "[" + ", ".join(rule_text(v) for v in sort_rules(list(value))) + "]"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[" + ", ".join(sorted(value)) + "]"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _is_rule(value: Any) -> bool:
    return isinstance(value, dict) and "port" in value and ("cidr" in value or "group" in value)


def rule_text(rule: Mapping[str, Any]) -> str:
    source = rule.get("cidr") or f"sg:{rule.get('group')}"
    return f"{rule.get('protocol', 'tcp')}/{rule['port']} from {source}"


def normalise(value: Any) -> Any:
    """A value in the one form both sides are compared in (lists of rules sorted, dicts
    recursively, numbers as numbers, statement lists and action lists order-free)."""
    if isinstance(value, Mapping):
        return {str(k): normalise(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        items = [normalise(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _compare(resource: Resource, name: str, wanted: Any, current: Any) -> AttributeChange | None:
    want, have = normalise(wanted), normalise(current)
    if name in resource.partial and isinstance(want, list):
        # only the items the site adds are ours: others' items are not drift
        have_ours = [item for item in want if isinstance(have, list) and item in have]
        return None if have_ours == want else AttributeChange(name, have_ours, want)
    return None if want == have else AttributeChange(name, have, want)


def diff_resource(resource: Resource, current: Mapping[str, Any] | None) -> ResourcePlan:
    """The action for one resource, given what AWS has (None: it does not exist)."""
    if current is None:
        if not resource.creatable:
            raise PrerequisiteNotFound(
                f"{resource.kind} {resource.name!r} does not exist: the site builds on it "
                "(check the site's settings)"
            )
        return ResourcePlan(resource, "create")
    changes = tuple(
        change
        for name, wanted in resource.attributes.items()
        if (change := _compare(resource, name, wanted, current.get(name))) is not None
    )
    if not changes:
        return ResourcePlan(resource, "unchanged", current=current)
    replace = any(c.name in resource.immutable for c in changes)
    return ResourcePlan(resource, "replace" if replace else "update", changes, current)


def diff_site(
    site: str, resources: Iterable[Resource], current: Mapping[Key, Mapping[str, Any]]
) -> SitePlan:
    """The plan for every wanted resource, dependencies first.

    Raises:
        InvalidInput: two resources share a kind and name, or a dependency is not in the list.
        PrerequisiteNotFound: a resource the site does not create is missing.
    """
    ordered = order_resources(resources)
    return SitePlan(site, tuple(diff_resource(r, current.get(r.key)) for r in ordered))


def order_resources(resources: Iterable[Resource]) -> list[Resource]:
    """Resources sorted so that each comes after what it depends on (stable otherwise)."""
    items = list(resources)
    by_key: dict[Key, Resource] = {}
    for resource in items:
        if resource.kind not in KINDS:
            raise InvalidInput(f"resource {resource.name!r}: unknown kind {resource.kind!r}")
        if resource.key in by_key:
            raise InvalidInput(f"resource {resource.kind} {resource.name!r} appears twice")
        by_key[resource.key] = resource
    done: dict[Key, None] = {}
    visiting: set[Key] = set()

    def visit(resource: Resource) -> None:
        if resource.key in done:
            return
        if resource.key in visiting:
            raise InvalidInput(f"resources depend on each other around {resource.key}")
        visiting.add(resource.key)
        for need in resource.depends_on:
            if need not in by_key:
                raise InvalidInput(f"{resource.kind} {resource.name!r} needs {need}, not planned")
            visit(by_key[need])
        visiting.discard(resource.key)
        done[resource.key] = None

    for resource in items:
        visit(resource)
    return [by_key[key] for key in done]


# -- lint -----------------------------------------------------------------------------------------


def lint_rules(group: str, ingress: Iterable[Mapping[str, Any]]) -> list[str]:
    """What is wrong with these rules of `group` (empty: nothing)."""
    problems = []
    for rule in ingress:
        port = int(rule["port"])
        if port == JENKINS_PORT:
            problems.append(
                f"security group {group}: {rule_text(rule)} opens Jenkins' port {JENKINS_PORT}, "
                "which must never be reachable (use an SSH tunnel)"
            )
        elif rule.get("cidr") == ANYWHERE and not (
            group == ANALYTICS_GROUP and port in PUBLIC_PORTS
        ):
            problems.append(
                f"security group {group}: {rule_text(rule)} opens port {port} to the world; only "
                f"80 and 443 on {ANALYTICS_GROUP} may be"
            )
    return problems


def lint_plan(plan: SitePlan) -> None:
    """Refuse a plan whose security groups would open what they must not.

    Raises:
        UnsafeRuleRefused: naming every offending rule.
    """
    problems = [
        problem
        for item in plan.items
        if item.resource.kind == "security_group"
        for problem in lint_rules(item.resource.name, item.resource.attributes.get("ingress", []))
    ]
    if problems:
        raise UnsafeRuleRefused(
            f"plan of site {plan.site} refused, nothing changed: " + "; ".join(problems)
        )


def check_replacements(plan: SitePlan, allow_replace: bool) -> None:
    """Refuse a plan that replaces something, unless allowed (a new instance loses its disk).

    Raises:
        ReplaceRefused: naming each resource and the attributes that force it.
    """
    replaced = [item for item in plan.items if item.action == "replace"]
    if replaced and not allow_replace:
        what = "; ".join(
            f"{i.resource.kind} {i.resource.name} ("
            + ", ".join(c.describe() for c in i.changes if c.name in i.resource.immutable)
            + ")"
            for i in replaced
        )
        raise ReplaceRefused(
            f"plan of site {plan.site} replaces {what}: AWS cannot change that in place; run "
            "again with allow_replace to delete and create them"
        )


# -- destroy --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DestroyItem:
    """What a teardown does to one resource: `delete`; `keep` (forced only); `strip` (remove
    what the site added to something it does not own); `leave`; `absent` (nothing there)."""

    resource: Resource
    action: Literal["delete", "keep", "strip", "leave", "absent"]
    reason: str = ""
    current: Mapping[str, Any] | None = None


def destroy_plan(
    site: str,
    resources: Iterable[Resource],
    current: Mapping[Key, Mapping[str, Any]],
    *,
    force: bool = False,
) -> list[DestroyItem]:
    """What a teardown does to each resource, dependents first.

    Buckets holding objects and the RDS instance are kept unless `force` (the RDS instance is
    then deleted with a final snapshot, by `tasks.aws`), and so is what a kept resource needs
    (the RDS instance's group). What the site does not own (the VPC, EMR's groups and role,
    the edxapp bucket's policy, a gateway or bucket that was there before, untagged) is left;
    the rules, attachments and route the site added to such things are removed (`strip`).
    """
    del site  # named for symmetry with diff_site; the items carry everything
    items: list[DestroyItem] = []
    kept: set[Key] = set()
    ordered = list(reversed(order_resources(resources)))

    def keep(resource: Resource, have: Mapping[str, Any], reason: str) -> None:
        kept.add(resource.key)
        items.append(DestroyItem(resource, "keep", reason, have))

    for resource in ordered:
        have = current.get(resource.key)
        users = [r.key for r in ordered if resource.key in r.depends_on and r.key in kept]
        if have is None:
            items.append(DestroyItem(resource, "absent"))
        elif not resource.managed:
            stripped = resource.partial or resource.kind == "route"
            items.append(DestroyItem(resource, "strip" if stripped else "leave",
                                     "not owned by the site", have))  # fmt: skip
        elif users:
            kind, name = users[0]
            keep(resource, have, f"needed by the kept {kind} {name}")
        elif have.get("owned") is False:
            items.append(DestroyItem(resource, "leave", "was there before the site (untagged)",
                                     have))  # fmt: skip
        elif resource.kind == "s3_bucket" and have.get("objects") and not force:
            keep(resource, have, "holds objects (force to delete them)")
        elif resource.kind == "rds_instance" and not force:
            keep(resource, have, "databases are kept (force: deleted after a final snapshot)")
        else:
            items.append(DestroyItem(resource, "delete", current=have))
    return items


def destroy_table(items: Iterable[DestroyItem]) -> list[dict[str, str]]:
    return [
        {"kind": i.resource.kind, "name": i.resource.name, "action": i.action,
         "reason": i.reason or "-"}
        for i in items
    ]  # fmt: skip


# -- outputs --------------------------------------------------------------------------------------


def site_outputs(site: AwsSite, state: dict[Key, dict]) -> dict[str, Any]:
    """Endpoints, ARNs, addresses and group ids of an applied site, from a fresh read."""

    def get(kind: str, name: str, attribute: str) -> Any:
        return state.get((kind, name), {}).get(attribute)

    first = site.analytics_names[0]
    return {
        "analytics_instances": {
            name: {"id": get("ec2_instance", name, "id"),
                   "private_ip": get("ec2_instance", name, "private_ip")}
            for name in site.analytics_names
        },
        "analytics_public_ip": get("elastic_ip", f"{first}-eip", "public_ip"),
        "director": {
            "id": get("ec2_instance", site.director_name, "id"),
            "private_ip": get("ec2_instance", site.director_name, "private_ip"),
            "public_ip": get("ec2_instance", site.director_name, "public_ip"),
        },
        "security_groups": {
            name: attributes.get("id")
            for (kind, name), attributes in sorted(state.items()) if kind == "security_group"
        },
        "elasticsearch_endpoint": get("es_domain", site.es_domain, "endpoint"),
        "elasticsearch_arn": get("es_domain", site.es_domain, "arn"),
        "rds_endpoint": get("rds_instance", site.rds_identifier, "endpoint"),
        "rds_port": get("rds_instance", site.rds_identifier, "port"),
        "rds_arn": get("rds_instance", site.rds_identifier, "arn"),
        "role_arn": get("iam_role", "edxanalytics", "arn"),
        "instance_profile_arn": get("instance_profile", "edxanalytics", "arn"),
        "user_arns": {
            name: attributes.get("arn")
            for (kind, name), attributes in sorted(state.items()) if kind == "iam_user"
        },
        "buckets": dict(site.buckets),
    }  # fmt: skip


def site_inventory(site: AwsSite, state: Mapping[Key, Mapping[str, Any]]) -> Inventory:
    """The applied site's hosts as an inventory: the analytics instances in
    `analytics_servers`, the director in `deploy`, by private address (what the director's
    ansible reaches them by), with their names, instance ids and public addresses.

    Raises:
        InvalidInput: an instance has no private address yet (not applied).
    """
    first_eip = state.get(("elastic_ip", f"{site.analytics_names[0]}-eip"), {})
    groups: dict[str, list[str]] = {"analytics_servers": [], "deploy": []}
    names: dict[str, str] = {}
    host_vars: dict[str, dict[str, Any]] = {}
    members = [(n, "analytics_servers") for n in site.analytics_names]
    for name, group in [*members, (site.director_name, "deploy")]:
        instance = state.get(("ec2_instance", name))
        if not instance or not instance.get("private_ip"):
            raise InvalidInput(f"site {site.client}: instance {name} has no address (apply first)")
        address = str(instance["private_ip"])
        groups[group].append(address)
        names[address] = name
        public = instance.get("public_ip")
        if name == site.analytics_names[0] and first_eip.get("public_ip"):
            public = first_eip["public_ip"]
        host_vars[address] = {"instance_id": instance.get("id"), **(
            {"public_ip": public} if public else {})}  # fmt: skip
    return inventory_from_groups(groups, names=names, host_vars=host_vars,
                                 source=f"site {site.client}")  # fmt: skip
