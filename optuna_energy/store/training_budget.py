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

**Joules: the run ends when no first rung fits.** A trial is measured before it trains, so no
trial starts, and no claim is granted, once the joules left cannot pay the cheapest first rung
the study has seen: the fewest joules per epoch a counted trial trained at (a running minimum in
the ledger) times the first rung's epochs. A later architecture could be smaller still; measuring
trial after trial in the hope of one would spend the energy the budget is there to save.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Sequence

import optuna
from optuna.trial import FrozenTrial

from optuna_energy.store import record
from optuna_energy.store.ledger import Spent, StudyLedger, epochs_held, spent
from optuna_energy.store.record import TrialRecord

__all__ = ["Spent", "TrainingBudget", "epochs_held", "joules_per_mac_epoch", "spent"]


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

    def epochs_room(self, ledger: StudyLedger, *, before: int) -> int | None:
        """Epochs left for a trial numbered ``before``; ``None`` without an epoch budget."""
        if self.max_epochs is None:
            return None
        return self.max_epochs - ledger.epochs_held_before(before, full=self.full)

    def claim(self, trial: optuna.Trial) -> int:
        """Claim the epochs ``trial`` may train and record them; returns the claim.

        Reads the study's ledger and the trials since it was saved, not the whole study.

        Raises:
            optuna.TrialPruned: Not even the first rung fits (:meth:`out_of_joules` for the
                joules): the trial is over budget and does not count.
        """
        ledger = StudyLedger.of(trial.study)
        room = self.epochs_room(ledger, before=trial.number)
        affordable = [b for b in self.boundaries if room is None or b <= room]
        if not affordable or self.out_of_joules(ledger.spent()):
            record.write(trial, over_budget=True)
            raise optuna.TrialPruned("the study's training budget is used")
        record.write(trial, epochs_claimed=affordable[-1])
        return affordable[-1]

    def joules_left(self, used: Spent | Sequence[FrozenTrial]) -> float:
        """Training joules the study may still spend (infinite without an energy budget), after
        what it ``used``: a ledger's :meth:`~StudyLedger.spent`, or the trials to sum it from."""
        if self.max_joules is None:
            return float("inf")
        return self.max_joules - (used if isinstance(used, Spent) else spent(used)).joules

    def out_of_joules(self, used: Spent) -> bool:
        """Whether the joules left after ``used`` cannot pay a first rung: none are left, or
        fewer than the cheapest trial so far spent per epoch, times the first rung's epochs."""
        left = self.joules_left(used)
        cheapest = used.cheapest_epoch_j
        return left <= 0 or (cheapest is not None and cheapest * self.boundaries[0] > left)

    def short_of_joules(self, study: optuna.Study, joules: float) -> bool:
        """Whether ``joules`` more of training would pass the energy budget, after what the
        study's trials recorded (its ledger: the trials since it was saved, not the whole study)."""
        return self.max_joules is not None and joules > self.joules_left(StudyLedger.of(study).spent())

    def exhausted(self, ledger: StudyLedger) -> bool:
        """Whether a new trial could not afford its first rung now."""
        room = self.epochs_room(ledger, before=ledger.n_trials)
        return (room is not None and room < self.boundaries[0]) or self.out_of_joules(ledger.spent())

    def describe(self, ledger: StudyLedger) -> dict[str, str]:
        """What is spent of each limit, for the progress bar (``{"epochs": "12/300"}``)."""
        used = ledger.spent()
        shown = {}
        if self.max_epochs is not None:
            shown["epochs"] = f"{used.epochs}/{self.max_epochs}"
        if self.max_joules is not None:
            shown["train J"] = f"{used.joules:.3g}/{self.max_joules:.3g}"
        return shown
