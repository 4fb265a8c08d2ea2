"""Several workers on one GPU: training overlaps, every measuring window runs alone.

``optuna-energy launch --per-gpu N`` gives the workers of one GPU a lock folder in
:data:`LOCKS_ENV`; without it every function here does nothing. Two ``flock`` locks in that
folder, which the kernel drops when their process dies, order the GPU's work:

- ``turn``: a trainer holds it *shared* while it trains; a measuring window holds it *exclusive*.
- ``gate``: a worker that wants to measure takes it exclusive first, announcing the window. Each
  trainer looks at the gate at every training step (without waiting); when it is taken, the
  trainer finishes its queued GPU work, lets go of its turn, waits for the gate to open, and
  takes its turn again. The measurer gets the turn once the last trainer has stepped aside.

A second measurer waits at the gate, so windows follow one another. A worker stopped in its
window (SIGSTOP, a suspended Slurm job) keeps both locks, so the others wait until it continues:
breaking its lock would put their training inside its window. A trainer that measures
itself lets go of its own turn first. Training steps thus never run inside another worker's
window; evaluation between rungs runs under the turn too.

The chip's counter sees every trainer at once, so a shared trainer is charged a share of its
training windows' energy: over each window, the joules times the mean of ``1 / trainers
training`` over the window's seconds (0 while it waits for another worker's window). The
trainers training are those listed in the folder's ``active`` file whose process is alive.

Your own training loop joins in with three calls, public as ``optuna_energy.gpu_share`` (each
does nothing outside ``launch --per-gpu``, so the same objective runs anywhere)::

    with optuna_energy.gpu_share.training(device) as turn:   # train (and evaluate) in the turn
        mark = turn.mark()
        for inputs, targets in loader:
            optuna_energy.gpu_share.step()                     # at every step: let windows in
            ...
        share = turn.share_since(mark)  # of the chip's training joules, this trial's share
    optuna_energy.EnergyMonitor(...).measure_inference(...)   # runs alone by itself

A measuring window of your own (anything another worker's training must stay out of) runs
inside ``with optuna_energy.gpu_share.alone():``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from optuna_energy.host.devices import synchronize
from optuna_energy.host.processes import process_alive

LOCKS_ENV = "OPTUNA_ENERGY_GPU_LOCKS"
"""The lock folder of the GPU this worker shares (set by ``launch``); unset: the GPU is its own."""

SAMPLE_S = 0.05
"""How often a trainer re-counts the trainers: often enough for its share, rarely enough to be free."""

_clock = time.monotonic


class _Folder:
    """One process's open lock files of one GPU's folder (one descriptor per lock: ``flock``
    locks belong to the open file, so a second descriptor would fight the first)."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.gate, self.turn, self.ledger = (os.open(path / name, os.O_RDWR | os.O_CREAT, 0o600)
                                             for name in ("gate", "turn", "ledger"))

    def trainers(self) -> set[int]:
        """The pids listed as training whose process is alive (a killed one stays listed)."""
        try:
            listed = {int(line) for line in (self.path / "active").read_text().split()}
        except FileNotFoundError:
            return set()
        return {pid for pid in listed if process_alive(pid)}

    def list_trainer(self, *, training: bool) -> None:
        fcntl.flock(self.ledger, fcntl.LOCK_EX)
        try:
            pids = self.trainers() - {os.getpid()} | ({os.getpid()} if training else set())
            scratch = self.path / f"active.{os.getpid()}"
            scratch.write_text("".join(f"{pid}\n" for pid in sorted(pids)))
            os.replace(scratch, self.path / "active")  # readers never see half a list
        finally:
            fcntl.flock(self.ledger, fcntl.LOCK_UN)


_folder: _Folder | None = None


def _shared_folder() -> _Folder | None:
    global _folder
    path = os.environ.get(LOCKS_ENV)
    if not path:
        return None
    if _folder is None or _folder.path != Path(path):
        _folder = _Folder(Path(path))
    return _folder


class TrainingTurn:
    """This process's turn at training on its GPU, and its share of the chip while it trains."""

    def __init__(self, folder: _Folder | None, device: torch.device) -> None:
        self.folder = folder
        self.device = device
        self.holding = False
        self.weighted = 0.0
        """Seconds trained, each divided by the trainers training then."""
        self.since = 0.0
        self.sampled = 0.0
        self.sharers = 1

    @property
    def shared(self) -> bool:
        """Whether the GPU is shared (trainers take turns and are charged shares)."""
        return self.folder is not None

    def take(self) -> None:
        """Wait until no window is open or announced, then train."""
        folder = self.folder
        assert folder is not None
        fcntl.flock(folder.gate, fcntl.LOCK_SH)
        fcntl.flock(folder.turn, fcntl.LOCK_SH)
        fcntl.flock(folder.gate, fcntl.LOCK_UN)  # held, the gate would keep measurers out
        folder.list_trainer(training=True)
        self.holding = True
        self.since = self.sampled = _clock()
        self.sharers = max(1, len(folder.trainers()))

    def give(self) -> None:
        """Stop training: the GPU's queued work done, the turn free for a window."""
        folder = self.folder
        assert folder is not None and self.holding
        synchronize(self.device)  # kernels still queued would run inside the window
        self._count(_clock())
        self.holding = False
        folder.list_trainer(training=False)
        fcntl.flock(folder.turn, fcntl.LOCK_UN)

    def step(self) -> None:
        """At a training step: step aside while a worker of this GPU wants a window."""
        folder = self.folder
        assert folder is not None
        try:
            fcntl.flock(folder.gate, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            self.give()
            self.take()
            return
        fcntl.flock(folder.gate, fcntl.LOCK_UN)
        now = _clock()
        if now - self.sampled >= SAMPLE_S:
            self._count(now)
            self.sampled = now
            self.sharers = max(1, len(folder.trainers()))

    def _count(self, now: float) -> None:
        if self.holding:
            self.weighted += (now - self.since) / self.sharers
            self.since = now

    def mark(self) -> tuple[float, float]:
        """Where a training window starts, for :meth:`share_since`."""
        now = _clock()
        self._count(now)
        return now, self.weighted

    def share_since(self, mark: tuple[float, float]) -> float:
        """The share of the chip's energy since ``mark`` that this trainer is charged: 1 when
        the GPU is its own, else the mean of ``1 / trainers`` over the time (0 while paused)."""
        if self.folder is None:
            return 1.0
        now = _clock()
        self._count(now)
        started, weighted = mark
        return (self.weighted - weighted) / (now - started) if now > started else 1.0


_training: TrainingTurn | None = None


@contextlib.contextmanager
def training(device: torch.device) -> Iterator[TrainingTurn]:
    """Hold this process's turn at training while the block runs (steps call :func:`step`)."""
    global _training
    turn = TrainingTurn(_shared_folder(), device)
    if not turn.shared:
        yield turn
        return
    turn.take()
    _training = turn
    try:
        yield turn
    finally:
        _training = None
        if turn.holding:
            turn.give()


def step() -> None:
    """Called at every training step: on a shared GPU, pause while a window is announced."""
    if _training is not None:
        _training.step()


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Run the block (a measuring window) with no other worker of this GPU training in it."""
    folder = _shared_folder()
    if folder is None:
        yield
        return
    mine = _training if _training is not None and _training.holding else None
    if mine is not None:
        mine.give()  # held, its own turn would keep the window waiting for ever
    try:
        fcntl.flock(folder.gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(folder.turn, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(folder.turn, fcntl.LOCK_UN)
        finally:
            fcntl.flock(folder.gate, fcntl.LOCK_UN)
    finally:
        if mine is not None:
            mine.take()
