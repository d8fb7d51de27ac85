"""The one wait-until-state loop of the project (openstacksdk's `wait_for_status`, generalised).

Every wait (snapshots available, a stack out of `*_IN_PROGRESS`, a database healthy again) is a
`probe` asked again and again until it has an answer or the deadline passes. The probe says
"done" by returning a value, "not yet" by returning None, and "this will never happen" by
raising; what happens at the deadline (raise a `...Timeout`, or return a timed-out state the
caller cleans up after) is the caller's `on_timeout`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Shortest sleep between two probes, so a deadline a hair away is not spun on.
MIN_SLEEP = 0.01


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float,
    on_timeout: Callable[[], T],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `probe` every `interval` seconds until it returns a value, at most `timeout` seconds.

    The probe runs at least once, and once more at the deadline (the last sleep is cut to what
    is left), so a state reached just in time is seen.

    Args:
        probe: Returns the result when the wait is over, None to keep waiting; raises to fail.
        timeout: Seconds from now after which `on_timeout` decides.
        interval: Seconds between probes.
        on_timeout: Called once the deadline passed without a result: raises the timeout error
            (naming what was waited for and the last state seen) or returns a value to return.

    Example:
        >>> states = iter(["creating", "creating", "available"])
        >>> wait_until(lambda: (s := next(states)) == "available" and s or None,
        ...            timeout=5, interval=0, on_timeout=lambda: "late")
        'available'
    """
    deadline = clock() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        remaining = deadline - clock()
        if remaining <= 0:
            return on_timeout()
        sleep(min(interval, max(remaining, MIN_SLEEP)))
