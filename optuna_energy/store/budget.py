"""An exact trial budget for a study shared by any number of processes.

A study's ``n_trials`` counts the trials of the whole study, not of one process. Checking the
count before ``ask`` is not enough: two workers can both see 23 of 24 and both start a trial.
So every trial is ranked after it is created: a trial whose rank among the counted trials
(ordered by trial number) exceeds the budget ends at once as PRUNED with ``over_budget`` on its
record and is not counted. The set of counted trials before a given trial only ever shrinks (a
trial whose worker died is failed and re-queued), so a rank checked once stays within the budget
and the study never runs more counted trials than its budget.

The rank costs nothing to check while a trial's number is below the budget (trial numbers run
from 0, so fewer trials precede it); past that, the study's :class:`StudyLedger` counts the
trials that do not count (over budget, or failed with a dead worker), reading only the trials
since its last look.

The loop that spends the budget is :mod:`optuna_energy.run.loop`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence

import optuna

from optuna_energy.host.interrupts import STOP
from optuna_energy.samplers._optuna_compat import trial_id
from optuna_energy.store import record
from optuna_energy.store.ledger import StudyLedger, Tally, counts

__all__ = ["Tally", "WithinBudget", "counts", "tally"]


def tally(study: optuna.Study) -> Tally:
    """The study's budget-counted trials by state (from its saved ledger and the trials since;
    it writes nothing, so a command that only reads a study may ask)."""
    return StudyLedger.of(study, save_rebuilt=False).tally()


class WithinBudget:
    """Wraps an objective: a trial ranked past the budget is pruned before it runs."""

    def __init__(self, objective: Callable[[optuna.Trial], Sequence[float]], n_trials: int, *,
                 ledger: StudyLedger | None = None) -> None:
        self.objective = objective
        self.n_trials = n_trials
        self.ledger = ledger or StudyLedger()
        self.trial_id: int | None = None  # the trial in flight, to clean up after an outage

    def __call__(self, trial: optuna.Trial) -> Sequence[float]:
        self.trial_id = trial_id(trial)  # type: ignore[arg-type]  # Trial and FrozenTrial both carry it
        STOP.in_objective = True
        try:
            STOP.deliver()
            if trial.number >= self.n_trials and self._counted_before(trial) >= self.n_trials:
                record.write(trial, over_budget=True)
                raise optuna.TrialPruned(f"the study's budget of {self.n_trials} trials is used")
            record.write(trial, worker=f"{socket.gethostname()}:{os.getpid()}")
            return self.objective(trial)
        finally:
            STOP.in_objective = False

    def _counted_before(self, trial: optuna.Trial) -> int:
        self.ledger.refresh(trial.study)
        return self.ledger.counted_before(trial.number)
