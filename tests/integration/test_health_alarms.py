"""The alarms (`tasks/alarms.py`) on a real Prefect server, posting to a local HTTP receiver.

The server's own triggers service evaluates the automations; a custom-webhook notification
block posts to a receiver on 127.0.0.1, and the tests read what was posted. Runs end Failed
through the API (the server emits the same `prefect.flow-run.Failed` event as when a worker's
run fails); the missed-run alarm gets a short window instead of 26 hours.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Failed, Pending, Running, Scheduled
from prefect.types._datetime import now

from domain.polling import wait_until
from tasks.alarms import (
    DAILY_DEPLOYMENTS,
    SCHEDULED_DEPLOYMENTS,
    AlarmDeploymentNotFound,
    NotifyBlockNotFound,
    apply_alarms,
)

pytestmark = pytest.mark.slow

MISSED_AFTER = 15  # seconds, for the test: 26 hours in production


class Receiver:
    """An HTTP server on 127.0.0.1 keeping every JSON body posted to it."""

    def __init__(self) -> None:
        posted = self.posted = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                posted.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alarm"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, what: str, timeout: float = 90) -> dict:
        def found():
            return next((body for body in self.posted if predicate(body)), None)

        def timed_out():
            raise AssertionError(f"no post {what} after {timeout}s; posted: {self.posted}")

        return wait_until(found, timeout=timeout, interval=0.5, on_timeout=timed_out)


@pytest.fixture(scope="module")
def alarms(prefect_server) -> Iterator[tuple[Receiver, dict[str, str]]]:
    """Deployments of the scheduled flows, the notification block, the alarms applied."""
    receiver = Receiver()
    try:
        with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
            CustomWebhookNotificationBlock(
                name="ops-alarms", url=receiver.url,
                json_data={"subject": "{{subject}}", "body": "{{body}}"},
            ).save("ops-alarms", overwrite=True)  # fmt: skip
            ids = {}
            with prefect_server.client() as client:
                for full in {*SCHEDULED_DEPLOYMENTS, *DAILY_DEPLOYMENTS}:
                    flow_name, name = full.split("/")
                    flow_id = client.create_flow_from_name(flow_name)
                    ids[full] = str(client.create_deployment(flow_id=flow_id, name=name))
            apply_alarms("custom-webhook/ops-alarms", missed_after=MISSED_AFTER)
            # Again: the command updates the alarms instead of adding a second set.
            created = apply_alarms("custom-webhook/ops-alarms", missed_after=MISSED_AFTER)
            with prefect_server.client() as client:
                names = sorted(a.name for a in client.read_automations())
            assert names == sorted(a.name for a in created) == [
                "edx-ops: failed-or-crashed-run", "edx-ops: missed-daily",
                "edx-ops: missed-nightly-backup", "edx-ops: silent-daily",
                "edx-ops: silent-nightly-backup",
            ]  # fmt: skip
            yield receiver, ids
    finally:
        receiver.server.shutdown()


def fail_a_run(prefect_server, deployment_id: str, message: str) -> str:
    with prefect_server.client() as client:
        run = client.create_flow_run_from_deployment(deployment_id)
        client.set_flow_run_state(run.id, Running(), force=True)
        client.set_flow_run_state(run.id, Failed(message=message), force=True)
        return run.name


def test_a_failed_backup_run_reaches_the_receiver(prefect_server, alarms):
    receiver, ids = alarms
    run = fail_a_run(
        prefect_server, ids["backup-backend-node/nightly-backup"],
        "Flow run encountered an exception: VolumeNotFound: no volume mysql_data on backend1",
    )  # fmt: skip
    body = receiver.wait_for(lambda b: run in b["subject"], f"for the failed run {run}")
    assert body == {
        "subject": f"nightly-backup: run {run} Failed",
        "body": f"Flow run {run} of deployment nightly-backup ended Failed: Flow run "
        "encountered an exception: VolumeNotFound: no volume mysql_data on backend1",
    }


def test_a_health_run_with_a_critical_finding_names_it(prefect_server, alarms):
    receiver, ids = alarms
    run = fail_a_run(
        prefect_server, ids["check-ha-health/ha-health"],
        "Flow run encountered an exception: UnhealthyControlPlane: 1 critical findings; "
        "first: galera 10.0.0.12: node 10.0.0.12 did not answer",
    )  # fmt: skip
    body = receiver.wait_for(lambda b: run in b["subject"], f"for the health run {run}")
    assert body["subject"] == f"ha-health: run {run} Failed"
    assert "first: galera 10.0.0.12: node 10.0.0.12 did not answer" in body["body"]


def test_a_silent_daily_deployment_reaches_the_receiver(alarms):
    receiver, _ = alarms
    body = receiver.wait_for(lambda b: b["subject"] == "daily: no completed run", "for daily")
    assert body["body"] == f"Deployment daily has completed no run within {MISSED_AFTER} seconds."


def test_each_run_not_completed_after_its_schedule_time_reaches_the_receiver(
    prefect_server, alarms
):
    """Counted from each run's schedule time: a run nobody started (the server marks it Late)
    and one a worker took but that never completed each raise the alarm, naming the run; a
    run that completed in time does not, though the deployment's other runs are missed."""
    receiver, ids = alarms
    deployment = ids["backup-backend-node/nightly-backup"]
    with prefect_server.client() as client:
        # Due a minute ago, no worker: the late-runs service marks it Late (15 s past due).
        overdue = client.create_flow_run_from_deployment(
            deployment, state=Scheduled(scheduled_time=now("UTC") - timedelta(minutes=1))
        )
        # Taken by a worker on time, then hanging.
        hanging = client.create_flow_run_from_deployment(deployment)
        client.set_flow_run_state(hanging.id, Pending(), force=True)
        client.set_flow_run_state(hanging.id, Running(), force=True)
        # Taken and completed within the window.
        done = client.create_flow_run_from_deployment(deployment)
        client.set_flow_run_state(done.id, Pending(), force=True)
        client.set_flow_run_state(done.id, Running(), force=True)
        client.set_flow_run_state(done.id, Completed(), force=True)
    for run in (hanging, overdue):
        subject = f"nightly-backup: run {run.name} not completed"
        body = receiver.wait_for(lambda b, s=subject: b["subject"] == s, f"for {run.name}")
        scheduled = run.expected_start_time
        assert body["body"] == (
            f"Flow run {run.name} of deployment nightly-backup (scheduled for {scheduled}) has "
            f"not completed within {MISSED_AFTER} seconds of its schedule time."
        )
    # The completed run's window closed long before the overdue run's alarm (Late + window).
    assert not [b for b in receiver.posted if done.name in b["subject"] + b["body"]]


def test_a_missing_notify_block_is_named(prefect_server, alarms):
    with (
        temporary_settings({PREFECT_API_URL: prefect_server.api_url}),
        pytest.raises(NotifyBlockNotFound, match="'slack-webhook/nobody' not found"),
    ):
        apply_alarms("slack-webhook/nobody")


def test_a_deployment_not_deployed_yet_is_named(prefect_server, alarms):
    with (
        temporary_settings({PREFECT_API_URL: prefect_server.api_url}),
        pytest.raises(AlarmDeploymentNotFound, match="deployment 'analytics-import/weekly' not"),
    ):
        apply_alarms("custom-webhook/ops-alarms", daily=["analytics-import/weekly"])
