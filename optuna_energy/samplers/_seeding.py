"""A seeded sampler per process that no other process of the study repeats.

Processes that join a study at the same moment with the same ``--seed`` would draw the same
proposals: their trials would train identical architectures. The sampler is therefore built when
the process starts its first trial, seeded from the configured seed and that trial's number.
Trial numbers are unique in a study, so every process gets its own stream; a seeded run alone on
a study still replays exactly (its first trial number is the study's trial count), and a fresh
study's first process keeps the configured seed itself.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

MAX_SEED = 2**31 - 1
"""The largest seed a study takes: seeds go to NumPy (below 2**32) after a trial number is added."""


def first_trial_seed(seed: int, number: int) -> int:
    """The seed of a process whose first trial is ``number``: ``seed`` itself for trial 0, else
    a hash of both (a sum would collide: seed 7 at trial 1 is seed 8 at trial 0)."""
    if number == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (MAX_SEED + 1)


class SeededAtFirstTrial(BaseSampler):
    """The sampler ``build(seed)`` makes, seeded for this process's first trial with
    :func:`first_trial_seed`; every call goes to it."""

    def __init__(self, build: Callable[[int], BaseSampler], *, seed: int) -> None:
        self._build = build
        self._seed = seed
        self._lock = threading.Lock()  # study.optimize(n_jobs=...) starts trials from threads
        self._started = False
        self.sampler = build(seed)
        """The sampler in use: seeded as for trial 0 until the first trial says otherwise."""

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                if trial.number != 0:
                    self.sampler = self._build(first_trial_seed(self._seed, trial.number))
        self.sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()
