"""Keep a cleanup from being cut short by a second termination signal: `TerminationShield`.

Prefect's flow engine turns SIGTERM into a `TerminationSignal` exception raised wherever the main
thread happens to be (`prefect.utilities.engine.capture_sigterm`); SIGINT raises
KeyboardInterrupt. The first one should stop the work, and the `finally` blocks then undo what
the work changed on a node. A second signal (an impatient operator, a supervisor that sends
SIGTERM to the whole process group twice, a worker's cancel right after a shutdown) would raise
again inside that `finally`, cutting the undo short. The shield lets the first signal through
and holds every later one until the cleanup is over.
"""

from __future__ import annotations

import contextlib
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
    """While active, the first SIGTERM/SIGINT interrupts as before; later ones wait.

    Call `hold()` where the cleanup starts (a `finally`): from then on every signal waits too.
    On exit the previous handlers come back; a signal that waited is delivered then, unless the
    block is already ending with an exception (the run is stopping anyway), in which case it is
    only logged. Outside the main thread signals cannot be handled (nor do they arrive there),
    so the shield does nothing.

    A previous handler of SIG_DFL (no Prefect engine around) becomes `SystemExit(128 + signal)`
    rather than the default action, so that the cleanup still runs.
    """

    def __init__(self, signals: tuple[int, ...] = TERMINATION_SIGNALS) -> None:
        self.signals = signals
        self.interrupted_by: int | None = None
        self.held: list[int] = []
        self._holding = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> TerminationShield:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def hold(self) -> None:
        """From now on, every termination signal waits until the shield's exit."""
        self._holding = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._holding or self.interrupted_by is not None:
            self.held.append(signum)
            _logger().warning(
                "%s received while cleaning up: held until the cleanup is done",
                signal.Signals(signum).name,
            )
            return
        self.interrupted_by = signum
        self._holding = True  # whatever comes next is the cleanup
        self._deliver(signum, self._previous.get(signum), frame)

    @staticmethod
    def _deliver(signum: int, handler: object, frame: FrameType | None) -> None:
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:
            raise SystemExit(128 + signum)
        # SIG_IGN (or None: installed outside Python): ignored, as before

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            with contextlib.suppress(TypeError, ValueError):
                signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous = {}
        if not self.held:
            return
        names = ", ".join(signal.Signals(s).name for s in self.held)
        if exc_type is not None:
            _logger().warning("cleanup done; %s held meanwhile: the run is stopping already", names)
            return
        _logger().warning("cleanup done; delivering %s held meanwhile", names)
        signal.raise_signal(self.held[0])
