"""Fixtures of the task tests: the example stacks on the OpenStack fake."""

from tests.unit.conftest import fake_stacks  # noqa: F401 (a fixture)
