"""``EvolutionSampler``: MENNDL's asynchronous genetic algorithm as an Optuna sampler."""

from __future__ import annotations

import dataclasses
import datetime
import threading
from collections import OrderedDict
from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_energy.samplers._dominance import SPREAD_SUFFIX
from optuna_energy.samplers._genome import BlockOf, Genome, block_of
from optuna_energy.samplers._optuna_compat import (
    is_enqueued,
    set_trial_user_attr,
    storage_of,
    study_id,
    trial_by_number,
    trial_id,
)
from optuna_energy.samplers._selection import ElitePopulation
from optuna_energy.samplers._settings import EvolutionSettings
from optuna_energy.samplers._trial_feed import FeedPosition, TrialFeed
from optuna_energy.samplers._variation import VariationRates, crossover, fit_to, mutate

PARENTS_ATTR = "parents"
"""User attribute holding the trial numbers of a trial's parents (empty for random or seeded)."""

MAX_PENDING_CHILDREN = 1024
"""Most children kept per study for trials still running. A trial asked and never told stays
RUNNING (for ever, in memory); past this many, the oldest child is forgotten and its trial's
remaining parameters are drawn at random. Far above the trials one process runs at once."""

_DEFAULTS = EvolutionSettings()

POPULATION_ATTR = "optuna_energy:evolution_population"
"""Study system attribute prefix (then ``:size:selection``) holding the last elite population
written by any worker: its members' trial ids and the trial feed's position after them."""

_TrialKey = tuple[int, datetime.datetime | None]
"""A trial told apart from trials of other storages: its storage id and when it started."""


def _trial_key(trial: FrozenTrial) -> _TrialKey:
    return trial_id(trial), trial.datetime_start


@dataclasses.dataclass
class _StudyState:
    """What the sampler remembers of one study: its elite population and its pending children.

    Studies are told apart by name and id, which two storages can share (two in-memory
    studies, two SQLite files with a study of the same name), so a state also holds an
    anchor: the first trial it bred for, by number, storage id and start time. A study is this
    state's only if it has that very trial. The anchor is plain data, so a pickled sampler
    finds its populations again in a study reloaded from the same storage by another process.

    The population is updated from the trials the feed reads: those finished since the last
    ask, never the whole history.
    """

    directions: tuple[StudyDirection, ...]
    anchor: tuple[int, _TrialKey]
    population: ElitePopulation
    feed: TrialFeed = dataclasses.field(default_factory=TrialFeed)
    children: OrderedDict[_TrialKey, Genome] = dataclasses.field(default_factory=OrderedDict)

    def belongs_to(self, study: Study) -> bool:
        number, key = self.anchor
        if tuple(study.directions) != self.directions:
            return False
        anchor = trial_by_number(study, number)
        return anchor is not None and _trial_key(anchor) == key


