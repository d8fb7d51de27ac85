"""Pytest fixtures for the fakes (register with ``pytest_plugins``).

- ``openstack_fake``: a started :class:`~tests.fakes.openstack.OpenStackFake` on a free port of
  127.0.0.1 (snapshots and stacks take 0.1 s to finish), stopped after the test.
- ``openstack_conn``: an openstacksdk ``Connection`` to it, closed after the test.
- ``discovery``: ``discovery(course_runs, client_id=None, client_secret=None)`` starts a
  :class:`~tests.fakes.discovery.DiscoveryFake` (the course catalog's REST API) on a free port
  of 127.0.0.1; every one started is stopped after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.fakes.discovery import DiscoveryFake
from tests.fakes.openstack import OpenStackFake

if TYPE_CHECKING:
    from openstack.connection import Connection

#: Delays short enough for fast tests, long enough to observe the in-between states.
FIXTURE_DELAY = 0.1


@pytest.fixture
def openstack_fake() -> Iterator[OpenStackFake]:
    fake = OpenStackFake(snapshot_delay=FIXTURE_DELAY, stack_delay=FIXTURE_DELAY)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def openstack_conn(openstack_fake: OpenStackFake) -> Iterator[Connection]:
    conn = openstack_fake.connect()
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def discovery() -> Iterator[Callable[..., DiscoveryFake]]:
    started: list[DiscoveryFake] = []

    def start(course_runs: list[dict], **credentials) -> DiscoveryFake:
        fake = DiscoveryFake(course_runs, **credentials).start()
        started.append(fake)
        return fake

    try:
        yield start
    finally:
        for fake in started:
            fake.stop()
