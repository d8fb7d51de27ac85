"""The one shape of a Prefect `retry_condition_fn`: retry a failed task run only when its error
is one that can go away. Each outside system says which errors those are (a cloud outage,
throttling, a pipeline task whose every cause was an outage); the unwrapping is done here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

RetryCondition = Callable[[Any, Any, Any], bool]


def retry_when(can_go_away: Callable[[BaseException], bool]) -> RetryCondition:
    """A `retry_condition_fn` that retries only when `can_go_away(error)` holds.

    Example:
        >>> @task(retries=2, retry_condition_fn=retry_when(is_transient))
        ... def read_bucket(): ...
    """

    def condition(task: Any, task_run: Any, state: Any) -> bool:
        try:
            state.result()
        except Exception as error:  # noqa: BLE001 - only classified, Prefect keeps the failure
            return can_go_away(error)
        return False

    condition.__doc__ = f"Retry only errors that {can_go_away.__name__} accepts."
    return condition
