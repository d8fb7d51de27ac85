"""Keep a cleanup from being cut short by a second termination signal: `TerminationShield`.

Prefect's flow engine turns SIGTERM into a `TerminationSignal` exception raised wherever the main
thread happens to be (`prefect.utilities.engine.capture_sigterm`); SIGINT raises
KeyboardInterrupt. The first one should stop the work, and the `finally` blocks then undo what
the work changed on a node. A second signal (an impatient operator, a supervisor that sends
SIGTERM to the whole process group twice, a worker's cancel right after a shutdown) would raise
again inside that `finally`, cutting the undo short. The shield, entered where the cleanup
starts, holds every signal until the cleanup is over.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType

from prefect import get_run_logger

TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The run's logger (the message reaches the Prefect UI), else this module's."""
    try:
        return get_run_logger()
    except Exception:
        return logging.getLogger(__name__)


class TerminationShield:
    """While active, SIGTERM and SIGINT wait; on exit the previous handlers come back and a
    signal that waited is delivered then, unless the cleanup itself failed (its error is what
    the run must end with; the run is ending anyway).

    Enter it as the first statement of the `finally` that undoes the work, not around the
    work: Prefect's own handler must stay installed meanwhile, since a worker only announces a
    cancel (and the run then ends Cancelled, not Crashed) to a flow process whose SIGTERM
    handler is Prefect's. Outside the main thread signals cannot be handled (nor do they arrive
    there), so the shield does nothing.
    """

    def __init__(self, signals: tuple[int, ...] = TERMINATION_SIGNALS) -> None:
        self.signals = signals
        self.held: list[int] = []
        self._previous: dict[int, object] = {}

    def __enter__(self) -> TerminationShield:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._hold)
        return self

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        self.held.append(signum)
        _logger().warning(
            "%s received while cleaning up: held until the cleanup is done",
            signal.Signals(signum).name,
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous = {}
        if not self.held:
            return
        names = ", ".join(signal.Signals(s).name for s in self.held)
        if exc_type is not None:
            _logger().warning("%s held during a cleanup that failed: not delivered", names)
            return
        _logger().warning("cleanup done; delivering %s held meanwhile", names)
        signal.raise_signal(self.held[0])
