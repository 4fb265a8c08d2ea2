"""Ctrl-C, SIGTERM and SIGHUP: one way to stop, at any moment, without leaving a trial RUNNING.

A signal becomes ``Interrupted`` (a ``KeyboardInterrupt``) raised in the main thread, so every
``finally`` runs and the command ends with one line. Only where Optuna creates or tells a trial
is it held (``deferred_interrupts``): raised there, it would leave that trial RUNNING.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
"""What ``signal.getsignal`` gives: a function, ``SIG_DFL``, ``SIG_IGN``, or None (not set from Python)."""

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that stop a command: Ctrl-C; a launcher, Slurm or systemd; a closed terminal."""

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 130, signal.SIGHUP: 129}
"""The exit status after each signal (docs/errors.md): 130 as after Ctrl-C, 129 after a hang-up."""


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal; ``KeyboardInterrupt`` so that Optuna fails the running trial."""

    def __init__(self, signum: int) -> None:
        self.signum = signal.Signals(signum)
        super().__init__(self.signum.name)


def exit_code(stop: KeyboardInterrupt) -> int:
    """The exit status a stop ends the command with (a plain ``KeyboardInterrupt``: Ctrl-C's)."""
    return EXIT_CODES[stop.signum] if isinstance(stop, Interrupted) else 130


def interrupted_by(stop: KeyboardInterrupt) -> str:
    """"interrupted", naming the signal unless it was Ctrl-C's, for the command's last line."""
    if isinstance(stop, Interrupted) and stop.signum != signal.SIGINT:
        return f"interrupted by {stop.signum.name}"
    return "interrupted"


class StopRequest:
    """This process's stop: raised at once, or held while ``holding`` and outside the objective.

    The first signal counts; later ones are ignored so that the stop in progress (failing and
    re-queueing the running trial) is not itself interrupted. A stop swallowed where Python
    cannot raise it (a ``__del__``, a weakref callback: "Exception ignored in ...") is raised
    again in the main thread (``rearm``), so it still ends the command.
    """

    def __init__(self) -> None:
        self.signum: signal.Signals | None = None
        self.holding = False
        self.in_objective = False
        self._rearmed = False

    def request(self, signum: int) -> None:
        if self.signum is not None and not self._rearmed:
            return
        self.signum, self._rearmed = signal.Signals(signum), False
        if self.in_objective or not self.holding:
            raise Interrupted(signum)

    def deliver(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)

    def rearm(self) -> None:
        """Raise the stop again once the main thread has left the finalizer that swallowed it.

        A signal sent at once would be handled inside that finalizer again; a thread sends it
        a moment later (swallowed again, it is re-armed again).
        """
        if self.signum is not None:
            self._rearmed = True
            _thread.start_new_thread(_signal_main_later, (self.signum,))

    def clear(self) -> None:
        self.signum, self._rearmed = None, False


STOP = StopRequest()
"""This process's stop request; the signal handler calls ``STOP.request(signum)``."""

_REARM_SECONDS = 0.05
"""Long past the end of a finalizer interrupted by a signal, short to a user."""


def _signal_main_later(signum: signal.Signals) -> None:
    time.sleep(_REARM_SECONDS)
    signal.pthread_kill(threading.main_thread().ident or 0, signum)  # a real signal ends a sleep, a wait


def _on_signal(signum: int, frame: FrameType | None) -> None:
    STOP.request(signum)


def _on_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    if isinstance(unraisable.exc_value, Interrupted):
        STOP.rearm()
    else:
        sys.__unraisablehook__(unraisable)


def _install() -> dict[signal.Signals, Handler]:
    """The handler on every stop signal not ignored (``nohup`` ignores SIGHUP, a shell's
    background job SIGINT: that choice stands); the handlers it replaced."""
    previous: dict[signal.Signals, Handler] = {}
    for sig in SIGNALS:
        handler = signal.getsignal(sig)
        if handler is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, _on_signal)
    return previous


def handle_stop_signals() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into ``Interrupted`` for the rest of this process.

    Called first thing by the command (``optuna_energy.entry``), before the heavy imports, so
    that no moment is left where a signal's default action ends the process without a word.
    """
    _install()
    sys.unraisablehook = _on_unraisable


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Stop signals as ``Interrupted`` that keeps the study clean: raised at once inside the
    objective, held while Optuna creates or tells a trial, raised when the block ends. Outside
    the main thread, where Python cannot install signal handlers, nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    STOP.clear()  # a stop already raised and handled (the Python API) does not stop this loop
    previous = _install()
    STOP.holding = True
    try:
        yield
        STOP.holding = False
        STOP.deliver()  # held until the loop ended: it still ends the command
    finally:
        STOP.holding = False
        for sig, handler in previous.items():
            signal.signal(sig, handler)
