"""The ``optuna-energy`` executable: the command, with a stop signal at any moment as one line.

Loading PyTorch and Optuna takes a second or more; a signal then would otherwise end the
process without a word (SIGTERM, SIGHUP) or print an import traceback (Ctrl-C). This module
installs the stop signals' handler (``host.interrupts``) before it imports anything heavy, and
parses the command line (``cli_parser``, light) first, so that ``--help`` and a mistyped option are
answered at once.

Standard output may be closed (``>&-``) or its reader may go away (``| head -1``): the command
still does all its work (trials, report files) with the rest of its output dropped, and exits
with its own status, with no ``BrokenPipeError``.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from optuna_energy.host.interrupts import exit_code, handle_stop_signals, interrupted_by


def main(argv: Sequence[str] | None = None) -> int:
    handle_stop_signals()
    _fill_closed_outputs()
    stdout = sys.stdout
    sys.stdout = _Droppable(stdout)
    try:
        from optuna_energy.cli_parser import build_parser

        args = build_parser().parse_args(argv)  # --help and usage errors exit here, light
        from optuna_energy.cli import run_command

        code = run_command(args)
    except KeyboardInterrupt as stop:
        print(f"\noptuna-energy: {interrupted_by(stop)} while starting; nothing was run", file=sys.stderr)
        code = exit_code(stop)
    finally:
        sys.stdout.flush()  # a reader gone meanwhile: dropped here, not at the interpreter's exit
        sys.stdout = stdout
    # Nothing is collected any more: without this, the interpreter's shutdown walked every
    # object PyTorch, Optuna and matplotlib made, for seconds after the last line was printed.
    gc.freeze()
    return code


def _fill_closed_outputs() -> None:
    """Put ``/dev/null`` on a closed standard output or error (``>&-``): the next file opened
    (a journal storage's log, a report file) would otherwise get descriptor 1 or 2 and receive
    what any library or child process writes there."""
    for descriptor, name in ((1, "stdout"), (2, "stderr")):
        try:
            os.fstat(descriptor)
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            if null != descriptor:
                os.dup2(null, descriptor)
                os.close(null)
            setattr(sys, name, open(descriptor, "w", closefd=False))  # noqa: SIM115 (lives as long as the process)


class _Droppable:
    """Standard output whose reader may go away (``| head -1``): from then on, what is written
    goes to ``/dev/null`` (the command goes on and keeps its exit status)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop()

    def _drop(self) -> None:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, self._stream.fileno())
        os.close(null)

    def __getattr__(self, name: str) -> object:  # isatty, fileno, encoding, ... of the stream
        return getattr(self._stream, name)
