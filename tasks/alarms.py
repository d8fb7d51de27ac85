"""Alarms that reach a person: Prefect automations defined here, created by one command.

- ``failed-or-crashed-run``: a run of one of the scheduled deployments (the nightly backup,
  the daily import, the health check) ends Failed or Crashed. A health run with a critical
  finding is a Failed run whose state message names the first finding, so this alarm covers
  it too.
- ``missed-<deployment>``: a run of the daily import or the nightly backup that has not
  Completed :data:`MISSED_AFTER_SECONDS` (26 hours: a day plus a margin for a slow run) after
  its schedule time, counted for each run on its own. The clock starts when the run's time
  comes: its ``Pending`` event (a worker took it) or its ``Late`` event (the server's late-runs
  service marks a run nobody started, 15 s after its scheduled time by default). So a run no
  worker picks up, one that hangs, and one that failed and was never rerun all raise it.
- ``silent-<deployment>``: no Completed run of it at all within those 26 hours, counted from
  the last completed one. It covers what the per-run alarm cannot see: runs that are no
  longer created (a schedule paused or removed, the scheduler down).

Each alarm sends the message to a notification block the operator saved (a custom webhook,
Slack, e-mail through SendGrid...; :data:`NOTIFY_BLOCK`). Messages name the deployment, the run
and its state message (the first finding of a health run), never a parameter or a secret.

Create or update them (from the repository root, against the Prefect API of the profile):

    uv run python -m tasks.alarms --notify-block custom-webhook/ops-alarms
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from prefect.automations import Automation, EventTrigger, Posture, SendNotification
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from pipeline.errors import InvalidInput, NotFound

#: The notification block the alarms send to (`<block type slug>/<name>`), unless told otherwise.
NOTIFY_BLOCK = "custom-webhook/ops-alarms"
#: The scheduled deployments (flow name/deployment name) whose failures reach a person.
SCHEDULED_DEPLOYMENTS = (
    "analytics-import/daily",
    "backup-backend-node/nightly-backup",
    "check-ha-health/ha-health",
)
#: The daily deployments whose silence is an alarm too.
DAILY_DEPLOYMENTS = ("analytics-import/daily", "backup-backend-node/nightly-backup")
MISSED_AFTER_SECONDS = 26 * 3600
PREFIX = "edx-ops: "

FAILED_BODY = (
    "Flow run {{ flow_run.name }} of deployment {{ deployment.name }} ended "
    "{{ flow_run.state.name }}: {{ flow_run.state.message }}"
)


class NotifyBlockNotFound(NotFound):
    """The notification block the alarms should send to is not saved."""


class AlarmDeploymentNotFound(NotFound):
    """A deployment the alarms watch does not exist on the API (not deployed yet)."""


def failed_run_alarm(deployment_ids: Sequence[str], block_document_id: str) -> Automation:
    """The alarm for a Failed or Crashed run of any of these deployments (by id)."""
    return Automation(
        name=f"{PREFIX}failed-or-crashed-run",
        description="A scheduled run failed or crashed (a health run fails on a critical finding).",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.id": [f"prefect.deployment.{d}" for d in deployment_ids]
            },
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject="{{ deployment.name }}: run {{ flow_run.name }} {{ flow_run.state.name }}",
                body=FAILED_BODY,
            )
        ],
    )


#: The events that say a run's schedule time has come (a worker took it, or nobody did).
DUE_EVENTS = frozenset({"prefect.flow-run.Pending", "prefect.flow-run.Late"})


def missed_run_alarm(
    deployment_id: str, label: str, block_document_id: str, within: float = MISSED_AFTER_SECONDS
) -> Automation:
    """The alarm for a run of one deployment not Completed ``within`` seconds of its schedule.

    Each run is judged on its own (``for_each`` the run): its window opens with its first
    ``Pending`` or ``Late`` event, and only its own ``Completed`` event closes it.
    """
    return Automation(
        name=f"{PREFIX}missed-{label}",
        description=f"A run of {label} did not complete within {_duration(within)} of its "
        "schedule time.",
        trigger=_no_completion(
            deployment_id, within, after=set(DUE_EVENTS), for_each={"prefect.resource.id"}
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject=f"{label}: run {{{{ flow_run.name }}}} not completed",
                body=f"Flow run {{{{ flow_run.name }}}} of deployment {label} (scheduled for "
                f"{{{{ flow_run.expected_start_time }}}}) has not completed within "
                f"{_duration(within)} of its schedule time.",
            )
        ],
    )


def silent_deployment_alarm(
    deployment_id: str, label: str, block_document_id: str, within: float = MISSED_AFTER_SECONDS
) -> Automation:
    """The alarm for no Completed run of one deployment at all within ``within`` seconds."""
    return Automation(
        name=f"{PREFIX}silent-{label}",
        description=f"No completed run of {label} within {_duration(within)}.",
        trigger=_no_completion(deployment_id, within),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject=f"{label}: no completed run",
                body=f"Deployment {label} has completed no run within {_duration(within)}.",
            )
        ],
    )


def _no_completion(deployment_id: str, within: float, **scope: set[str]) -> EventTrigger:
    """Fires when no Completed run of the deployment comes within ``within`` seconds (of the
    ``after`` event, per ``for_each`` bucket, when ``scope`` gives them)."""
    return EventTrigger(
        expect={"prefect.flow-run.Completed"},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.id": f"prefect.deployment.{deployment_id}"},
        posture=Posture.Proactive,
        threshold=1,
        within=within,
        **scope,
    )


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} hours" if seconds >= 3600 else f"{seconds:g} seconds"


def apply_alarms(
    notify_block: str = NOTIFY_BLOCK,
    deployments: Sequence[str] = SCHEDULED_DEPLOYMENTS,
    daily: Sequence[str] = DAILY_DEPLOYMENTS,
    missed_after: float = MISSED_AFTER_SECONDS,
) -> list[Automation]:
    """Create or replace the alarms (by name) on the current Prefect API; returns them."""
    slug, _, name = notify_block.partition("/")
    if not slug or not name:
        raise InvalidInput(
            f"notify block {notify_block!r}: expected `<block type slug>/<name>`, "
            "e.g. custom-webhook/ops-alarms"
        )
    with get_client(sync_client=True) as client:
        try:
            block_id = str(
                client.read_block_document_by_name(
                    name, block_type_slug=slug, include_secrets=False
                ).id
            )
        except ObjectNotFound:
            raise NotifyBlockNotFound(
                f"notify block {notify_block!r} not found: save a notification block of type "
                f"{slug} named {name} first"
            ) from None
        ids = {}
        for full in sorted({*deployments, *daily}):
            try:
                ids[full] = str(client.read_deployment_by_name(full).id)
            except ObjectNotFound:
                raise AlarmDeploymentNotFound(
                    f"deployment {full!r} not found on the Prefect API: the alarms watch it, "
                    "so deploy it first (prefect deploy --all)"
                ) from None
        wanted = [failed_run_alarm([ids[n] for n in deployments], block_id)]
        for full in daily:
            label = full.split("/")[-1]
            wanted += [
                missed_run_alarm(ids[full], label, block_id, within=missed_after),
                silent_deployment_alarm(ids[full], label, block_id, within=missed_after),
            ]
        # Replaced by name, so running the command again updates rather than duplicates.
        for automation in wanted:
            for old in client.read_automations_by_name(automation.name):
                client.delete_automation(old.id)
    return [automation.create() for automation in wanted]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tasks.alarms [--notify-block TYPE/NAME]``: create or update the alarms."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m tasks.alarms",
        description="Create or update (replace by name) the edx-ops alarms on the Prefect API "
        "of the profile (PREFECT_API_URL): failed-or-crashed-run, missed-<deployment> and "
        "silent-<deployment> for the daily deployments. The deployments must exist and the "
        "notification block be saved.",
    )
    parser.add_argument(
        "--notify-block",
        default=NOTIFY_BLOCK,
        help="notification block as `<block type slug>/<name>`, e.g. custom-webhook/ops-alarms, "
        "slack-webhook/ops (any notification block, saved beforehand)",
    )
    args = parser.parse_args(argv)
    try:
        created = apply_alarms(args.notify_block)
    except (InvalidInput, NotFound) as error:  # the operator's to fix: no traceback
        print(f"{parser.prog}: {error}", file=sys.stderr)
        return 2
    for automation in created:
        print(f"{automation.name}: {automation.description}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
