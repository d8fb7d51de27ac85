"""One Prefect test server for the backup flow's integration tests.

Kept apart from tests/flows/conftest.py: both are session-scoped, each for its own directory.
Heartbeats off (each flow call is 10x faster). The test server's task-run recorder is off too:
on its SQLite database, recording a task run right before the flow asks for its concurrency slot
makes that request hit SQLITE_BUSY_SNAPSHOT, answered 503 and retried by the client 2 s later,
in every test. The flows run exactly the same; the tests never read task-run records.
"""

import pytest
from prefect import get_client
from prefect.settings import (
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED,
    temporary_settings,
)
from prefect.testing.utilities import prefect_test_harness

from tests.integration.backup.site import galera_site, make_site, site  # noqa: F401 (fixtures)


@pytest.fixture(scope="session", autouse=True)
def backup_prefect_harness():
    with (
        temporary_settings(
            {
                PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED: False,
            }
        ),
        prefect_test_harness(server_startup_timeout=60),
    ):
        yield


@pytest.fixture
def concurrency_limit():
    """`concurrency_limit(name, limit=1)` creates (or resets) a global concurrency limit, as an
    operator does once per node with `prefect gcl create backup-<node> --limit 1`."""

    def upsert(name: str, limit: int = 1) -> str:
        with get_client(sync_client=True) as client:
            client.upsert_global_concurrency_limit_by_name(name, limit)
        return name

    return upsert
