"""Heat stack plans: create, update (which parameters, the template) or none, from plain data."""

from __future__ import annotations

import pytest

from domain.stack_plan import (
    StackBusy,
    StackInfo,
    StackPlan,
    diff_stack,
    load_template,
    wanted_parameters,
)
from flows.analytics_stack import TEMPLATE
from pipeline.errors import InvalidInput, Refused


def test_stack_plans():
    template = load_template(str(TEMPLATE))
    assert template["heat_template_version"] == "2015-04-30"  # a string, as Heat returns it
    given = {"image": "u", "key_name": "k", "public_net_id": "p", "network": "n",
             "security_group": "s", "hadoop_size": 10}  # fmt: skip
    wanted = wanted_parameters(template, given)
    assert wanted["flavor"] == "m1.large" and wanted["hadoop_size"] == "10"
    assert diff_stack("a", None, template, given).action == "create"
    current = StackInfo("id", "a", "CREATE_COMPLETE", "", {**wanted, "hadoop_size": "10.0"})
    assert diff_stack("a", current, template, given, template).action == "none"
    bigger = diff_stack("a", current, template, {**given, "hadoop_size": 20}, template)
    assert bigger.action == "update"
    assert [(c.name, c.current, c.wanted) for c in bigger.changes] == [
        ("hadoop_size", "10.0", "20")
    ]
    edited = {**template, "description": "edited"}
    changed = diff_stack("a", current, edited, given, template)
    assert (changed.action, changed.template_changed, changed.changes) == ("update", True, ())
    failed = StackInfo("id", "a", "CREATE_FAILED", "quota", dict(wanted))
    assert "CREATE_FAILED: quota" in diff_stack("a", failed, template, given, template).summary()
    with pytest.raises(StackBusy, match="UPDATE_IN_PROGRESS"):
        diff_stack("a", StackInfo("id", "a", "UPDATE_IN_PROGRESS", ""), template, given)
    with pytest.raises(ValueError, match=r"\['flavour'\] are not in the template"):
        wanted_parameters(template, {**given, "flavour": "x"})


def test_a_plan_that_acts_on_a_stack_needs_the_stack():
    with pytest.raises(InvalidInput, match="plan for stack a: 'update' needs the current stack"):
        StackPlan("a", "update")
    current = StackInfo("id", "a", "CREATE_COMPLETE", "")
    assert StackPlan("a", "none", current=current).existing is current
    with pytest.raises(InvalidInput, match="plan for stack a: no current stack to act on"):
        _ = StackPlan("a", "create").existing


def test_bad_templates_and_busy_stacks_are_in_the_families(tmp_path):
    not_hot = tmp_path / "t.yaml"
    not_hot.write_text("resources: {}\n")
    with pytest.raises(InvalidInput, match="t.yaml is not a HOT template"):
        load_template(str(not_hot))
    assert issubclass(StackBusy, Refused)
