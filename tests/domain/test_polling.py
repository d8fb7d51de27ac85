"""domain.polling.wait_until: the one wait loop, on a fake clock (no sleeping)."""

import pytest

from domain.polling import wait_until
from pipeline.errors import OperationTimeout


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_the_first_answer_and_sleeps_the_interval_between_probes():
    clock, answers = Clock(), iter([None, None, "available"])
    result = wait_until(lambda: next(answers), timeout=60, interval=5,
                        on_timeout=lambda: "late", clock=clock, sleep=clock.sleep)  # fmt: skip
    assert result == "available"
    assert clock.sleeps == [5, 5]


def test_probes_once_more_at_the_deadline_then_lets_on_timeout_decide():
    clock, probes = Clock(), []

    def probe():
        probes.append(clock.now)
        return None

    def late():
        raise OperationTimeout(f"still creating after {clock.now - 100:g}s")

    with pytest.raises(OperationTimeout, match="still creating after 12s"):
        wait_until(probe, timeout=12, interval=5, on_timeout=late, clock=clock,
                   sleep=clock.sleep)  # fmt: skip
    assert probes == [100, 105, 110, 112]
    assert clock.sleeps == [5, 5, 2]


def test_on_timeout_may_return_a_timed_out_state_instead_of_raising():
    clock = Clock()
    result = wait_until(lambda: None, timeout=1, interval=5, on_timeout=lambda: "TIMEOUT",
                        clock=clock, sleep=clock.sleep)  # fmt: skip
    assert result == "TIMEOUT"


def test_an_error_raised_by_the_probe_ends_the_wait_at_once():
    clock = Clock()

    def probe():
        raise RuntimeError("snapshot went to 'error'")

    with pytest.raises(RuntimeError, match="went to 'error'"):
        wait_until(probe, timeout=60, interval=5, on_timeout=lambda: "late", clock=clock,
                   sleep=clock.sleep)  # fmt: skip
    assert clock.sleeps == []
