"""A budget in what the search really costs: training epochs and training joules.

**Epochs, exact across workers.** Like the trial budget (:mod:`optuna_energy.store.budget`), epochs
are shared out by trial number, with no lock. When a trial starts it claims the epochs it may
spend: as many rungs as fit in what the budget leaves after every budget-counted trial numbered
before it. A finished trial holds the epochs it trained, a running or queued one its claim,
and one that has not claimed yet the most any trial can claim (full training). A trial's
holding only ever shrinks (a stopped trial releases the rest of its claim; one whose worker
died stops counting), so a claim checked once stays within the budget: the study never trains
more epochs than ``max_train_epochs``. A trial whose claim is less than full training stops at
its last affordable rung; one that cannot afford the first rung ends as over budget and does
not count, and a later trial takes the room the others release.

**Joules, checked before each rung.** Energy is only known once spent, so a trial goes on to
its next rung only if what the study has recorded (finished trials, and running ones after each
of their rungs) plus this rung's projection fits in ``max_train_energy``. The projection is the
trial's own joules per epoch so far; before its first epoch, the study's measured joules per
epoch and MAC (:func:`joules_per_mac_epoch`, from the study's own meter) times its MACs, and the
analytical estimate only while no trial has trained. Unlike epochs, workers that pass the check at
the same moment can each overshoot by the rung they are training.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_energy.store import record
from optuna_energy.store.budget import counts
from optuna_energy.store.record import TrialRecord


def epochs_held(trial: FrozenTrial, *, full: int) -> int:
    """Epochs of the budget a counted trial holds (see the module docstring)."""
    stored = TrialRecord.of(trial)
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        if stored.epochs_trained is not None:
            return stored.epochs_trained
        return full if trial.state == TrialState.COMPLETE else 0  # written before this budget existed
    # Running, queued, or failed part-way through a rung: what it may have trained.
    return stored.epochs_claimed if stored.epochs_claimed is not None else full


@dataclasses.dataclass(frozen=True)
class Spent:
    """What the study's counted trials trained so far (running ones: rungs finished)."""

    epochs: int
    joules: float


def spent(trials: Sequence[FrozenTrial]) -> Spent:
    counted = [TrialRecord.of(trial) for trial in trials if counts(trial)]
    return Spent(epochs=sum(r.epochs_trained or 0 for r in counted),
                 joules=sum(r.train_energy_j or 0.0 for r in counted))


def joules_per_mac_epoch(records: Iterable[TrialRecord]) -> float | None:
    """The median training joules per epoch and MAC of the trials that trained (``None``: none
    did): what the study's meter says a MAC costs, for trials that have not trained yet."""
    rates = [r.train_energy_j / (r.epochs_trained * r.macs) for r in records
             if r.epochs_trained and r.macs and r.train_energy_j is not None]
    return statistics.median(rates) if rates else None


@dataclasses.dataclass(frozen=True)
class TrainingBudget:
    """A study's limits on training, with the rung boundaries a claim is rounded down to."""

    max_epochs: int | None
    max_joules: float | None
    boundaries: tuple[int, ...]
    """Epoch counts where training pauses (rungs, then full training), ascending."""

    @property
    def full(self) -> int:
        return self.boundaries[-1]

    def epochs_room(self, trials: Sequence[FrozenTrial], *, before: int) -> int | None:
        """Epochs left for a trial numbered ``before``; ``None`` without an epoch budget."""
        if self.max_epochs is None:
            return None
        held = sum(epochs_held(t, full=self.full) for t in trials if t.number < before and counts(t))
        return self.max_epochs - held

    def claim(self, trial: optuna.Trial) -> int:
        """Claim the epochs ``trial`` may train and record them; returns the claim.

        Raises:
            optuna.TrialPruned: Not even the first rung fits: the trial is over budget and
                does not count.
        """
        trials = trial.study.get_trials(deepcopy=False)
        room = self.epochs_room(trials, before=trial.number)
        affordable = [b for b in self.boundaries if room is None or b <= room]
        if not affordable or self.joules_left(trials) <= 0:
            record.write(trial, over_budget=True)
            raise optuna.TrialPruned("the study's training budget is used")
        record.write(trial, epochs_claimed=affordable[-1])
        return affordable[-1]

    def joules_left(self, trials: Sequence[FrozenTrial]) -> float:
        """Training joules the study may still spend (infinite without an energy budget)."""
        if self.max_joules is None:
            return float("inf")
        return self.max_joules - spent(trials).joules

    def exhausted(self, trials: Sequence[FrozenTrial]) -> bool:
        """Whether a new trial could not afford its first rung now."""
        room = self.epochs_room(trials, before=max((t.number for t in trials), default=-1) + 1)
        return (room is not None and room < self.boundaries[0]) or self.joules_left(trials) <= 0

    def describe(self, trials: Sequence[FrozenTrial]) -> dict[str, str]:
        """What is spent of each limit, for the progress bar (``{"epochs": "12/300"}``)."""
        used = spent(trials)
        shown = {}
        if self.max_epochs is not None:
            shown["epochs"] = f"{used.epochs}/{self.max_epochs}"
        if self.max_joules is not None:
            shown["train J"] = f"{used.joules:.3g}/{self.max_joules:.3g}"
        return shown
