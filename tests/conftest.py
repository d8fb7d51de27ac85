"""Shared fixtures: the test bed of real services (tests/bed) and the OpenStack fake."""

pytest_plugins = ["tests.bed.fixtures", "tests.fakes.fixtures"]