class EvolutionSampler(BaseSampler):
    """A steady-state, multi-objective genetic algorithm over the whole conditional genome.

    Optuna's NSGA-II evolves only the parameters every trial has; in a conditional space (layer
    types and their hyperparameters) the rest is drawn at random. This sampler evolves all of
    it. Each new trial is a child of two parents picked by tournament from an elite population
    (feasible first, then non-domination rank, then the hypervolume each trial adds),
    which is updated from the trials completed in the storage when the trial is asked for. So
    any number of workers sharing one storage can ask whenever they are free: there is no
    generation barrier. Where a trial records the relative spread of a measured objective (the
    user attribute ``<metric name>_spread``, named by the study's ``metric_names``), values
    within that spread count as equal when ranking (``optuna_energy.samplers._dominance``).

    The child is built by crossover of whole blocks (a layer slot's on/off, type and
    hyperparameters; the training hyperparameters; or the blocks ``block_of`` declares) and
    mutated by switching slots, changing layer types and perturbing hyperparameters. It is then
    handed to the define-by-run objective one parameter at a time, clipped to the distribution
    the objective asks for; parameters the child lacks are drawn at random. The parents' trial
    numbers are stored on every trial as the user attribute ``parents``.

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
        block_of: The block of a parameter, from its name: parameters with the same key are
            inherited together, from one parent. By default the search space's rule: every
            parameter named ``sNN_...`` belongs to slot NN's block, every ``train_...`` to
            one training block, and any other name is a block of its own. For a space of your
            own, map the parameters of one unit (a stage of a ResNet: its depth, width and
            kernel) to one key. To pickle the sampler, pass a module-level function.

    A sampler can serve several studies, one after the other or interleaved; each has its own
    population. It can be pickled or deep-copied, to resume a seeded study as with Optuna's
    samplers: the copy carries the random state, the populations and the pending children.

    Raises:
        ValueError: A setting outside its range, naming it and what is allowed: a rate
            outside ``[0, 1]``, a population under 2, a tournament larger than the population,
            an unknown selection, a seed outside ``[0, 2**32 - 1]``.

    Example:
        >>> import optuna_energy
        >>> from optuna_energy.samplers import EvolutionSampler
        >>> study = optuna_energy.run_study("studies/digits.toml", sampler="evolution", n_trials=40)
        >>> study.trials[-1].user_attrs["parents"]
        [12, 7]

        Your own conditional space, one block per stage (``stage2_depth``, ``stage2_width``...):

        >>> sampler = EvolutionSampler(block_of=lambda name: name.split("_")[0])
        >>> study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    """

    def __init__(self, *, population_size: int = _DEFAULTS.population_size,
                 tournament_size: int = _DEFAULTS.tournament_size,
                 selection: str = _DEFAULTS.selection,
                 crossover_rate: float = _DEFAULTS.crossover_rate,
                 slot_toggle_rate: float = _DEFAULTS.slot_toggle_rate,
                 type_change_rate: float = _DEFAULTS.type_change_rate,
                 gene_mutation_rate: float = _DEFAULTS.gene_mutation_rate,
                 perturbation_scale: float = _DEFAULTS.perturbation_scale,
                 seed: int | None = None, block_of: BlockOf = block_of) -> None:
        if not callable(block_of):
            raise ValueError(f"block_of must be a function from parameter name to block key, "
                             f"got {block_of!r}")
        if seed is not None and not (isinstance(seed, Integral) and 0 <= seed < 2**32):  # NumPy's range
            raise ValueError(f"seed must be an integer from 0 to {2**32 - 1}, or None, got {seed!r}")
        self._block_of = block_of
        self._settings = EvolutionSettings(
            population_size=population_size, tournament_size=tournament_size,
            selection=selection, crossover_rate=crossover_rate,
            slot_toggle_rate=slot_toggle_rate, type_change_rate=type_change_rate,
            gene_mutation_rate=gene_mutation_rate, perturbation_scale=perturbation_scale)
        self._rates = VariationRates(**{field.name: getattr(self._settings, field.name)
                                        for field in dataclasses.fields(VariationRates)})
        self._rng = np.random.default_rng(seed)
        self._random_sampler = RandomSampler(seed=seed)
        self._studies: dict[tuple[str, int], list[_StudyState]] = {}
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
        if not is_enqueued(trial) and trial.number >= self._settings.population_size:
            with self._lock:
                parents = self._breed(study, trial)
        set_trial_user_attr(study, trial, PARENTS_ATTR, parents)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        child = self._child_of(study, trial)
        if child is not None and param_name in child.values:
            value = fit_to(child.values[param_name], param_distribution)
            if value is not None:
                return value
        return self._random_sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        with self._lock:
            for study_state in self._studies.get(self._study_key(study), ()):
                study_state.children.pop(_trial_key(trial), None)

    @staticmethod
    def _study_key(study: Study) -> tuple[str, int]:
        return study.study_name, study_id(study)

    def _child_of(self, study: Study, trial: FrozenTrial) -> Genome | None:
        key = _trial_key(trial)
        for state in self._studies.get(self._study_key(study), ()):
            child = state.children.get(key)
            if child is not None:
                return child
        return None

    def _state_of(self, study: Study, trial: FrozenTrial) -> _StudyState:
        """This study's state, made on first use from the population the study holds, if any."""
        candidates = self._studies.setdefault(self._study_key(study), [])
        for state in candidates:
            if state.belongs_to(study):
                return state
        population = ElitePopulation(self._settings.population_size, study.directions,
                                     selection=self._settings.selection,
                                     spread_attrs=[f"{name}{SPREAD_SUFFIX}"
                                                   for name in study.metric_names or ()])
        state = _StudyState(directions=tuple(study.directions),
                            anchor=(trial.number, _trial_key(trial)), population=population,
                            feed=TrialFeed(self._saved_position(study)))
        candidates.append(state)
        return state

    def _population_attr(self) -> str:
        return f"{POPULATION_ATTR}:{self._settings.population_size}:{self._settings.selection}"

    def _saved_position(self, study: Study) -> FeedPosition:
        """Where to start reading the study: after the population some worker saved, its members
        read again once (they are the population); from the start without one."""
        saved: Any = storage_of(study).get_study_system_attrs(study_id(study)).get(self._population_attr())
        try:
            position = FeedPosition.from_json(saved["position"])
            members = frozenset(int(i) for i in saved["members"])
        except (KeyError, TypeError, ValueError):
            return FeedPosition()
        return FeedPosition(after_id=position.after_id, unfinished_ids=position.unfinished_ids
                            | {i for i in members if i <= position.after_id})

    def _save_population(self, study: Study, state: _StudyState) -> None:
        """Write the population on the study, for the next worker that joins."""
        saved: dict[str, Any] = {"members": [trial_id(t) for t in state.population.members],
                                 "position": state.feed.position.to_json()}
        storage_of(study).set_study_system_attr(study_id(study), self._population_attr(), saved)

    def _breed(self, study: Study, trial: FrozenTrial) -> list[int]:
        """Breed ``trial``'s child into its study's state; the parents' numbers (none: random)."""
        state = self._state_of(study, trial)
        trials = state.feed.read(study)
        # Children of trials that ended without ``after_trial`` here (failed by another worker,
        # told through another sampler) are dropped, and never-told ones are bounded below.
        finished = [t for t in trials if t.state.is_finished()]
        for key in [_trial_key(t) for t in finished]:
            state.children.pop(key, None)
        completed = [t for t in finished if t.state == TrialState.COMPLETE]
        state.population.update(completed)
        if completed:
            self._save_population(study, state)
        population = state.population
        if len(population.members) < 2:
            return []
        first = population.tournament(self._rng, size=self._settings.tournament_size)
        second = population.tournament(self._rng, size=self._settings.tournament_size,
                                       exclude=first.number)
        mother = Genome.of(first.params, first.distributions, block_of=self._block_of)
        father = Genome.of(second.params, second.distributions, block_of=self._block_of)
        if self._rng.random() < self._rates.crossover_rate:
            child = crossover(mother, father, self._rng)
        else:
            child = Genome.of(mother.values, mother.distributions, block_of=self._block_of)
        mutate(child, father, self._rates, self._rng)
        state.children[_trial_key(trial)] = child
        while len(state.children) > MAX_PENDING_CHILDREN:
            state.children.popitem(last=False)
        return [first.number, second.number]
