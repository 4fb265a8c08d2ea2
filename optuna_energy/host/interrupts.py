"""Ctrl-C and SIGTERM that stop a run without leaving a trial RUNNING."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class StopRequest:
    """A stop asked for by a signal, delivered only where it leaves the study clean.

    Raised inside the objective, ``KeyboardInterrupt`` fails the running trial and queues its
    copy; raised while Optuna creates or tells a trial, it would leave that trial RUNNING. So a
    stop that arrives outside the objective is held until the loop or the next objective starts.
    """

    def __init__(self) -> None:
        self.requested = False
        self.in_objective = False

    def request(self) -> None:
        self.requested = True
        if self.in_objective:
            raise KeyboardInterrupt

    def deliver(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def clear(self) -> None:
        self.requested = False


STOP = StopRequest()
"""This process's stop request; signal handlers call ``STOP.request()``."""


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Ctrl-C and SIGTERM (from a launcher, Slurm, systemd) as a ``KeyboardInterrupt`` that keeps
    the study clean: raised at once inside the objective, held while Optuna creates or tells a
    trial (``StopRequest``). Later signals are ignored so that the stop in progress (failing and
    re-queueing the running trial) is not itself interrupted. Outside the main thread, where
    Python cannot install signal handlers, nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        STOP.request()

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        STOP.clear()  # delivered or moot: a later loop in this process starts clean
