"""The ``optuna-energy`` executable: the command, with a Ctrl-C during start-up as one line.

Loading PyTorch and Optuna takes a second or more; an interrupt then would otherwise print an
import traceback. This module imports nothing heavy before it can catch one.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from optuna_energy.cli import main as command
    except KeyboardInterrupt:
        print("\noptuna-energy: interrupted while starting; nothing was run", file=sys.stderr)
        return 130
    return command(argv)
