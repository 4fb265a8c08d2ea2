"""An exact trial budget for a study shared by any number of processes.

A study's ``n_trials`` counts the trials of the whole study, not of one process. Checking the
count before ``ask`` is not enough: two workers can both see 23 of 24 and both start a trial.
So every trial is ranked after it is created: a trial whose rank among the counted trials
(ordered by trial number) exceeds the budget ends at once as PRUNED with ``over_budget`` on its
record and is not counted. The set of counted trials before a given trial only ever shrinks (a
trial whose worker died is failed and re-queued), so a rank checked once stays within the budget
and the study never runs more counted trials than its budget.

The loop that spends the budget is :mod:`optuna_energy.run.loop`.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_energy.host.interrupts import STOP
from optuna_energy.samplers._optuna_compat import trial_id
from optuna_energy.store import record
from optuna_energy.store.record import TrialRecord


def counts(trial: FrozenTrial) -> bool:
    """Whether a trial uses up budget: finished, deliberately failed, running or queued.

    A trial failed by the heartbeat (its worker died) does not count: it is retried.
    """
    stored = TrialRecord.of(trial)
    if stored.over_budget:
        return False
    if trial.state == TrialState.FAIL:
        return stored.failure_reason is not None
    return True


@dataclasses.dataclass(frozen=True)
class Tally:
    """Budget-counted trials of a study by state: finished, running, and waiting in the queue."""

    finished: int
    running: int
    waiting: int

    @property
    def counted(self) -> int:
        return self.finished + self.running + self.waiting


def tally(study: optuna.Study) -> Tally:
    trials = [trial for trial in study.get_trials(deepcopy=False) if counts(trial)]
    running = sum(trial.state == TrialState.RUNNING for trial in trials)
    waiting = sum(trial.state == TrialState.WAITING for trial in trials)
    return Tally(finished=len(trials) - running - waiting, running=running, waiting=waiting)


class WithinBudget:
    """Wraps an objective: a trial ranked past the budget is pruned before it runs."""

    def __init__(self, objective: Callable[[optuna.Trial], Sequence[float]], n_trials: int) -> None:
        self.objective = objective
        self.n_trials = n_trials
        self.trial_id: int | None = None  # the trial in flight, to clean up after an outage

    def __call__(self, trial: optuna.Trial) -> Sequence[float]:
        self.trial_id = trial_id(trial)  # type: ignore[arg-type]  # Trial and FrozenTrial both carry it
        STOP.in_objective = True
        try:
            STOP.deliver()
            earlier = sum(1 for other in trial.study.get_trials(deepcopy=False)
                          if other.number < trial.number and counts(other))
            if earlier >= self.n_trials:
                record.write(trial, over_budget=True)
                raise optuna.TrialPruned(f"the study's budget of {self.n_trials} trials is used")
            record.write(trial, worker=f"{socket.gethostname()}:{os.getpid()}")
            return self.objective(trial)
        finally:
            STOP.in_objective = False
