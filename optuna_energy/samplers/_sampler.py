"""``EvolutionSampler``: MENNDL's asynchronous genetic algorithm as an Optuna sampler."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from optuna_energy.samplers._genome import Genome
from optuna_energy.samplers._selection import ElitePopulation
from optuna_energy.samplers._settings import EvolutionSettings
from optuna_energy.samplers._variation import VariationRates, crossover, fit_to, mutate

PARENTS_ATTR = "parents"
"""User attribute holding the trial numbers of a trial's parents (empty for random or seeded)."""

_DEFAULTS = EvolutionSettings()


class EvolutionSampler(BaseSampler):
    """A steady-state, multi-objective genetic algorithm over the whole conditional genome.

    Optuna's NSGA-II evolves only the parameters every trial has; in a conditional space (layer
    types and their hyperparameters) the rest is drawn at random. This sampler evolves all of
    it. Each new trial is a child of two parents picked by tournament from an elite population
    (feasible first, then non-domination rank, then the hypervolume each trial adds),
    which is updated from the trials completed in the storage when the trial is asked for. So
    any number of workers sharing one storage can ask whenever they are free: there is no
    generation barrier.

    The child is built by crossover of whole blocks (a layer slot's on/off, type and
    hyperparameters; the training hyperparameters) and mutated by switching slots, changing
    layer types and perturbing hyperparameters. It is then handed to the define-by-run
    objective one parameter at a time, clipped to the distribution the objective asks for;
    parameters the child lacks are drawn at random. The parents' trial numbers are stored on
    every trial as the user attribute ``parents``.

    The first ``population_size`` trials are random, or whatever was enqueued with
    ``study.enqueue_trial``; until two trials have completed, children are random too.

    Args:
        population_size: Size of the elite population parents are drawn from.
        tournament_size: Members compared per parent pick.
        selection: What ranks trials within a front, for survival and tournaments:
            ``"hypervolume"`` (the hypervolume each adds) or ``"crowding"`` (NSGA-II's).
        crossover_rate: Probability that a child mixes two parents rather than copying one.
        slot_toggle_rate: Per slot, probability of switching it on or off.
        type_change_rate: Per active layer, probability of changing its type.
        gene_mutation_rate: Per hyperparameter, probability of perturbing it.
        perturbation_scale: Standard deviation of a numeric perturbation, as a fraction of the
            distribution's range (log range for log distributions).
        seed: Seed for reproducible runs in one process.

    It can be pickled or deep-copied, to resume a seeded study as with Optuna's samplers: the
    copy carries the random state, the populations and the pending children.

    Raises:
        ValueError: A setting outside its range, naming it and what is allowed: a rate
            outside ``[0, 1]``, a population under 2, a tournament larger than the population,
            an unknown selection.

    Example:
        >>> import optuna_energy
        >>> from optuna_energy.samplers import EvolutionSampler
        >>> study = optuna_energy.run_study("studies/digits.toml", sampler="evolution", n_trials=40)
        >>> study.trials[-1].user_attrs["parents"]
        [12, 7]
    """

    def __init__(self, *, population_size: int = _DEFAULTS.population_size,
                 tournament_size: int = _DEFAULTS.tournament_size,
                 selection: str = _DEFAULTS.selection,
                 crossover_rate: float = _DEFAULTS.crossover_rate,
                 slot_toggle_rate: float = _DEFAULTS.slot_toggle_rate,
                 type_change_rate: float = _DEFAULTS.type_change_rate,
                 gene_mutation_rate: float = _DEFAULTS.gene_mutation_rate,
                 perturbation_scale: float = _DEFAULTS.perturbation_scale,
                 seed: int | None = None) -> None:
        self._settings = EvolutionSettings(
            population_size=population_size, tournament_size=tournament_size,
            selection=selection, crossover_rate=crossover_rate,
            slot_toggle_rate=slot_toggle_rate, type_change_rate=type_change_rate,
            gene_mutation_rate=gene_mutation_rate, perturbation_scale=perturbation_scale)
        self._population_size = self._settings.population_size
        self._tournament_size = self._settings.tournament_size
        self._selection = self._settings.selection
        self._rates = VariationRates(**{field.name: getattr(self._settings, field.name)
                                        for field in dataclasses.fields(VariationRates)})
        self._rng = np.random.default_rng(seed)
        self._random_sampler = RandomSampler(seed=seed)
        self._populations: dict[int, ElitePopulation] = {}
        self._children: dict[int, Genome] = {}
        self._lock = threading.Lock()

    @property
    def settings(self) -> EvolutionSettings:
        """The population and variation settings this sampler was made with."""
        return self._settings

    def __getstate__(self) -> dict[str, Any]:
        # A lock cannot be pickled; like Optuna's samplers, leave it out and make a new one.
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random_sampler.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        """Breed this trial's child (or decide it is random) and record its parents."""
        parents: list[int] = []
        if "fixed_params" not in trial.system_attrs and trial.number >= self._population_size:
            with self._lock:
                bred = self._breed(study)
            if bred is not None:
                child, parents = bred
                self._children[trial._trial_id] = child
        study._storage.set_trial_user_attr(trial._trial_id, PARENTS_ATTR, parents)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        child = self._children.get(trial._trial_id)
        if child is not None and param_name in child.values:
            value = fit_to(child.values[param_name], param_distribution)
            if value is not None:
                return value
        return self._random_sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._children.pop(trial._trial_id, None)

    def _breed(self, study: Study) -> tuple[Genome, list[int]] | None:
        population = self._populations.get(study._study_id)
        if population is None:
            population = ElitePopulation(self._population_size, study.directions,
                                         selection=self._selection)
            self._populations[study._study_id] = population
        population.update(study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,),
                                            use_cache=True))
        if len(population.members) < 2:
            return None
        first = population.tournament(self._rng, size=self._tournament_size)
        second = population.tournament(self._rng, size=self._tournament_size, exclude=first.number)
        mother = Genome.of(first.params, first.distributions)
        father = Genome.of(second.params, second.distributions)
        if self._rng.random() < self._rates.crossover_rate:
            child = crossover(mother, father, self._rng)
        else:
            child = Genome.of(mother.values, mother.distributions)
        mutate(child, father, self._rates, self._rng)
        return child, [first.number, second.number]
