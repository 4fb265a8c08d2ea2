"""The ``optuna-energy`` executable: the command, with a stop signal at any moment as one line.

Loading PyTorch and Optuna takes a second or more; a signal then would otherwise end the
process without a word (SIGTERM, SIGHUP) or print an import traceback (Ctrl-C). This module
installs the stop signals' handler (``host.interrupts``) before it imports anything heavy, and
parses the command line (``cli_parser``, light) first, so that ``--help`` and a mistyped option are
answered at once.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

from optuna_energy.host.interrupts import exit_code, handle_stop_signals, interrupted_by


def main(argv: Sequence[str] | None = None) -> int:
    handle_stop_signals()
    try:
        from optuna_energy.cli_parser import build_parser

        args = build_parser().parse_args(argv)  # --help and usage errors exit here, light
        from optuna_energy.cli import run_command

        code = run_command(args)
    except KeyboardInterrupt as stop:
        print(f"\noptuna-energy: {interrupted_by(stop)} while starting; nothing was run", file=sys.stderr)
        code = exit_code(stop)
    # Nothing is collected any more: without this, the interpreter's shutdown walked every
    # object PyTorch, Optuna and matplotlib made, for seconds after the last line was printed.
    gc.freeze()
    return code
