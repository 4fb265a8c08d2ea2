"""Synthetic studies as large as a real search, made of real samples of the digits space.

A few hundred architectures are sampled from the search space as the built-in objective samples
them (parameters, architecture record, MACs and parameter counts); each loaded trial copies one
of them with objective values drawn around it: the four objectives of the paper and the
``learned`` constraint. The trials are written straight into Optuna's tables in bulk, thousands
per second, so a 100,000-trial study loads in a minute instead of hours through ``tell``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import distribution_to_json
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

from optuna_energy.compose import record_architecture, suggest_training
from optuna_energy.config import load_config
from optuna_energy.model.space import SpaceSection, sample_architecture
from optuna_energy.run.loop import optimize_within_budget
from optuna_energy.run.progress import TrialProgress
from optuna_energy.samplers._sampler import POPULATION_ATTR
from optuna_energy.samplers._selection import ElitePopulation
from optuna_energy.store import record
from optuna_energy.store.ledger import StudyLedger
from optuna_energy.store.trial_feed import FeedPosition
from optuna_energy.study import create_or_load_study

OBJECTIVES = ("accuracy", "inference_time", "params", "energy")
DIRECTIONS = ("maximize", "minimize", "minimize", "minimize")
_DIGITS_SHAPE = (1, 8, 8)
_CHANCE = 0.1
_BATCH = 2000


def real_samples(count: int, *, seed: int = 0) -> list[FrozenTrial]:
    """``count`` completed trials of the digits space (:func:`sampled_objective`)."""
    study = optuna.create_study(directions=list(DIRECTIONS), sampler=optuna.samplers.RandomSampler(seed))
    study.optimize(sampled_objective(seed), n_trials=count)
    return study.trials


def sampled_objective(seed: int = 0) -> Callable[[optuna.Trial], list[float]]:
    """An objective that samples the digits space as the built-in one does (parameters,
    architecture record, MACs and parameter counts) and, instead of training, draws the
    accuracy, time and energy; ``learned`` is violated below twice chance accuracy."""
    rng = np.random.default_rng(seed)

    def objective(trial: optuna.Trial) -> list[float]:
        suggest_training(trial)
        costs = record_architecture(trial, sample_architecture(trial, SpaceSection(), _DIGITS_SHAPE),
                                    _DIGITS_SHAPE, 10)
        accuracy = float(rng.uniform(_CHANCE, 0.99))
        seconds = float(costs.macs * 1e-10 * rng.uniform(0.5, 2.0) + 1e-5)
        joules = float(seconds * rng.uniform(20.0, 80.0))
        learned = 2 * _CHANCE - accuracy
        trial.set_constraint("learned", learned)
        record.write(trial, accuracy=accuracy, inference_time_s=seconds, energy_per_inference_j=joules,
                     epochs_trained=1, constraints={"learned": learned}, feasible=learned <= 0)
        return [accuracy, seconds, float(costs.params), joules]

    return objective


def bulk_load(storage: RDBStorage, study_name: str, *, n_trials: int,
              samples: Sequence[FrozenTrial], seed: int = 0,
              population_size: int | None = None) -> optuna.Study:
    """A new study of ``n_trials`` completed trials, each a copy of one of ``samples`` with its
    objective values scaled by a random factor (accuracy kept below 1).

    With ``population_size``, also what workers would have saved on the study while it grew:
    the budget's ledger and the evolution sampler's population of that size, computed from the
    loaded values, so that a worker joining it need not rebuild them from every trial.
    """
    study = optuna.create_study(storage=storage, study_name=study_name, directions=list(DIRECTIONS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(OBJECTIVES))
    rng = np.random.default_rng(seed)
    start = datetime.datetime(2026, 1, 1)
    summaries: list[FrozenTrial] = []
    tables = {name: model.__table__ for name, model in (
        ("trials", models.TrialModel), ("params", models.TrialParamModel),
        ("values", models.TrialValueModel), ("user", models.TrialUserAttributeModel),
        ("system", models.TrialSystemAttributeModel))}
    with storage.engine.begin() as connection:
        for first in range(0, n_trials, _BATCH):
            numbers = range(first, min(first + _BATCH, n_trials))
            connection.execute(tables["trials"].insert(), [
                {"number": n, "study_id": study._study_id, "state": TrialState.COMPLETE,
                 "datetime_start": start + datetime.timedelta(seconds=n),
                 "datetime_complete": start + datetime.timedelta(seconds=n + 1)} for n in numbers])
            ids = dict(connection.execute(
                tables["trials"].select().with_only_columns(
                    tables["trials"].c.number, tables["trials"].c.trial_id).where(
                    tables["trials"].c.study_id == study._study_id,
                    tables["trials"].c.number >= numbers.start)).all())
            rows: dict[str, list[dict[str, Any]]] = {"params": [], "values": [], "user": [], "system": []}
            for number in numbers:
                values = _copy_rows(rows, ids[number], samples[number % len(samples)], rng)
                summaries.append(FrozenTrial(
                    number=number, state=TrialState.COMPLETE, value=None, values=values,
                    datetime_start=start, datetime_complete=start, params={}, distributions={},
                    user_attrs={"epochs_trained": 1}, intermediate_values={}, trial_id=ids[number],
                    system_attrs={"constraints:learned": 2 * _CHANCE - values[0]}))
            for name, batch in rows.items():
                connection.execute(tables[name].insert(), batch)
    if population_size is not None:
        _save_state(study, summaries, population_size)
    return study


def _save_state(study: optuna.Study, summaries: list[FrozenTrial], population_size: int) -> None:
    """The ledger and the population that workers keep on a study, from trial summaries
    (values, constraint, epochs) of every trial: what the incremental path would have saved."""
    position = FeedPosition(after_id=max(t._trial_id for t in summaries))
    ledger = StudyLedger()
    ledger.take(summaries, directions=study.directions, position=position)
    ledger.save(study)
    population = ElitePopulation(population_size, study.directions)
    population.update(summaries)
    study._storage.set_study_system_attr(study._study_id, f"{POPULATION_ATTR}:{population_size}:hypervolume", {
        "members": [t._trial_id for t in population.members], "position": position.to_json()})


def _copy_rows(rows: dict[str, list[dict[str, Any]]], trial_id: int, sample: FrozenTrial,
               rng: np.random.Generator) -> list[float]:
    """The database rows of a copy of ``sample`` with drawn values; the values."""
    factor = float(rng.uniform(0.8, 1.25))
    values = [min(sample.values[0] * factor, 0.999), *(v * factor for v in sample.values[1:])]
    for name, value in sample.params.items():
        distribution = sample.distributions[name]
        rows["params"].append({"trial_id": trial_id, "param_name": name,
                               "param_value": distribution.to_internal_repr(value),
                               "distribution_json": distribution_to_json(distribution)})
    for objective, value in enumerate(values):
        rows["values"].append({"trial_id": trial_id, "objective": objective, "value": value,
                               "value_type": models.TrialValueModel.TrialValueType.FINITE})
    learned = 2 * _CHANCE - values[0]
    attrs = {**sample.user_attrs, "accuracy": values[0], "constraints": {"learned": learned},
             "feasible": learned <= 0, "worker": "bulk:0"}
    for key, value in attrs.items():
        rows["user"].append({"trial_id": trial_id, "key": key, "value_json": json.dumps(value)})
    rows["system"].append({"trial_id": trial_id, "key": "constraints:learned",
                           "value_json": json.dumps(learned)})
    return values


@dataclasses.dataclass
class Worker:
    """A worker that joined a study as ``run`` does (start-up reads, the default sampler, which
    from trial 1,000 on is the evolution sampler with a population of 16, exact budget,
    progress, distinct streams)."""

    study: optuna.Study
    ledger: StudyLedger
    config: Any

    @classmethod
    def join(cls, url: str, study_name: str) -> Worker:
        config = load_config({"study": {"name": study_name, "storage": url, "seed": 0,
                                        "objectives": list(OBJECTIVES)},
                              "evolution": {"population_size": 16}})
        study = create_or_load_study(config)
        return cls(study, StudyLedger.of(study), config)

    def run(self, n_trials: int, objective: Callable[[optuna.Trial], list[float]] | None = None) -> None:
        """Trials until the study has ``n_trials``, of an objective that samples the real space
        and draws its measurements (by default)."""
        with TrialProgress(self.study, total=n_trials, enabled=False, ledger=self.ledger) as progress:
            optimize_within_budget(self.study, objective or sampled_objective(), n_trials=n_trials,
                                   ledger=self.ledger,
                                   callbacks=[progress])
