"""One worker of a shared stand-in GPU, for tests/test_gpu_share.py (run as a process).

``python -m tests.gpu_share_process ROLE LOG [ROUNDS]`` with ``OPTUNA_ENERGY_GPU_LOCKS`` set.
Each process appends ``<monotonic ns> <pid> <event>`` lines to LOG: ``step-begin`` and
``step-end`` around a training step (the turn is held in between), ``window-open`` and
``window-close`` inside a measuring window. Roles:

- ``both``: ROUNDS times: train 20 steps, then measure a window while still in training (the
  case of a trainer that measures itself);
- ``train``: train ROUNDS steps;
- ``hold``: open one window of ``HOLD_S`` seconds (long enough to be stopped in);
- ``hang``: open a window and sleep in it until killed.
"""

from __future__ import annotations

import os
import sys
import time

import torch

from optuna_energy.host import gpu_share

STEP_S = 0.002
WINDOW_S = 0.03
HOLD_S = 1.0


def log(handle: int, event: str) -> None:
    os.write(handle, f"{time.monotonic_ns()} {os.getpid()} {event}\n".encode())


def steps(handle: int, count: int) -> None:
    for _ in range(count):
        gpu_share.step()
        log(handle, "step-begin")
        time.sleep(STEP_S)  # the step's work, with the turn held
        log(handle, "step-end")


def window(handle: int, seconds: float) -> None:
    with gpu_share.alone():
        log(handle, "window-open")
        time.sleep(seconds)
        log(handle, "window-close")


def main(role: str, path: str, rounds: int) -> None:
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with gpu_share.training(torch.device("cpu")):
        if role == "both":
            for _ in range(rounds):
                steps(handle, 20)
                window(handle, WINDOW_S)
        elif role == "train":
            steps(handle, rounds)
        elif role == "hold":
            window(handle, HOLD_S)
        elif role == "hang":
            window(handle, 3600.0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
