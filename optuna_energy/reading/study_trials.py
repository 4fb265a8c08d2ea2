"""A study's trials as the analysis reads them: once per report, note or CLI call, and light.

Reading a study through ``get_trials`` builds every trial's parameters and distributions: about
1 ms and 200 KB per trial in an RDB storage, minutes and gigabytes at 100,000 trials. The
analysis needs none of that: it reads each trial's state, values, constraints and a few fields of
its record. :class:`StudyTrials` holds those (light ``FrozenTrial`` objects, read straight from
the storage's tables) and hands out the full trial, parameters included, only for the few trials
a result names (:meth:`StudyTrials.full`). :meth:`StudyTrials.refresh` reads only what changed
since the last read: trials added since, and those that were still running or waiting.
"""

from __future__ import annotations

import functools

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_energy.metrics import METRICS
from optuna_energy.samplers import _optuna_compat
from optuna_energy.store.budget import counts
from optuna_energy.store.record import TrialRecord

ANALYSED_FIELDS = frozenset({
    *(metric.field for metric in METRICS.values()),
    # payback and savings; budget.counts reads the last two
    "macs", "train_energy_j", "energy_source", "epochs_trained", "stop_reason",
    "over_budget", "failure_reason"})
"""Trial record fields the analysis computes with; the rest (architecture...) stays in storage."""


def is_feasible(trial: FrozenTrial) -> bool:
    """All constraints (Optuna's ``set_constraint``) are satisfied, or none were set."""
    return all(value <= 0 for value in trial.constraints.values())


class StudyTrials:
    """Every trial of a study, light, by number; see the module docstring."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self._by_id: dict[int, FrozenTrial] = {}
        self._records: dict[int, TrialRecord] = {}
        self._counted: dict[int, bool] = {}
        self._light = True
        self.refresh()

    def refresh(self) -> None:
        """Read the trials added since the last read and those that were not finished then."""
        unfinished = [_optuna_compat.trial_id(trial) for trial in self._by_id.values()
                      if not trial.state.is_finished()]
        newest = max(self._by_id, default=0)
        read = _optuna_compat.read_trials_without_params(
            self.study, user_attrs=ANALYSED_FIELDS, since_trial_id=newest, trial_ids=unfinished)
        if read is None:  # not an RDB storage: its trials are in memory already
            self._light = False
            read = self.study.get_trials(deepcopy=False)
        for trial in read:
            self._by_id[_optuna_compat.trial_id(trial)] = trial
            self._records.pop(trial.number, None)
            self._counted.pop(trial.number, None)
        self.__dict__.pop("trials", None)
        self.__dict__.pop("usable", None)

    @functools.cached_property
    def trials(self) -> list[FrozenTrial]:
        """Every trial, by number."""
        return sorted(self._by_id.values(), key=lambda trial: trial.number)

    @functools.cached_property
    def usable(self) -> list[FrozenTrial]:
        """Completed, feasible trials by number: the ones a user could deploy."""
        return [trial for trial in self.trials if trial.state == TrialState.COMPLETE and is_feasible(trial)]

    def record(self, trial: FrozenTrial) -> TrialRecord:
        """The trial's record (its analysed fields), built once per read of the trial."""
        found = self._records.get(trial.number)
        if found is None:
            found = self._records[trial.number] = TrialRecord.of(trial)
        return found

    def counts(self, trial: FrozenTrial) -> bool:
        """Whether the trial uses up the study's budget (``budget.counts``), decided once per
        read of the trial."""
        found = self._counted.get(trial.number)
        if found is None:
            found = self._counted[trial.number] = counts(trial)
        return found

    def in_states(self, *states: TrialState) -> list[FrozenTrial]:
        """Trials in ``states``, by number."""
        return [trial for trial in self.trials if trial.state in states]

    def full(self, trial: FrozenTrial) -> FrozenTrial:
        """The trial as ``study.get_trials`` gives it: parameters and every attribute."""
        if not self._light:
            return trial
        return _optuna_compat.storage_of(self.study).get_trial(_optuna_compat.trial_id(trial))


def read_study(source: optuna.Study | StudyTrials) -> StudyTrials:
    """``source`` read for analysis, or ``source`` itself when it was read already: a function
    that reads a study hands its read on to the functions it calls, so each call reads once."""
    return source if isinstance(source, StudyTrials) else StudyTrials(source)
