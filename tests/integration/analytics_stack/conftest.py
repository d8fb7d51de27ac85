"""One Prefect test server for the analytics stack, host setup and remote pipeline flows.

Kept apart from the other flow directories' harnesses (each session-scoped for its own
directory). Heartbeats off: each flow call is 10x faster.
"""

import pytest
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session", autouse=True)
def analytics_stack_prefect_harness():
    with (
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        prefect_test_harness(server_startup_timeout=60),
    ):
        yield
