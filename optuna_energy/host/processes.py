"""Whether a process of this machine still runs: the one test that dead workers' trials and
dead sharers of a GPU are judged by."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (another user's counts; a zombie does not).

    A killed child its parent has not reaped yet is a zombie: dead all the same, though
    ``kill(pid, 0)`` still finds it.
    """
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True
