"""How wide the package's printed lines may be: tables, warnings and the progress bar fit in
``MAX_COLUMNS``, or in the terminal when it is narrower."""

from __future__ import annotations

import shutil

MAX_COLUMNS = 100
"""The widest line the package prints: readable in a wide terminal, a log file and an e-mail."""


def columns() -> int:
    """The width to fit lines to: the terminal's (``$COLUMNS``, else 80 off a terminal), at most
    ``MAX_COLUMNS``."""
    return min(shutil.get_terminal_size().columns, MAX_COLUMNS)
