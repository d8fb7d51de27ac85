"""tasks.retries.retry_when: one retry condition, fed the error of a real Prefect state."""

from prefect.states import Completed, Failed

from pipeline.errors import OperationTimeout
from tasks.pipeline import PipelineTaskFailed, retry_only_transient
from tasks.retries import retry_when


def test_a_failed_state_is_retried_only_when_its_error_can_go_away():
    condition = retry_when(lambda error: isinstance(error, ConnectionError))
    assert condition(None, None, Failed(data=ConnectionResetError("reset by peer"))) is True
    assert condition(None, None, Failed(data=ValueError("bad interval"))) is False


def test_a_completed_state_is_never_retried():
    assert retry_when(lambda error: True)(None, None, Completed(data=1)) is False


def test_the_pipeline_retries_a_task_failure_only_when_every_cause_was_an_outage():
    outage = PipelineTaskFailed("TotalEventsDailyTask: database unreachable", transient=True)
    missing = PipelineTaskFailed("TotalEventsDailyTask: no log file", transient=False)
    assert retry_only_transient(None, None, Failed(data=outage)) is True
    assert retry_only_transient(None, None, Failed(data=missing)) is False
    # a timeout outside the pipeline's own classification is not retried by this condition
    assert retry_only_transient(None, None, Failed(data=OperationTimeout("late"))) is False
