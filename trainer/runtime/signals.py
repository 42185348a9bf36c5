"""Graceful stop on SIGTERM (cluster preemption) and SIGINT (Ctrl-C)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)


class StopOnSignal:
    """Within `with`, SIGTERM and SIGINT set a flag that the loop reads after each step.

    A second SIGINT stops at once (KeyboardInterrupt), for a user who does not want to wait.
    Outside the main thread (where handlers cannot be installed) it only reports False.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signals = signals
        self.received: signal.Signals | None = None
        self._unannounced = False
        self._previous: dict[signal.Signals, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)
        # Announced by the next check, not here: logging inside a handler re-enters a log stream that
        # the interrupted code may be writing ("RuntimeError: reentrant call", a traceback on stderr).
        self._unannounced = True

    def _announce(self) -> None:
        if self._unannounced:
            self._unannounced = False
            log.warning("%s received: finishing the current step, then saving a checkpoint "
                        "(press Ctrl-C again to stop at once)", self.received.name)

    def __call__(self) -> bool:
        self._announce()
        return self.received is not None

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def __exit__(self, *exc: object) -> None:
        self._announce()  # a signal that no check saw (it came after the last step)
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
