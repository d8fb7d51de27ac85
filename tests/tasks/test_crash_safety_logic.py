"""The pieces that make a backup survive its own death, without services: the record a run
leaves on the node (`NodeChange`) and the shield that holds termination signals during cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace

import pytest

from tasks.node_record import NodeChange
from tasks.signals import TerminationShield


def change(**overrides) -> NodeChange:
    fields = {
        "flow_run_id": "4cb1a41c-5390-48f9-b8ca-9d6a17f5af7b",
        "flow_run_name": "faithful-butterfly",
        "server": "backend1",
        "mode": "lock",
        "changes": ("desync", "read_lock"),
        "galera": True,
        "cluster_size": 3,
        "lease_id": "0f6f5d8e-9c43-4c36-9b7f-1c1b1f6d2a10",
    }
    return NodeChange.now(**{**fields, **overrides})


def test_a_record_reads_back_as_written():
    record = change()

    assert NodeChange.from_json(record.to_json()) == record
    assert json.loads(record.to_json())["version"] == 1


def test_a_record_says_what_was_changed_and_by_which_run():
    record = change()

    assert record.describe().startswith(
        "desynced (wsrep_desync = ON) and read-locked (FLUSH TABLES WITH READ LOCK) in lock mode"
    )
    assert record.run_label() == "faithful-butterfly (4cb1a41c-5390-48f9-b8ca-9d6a17f5af7b)"
    assert change(mode="stop", changes=("stop",)).describe().startswith("stopped (stop command")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "Expecting property name"),
        (b'{"version": 2}', "not a version 1 record"),
        (b'{"version": 1, "mode": "lock"}', "fields missing"),
    ],
)
def test_a_record_that_is_not_valid_is_refused(raw, message):
    with pytest.raises(ValueError, match=message):
        NodeChange.from_json(raw)


def test_a_record_of_this_process_is_alive_and_of_an_ended_process_is_not():
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip

    mine = change()

    assert mine.process_gone() is False
    assert replace(mine, process_pid=int(ended.stdout)).process_gone() is True
    # a pid reused by another process is not the run's process
    assert replace(mine, process_started=mine.process_started - 3600).process_gone() is True
    assert replace(mine, process_host="worker-elsewhere").process_gone() is None


def test_signals_wait_until_the_cleanup_is_done_then_arrive():
    arrived = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: arrived.append(signum))
    try:
        with TerminationShield() as shield:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            assert arrived == [], "a signal got through the shield"
        assert shield.held == [signal.SIGTERM, signal.SIGTERM]
        assert arrived == [signal.SIGTERM]  # delivered once, after the cleanup
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_held_during_a_failed_cleanup_is_not_delivered():
    arrived = []

    def handler(signum, frame):
        arrived.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        with pytest.raises(RuntimeError, match="resync failed"), TerminationShield():
            os.kill(os.getpid(), signal.SIGINT)
            raise RuntimeError("resync failed")
        assert arrived == []  # the cleanup's own error is what the run ends with
        assert signal.getsignal(signal.SIGINT) is handler  # restored
    finally:
        signal.signal(signal.SIGINT, previous)
