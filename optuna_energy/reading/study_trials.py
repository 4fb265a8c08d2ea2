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
import logging
import math

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_energy.config import load_config
from optuna_energy.data import load_dataset
from optuna_energy.metrics import METRICS
from optuna_energy.samplers import _optuna_compat
from optuna_energy.store.budget import counts
from optuna_energy.store.record import TrialRecord, carbon_intensity, stored_config
from optuna_energy.trial.stopping import LEARNED, ChanceLevel

_logger = logging.getLogger(__name__)

ANALYSED_FIELDS = frozenset({  # the values and their spreads: the front is noise-aware
    *(field for metric in METRICS.values() for field in (metric.field, metric.spread_field) if field),
    *(metric.clock_field for metric in METRICS.values() if metric.clock_field),  # the report's units
    # payback and savings; budget.counts reads the last two
    "macs", "train_energy_j", "energy_source", "epochs_trained", "stop_reason",
    "over_budget", "failure_reason",
    "eval_images", "chance_accuracy"})  # is_feasible judges the learned constraint by them
"""Trial record fields the analysis computes with; the rest (architecture...) stays in storage."""


def is_feasible(trial: FrozenTrial, *, study_chance: ChanceLevel | None = None) -> bool:
    """All constraints (Optuna's ``set_constraint``) are satisfied, or none were set.

    The ``learned`` constraint is judged by today's rule (:class:`ChanceLevel`) from the trial's
    accuracy and the chance level recorded on it, so a study run with an older, laxer rule offers
    no network that learned nothing. A trial recorded before the chance level was (no
    ``eval_images``) is judged with ``study_chance`` (:func:`dataset_chance`) when that matches
    the threshold the trial was judged by then, else as it was stored.
    """
    violations = dict(trial.constraints)
    if LEARNED in violations:
        violations[LEARNED] = _learned_violation(trial, violations[LEARNED], study_chance)
    return all(value <= 0 for value in violations.values())


def _learned_violation(trial: FrozenTrial, stored: float, study_chance: ChanceLevel | None) -> float:
    record = TrialRecord.of(trial)
    if record.accuracy is None:
        return stored
    if record.eval_images is not None and record.chance_accuracy is not None:
        chance = ChanceLevel(accuracy=record.chance_accuracy, eval_images=record.eval_images)
    elif study_chance is not None and math.isclose(
            stored + record.accuracy, study_chance.accuracy + 1 / study_chance.eval_images, abs_tol=1e-9):
        chance = study_chance  # the old rule was chance plus one image: the same evaluation set
    else:
        return stored
    return chance.learned_threshold - record.accuracy


def feasible_in(study: optuna.Study, trial: FrozenTrial) -> bool:
    """:func:`is_feasible` for one trial of ``study``, an old one judged by its dataset's chance."""
    return is_feasible(trial, study_chance=dataset_chance(study) if recorded_before_chance(trial) else None)


def recorded_before_chance(trial: FrozenTrial) -> bool:
    """The trial carries the ``learned`` constraint but not the chance level it was judged by."""
    return LEARNED in trial.constraints and TrialRecord.of(trial).eval_images is None


def dataset_chance(study: optuna.Study) -> ChanceLevel | None:
    """The chance level of the evaluation set in the study's stored config, for trials recorded
    before each trial recorded its own: its labels are loaded (digits: well under a second).
    ``None`` when the study stores no config or its dataset cannot be loaded now."""
    stored = stored_config(study)
    if stored is None:
        return None
    try:
        config = load_config(stored)
        labels = load_dataset(config.dataset, seed=config.study.seed or 0).eval_y
    except (ValueError, OSError):  # a plug-in's dataset not registered, files gone: judge as stored
        _logger.debug("no chance level for study %s", study.study_name, exc_info=True)
        return None
    return ChanceLevel(accuracy=float(np.bincount(labels).max()) / len(labels), eval_images=len(labels))


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
        return [trial for trial in self.trials if trial.state == TrialState.COMPLETE and self.feasible(trial)]

    def feasible(self, trial: FrozenTrial) -> bool:
        """:func:`is_feasible`, an old trial judged with the study's :func:`dataset_chance`."""
        return is_feasible(trial, study_chance=self._dataset_chance if recorded_before_chance(trial) else None)

    @functools.cached_property
    def carbon_intensity(self) -> float | None:
        """Grams of CO2e per kWh the study's energy is reported at; ``None``: joules only."""
        return carbon_intensity(self.study)

    @functools.cached_property
    def _dataset_chance(self) -> ChanceLevel | None:
        return dataset_chance(self.study)

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
