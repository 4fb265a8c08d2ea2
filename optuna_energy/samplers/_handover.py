"""``HandoverSampler``: one sampler for a study's first trials, another for the rest.

The default search (``sampler = "auto"``) is TPE while a study is small and the evolution sampler
after: TPE found better fronts at the budgets the benchmark can afford (docs/BENCHMARKS.md, "The
default sampler"), but it fits its model to every finished trial at every ask, so its cost per
trial grows with the study (about 0.5 CPU s at 1,000 trials, 1.3 s at 3,000), while the evolution
sampler reads only the trials finished since its last ask and costs the same at 100,000 trials as
at 100. Which sampler proposes a trial depends on its number alone, so every worker of a study
agrees, and the evolution sampler starts from the elite of the trials TPE found.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from optuna_energy.samplers._optuna_compat import read_through, trial_by_number
from optuna_energy.samplers._sampler import EvolutionSampler

HANDOVER_TRIALS = 1000
"""Trials the first sampler of ``sampler = "auto"`` proposes: TPE's cost per trial at this size
(about half a CPU second) is small beside a trial's training; past it, it keeps growing."""


class HandoverSampler(BaseSampler):
    """``first`` proposes trials ``0 .. handover_trials - 1``, ``then`` every later one.

    When ``then`` takes over and reads only new trials (:func:`reads_whole_history`), the study
    stops reading through Optuna's cache of every trial: no worker keeps a copy of the whole
    history in memory.

    Args:
        first: The sampler of the first ``handover_trials`` trials.
        then: The sampler of the rest; it finds the trials ``first`` proposed in the study.
        handover_trials: How many trials ``first`` proposes (at least 1).
    """

    def __init__(self, first: BaseSampler, then: BaseSampler, *, handover_trials: int = HANDOVER_TRIALS) -> None:
        if isinstance(handover_trials, bool) or not isinstance(handover_trials, int) or handover_trials < 1:
            raise ValueError(f"handover_trials must be a positive integer, got {handover_trials!r}")
        self.first = first
        self.then = then
        self.handover_trials = handover_trials

    def sampler_for(self, number: int) -> BaseSampler:
        """The sampler that proposes trial ``number``."""
        return self.first if number < self.handover_trials else self.then

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.sampler_for(trial.number).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.sampler_for(trial.number).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.sampler_for(trial.number).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if not reads_whole_history(self, next_trial=trial.number):
            read_through(study)  # idempotent; a worker that crossed the handover drops its cache
        self.sampler_for(trial.number).before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.sampler_for(trial.number).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.first.reseed_rng()
        self.then.reseed_rng()


def reads_whole_history(sampler: BaseSampler, *, next_trial: int) -> bool:
    """Whether ``sampler`` reads every trial of the study when it proposes trial ``next_trial``:
    Optuna's model-based samplers do; random search and the evolution sampler, which reads only
    the trials finished since its last ask, do not (their study may skip Optuna's cache)."""
    if isinstance(sampler, HandoverSampler):
        sampler = sampler.sampler_for(next_trial)
    return not isinstance(sampler, (EvolutionSampler, RandomSampler))


def reads_whole_history_on_joining(sampler: BaseSampler, study: Study) -> bool:
    """:func:`reads_whole_history` for the next trial of ``study``, as a joining worker asks it:
    past a handover is one indexed read, where counting trials through Optuna's cache would copy
    every trial into memory."""
    if isinstance(sampler, HandoverSampler) and trial_by_number(study, sampler.handover_trials - 1) is not None:
        return reads_whole_history(sampler, next_trial=sampler.handover_trials)
    return reads_whole_history(sampler, next_trial=0)
