"""Every private Optuna API optuna-energy uses, in one place.

Optuna exports no public hypervolume, subset selection or constrained non-domination ranking,
and a sampler has no public way to reach the storage of the trial it is preparing. Its own
samplers (NSGA-II, TPE) use the same private pieces. The run loop and the recovery of dead
workers need a study's storage and a trial's storage id too. The module sits in ``samplers`` so
that the sampler stays importable without the rest of the package; the application imports it
from here as well. Should a new Optuna release move or
change one of them, ``tests/test_sampler_contract.py`` fails on this module alone, and this is
the only file to mend.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import numpy as np
from optuna._hypervolume import compute_hypervolume as _compute_hypervolume
from optuna._hypervolume.hssp import _solve_hssp
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.study import Study
from optuna.study._multi_objective import _fast_non_domination_rank
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "heartbeat_enabled",
    "heartbeat_interval",
    "hypervolume",
    "is_enqueued",
    "non_domination_rank",
    "select_by_hypervolume",
    "set_trial_user_attr",
    "stale_trial_callback",
    "storage_of",
    "storage_behind_cache",
    "study_id",
    "study_trials",
    "trial_id",
]


def hypervolume(losses: np.ndarray, reference: np.ndarray) -> float:
    """The hypervolume dominated by ``losses`` (to minimise) up to ``reference``.

    Every point must be at most ``reference`` in every objective.
    """
    return float(_compute_hypervolume(losses, reference))


def select_by_hypervolume(losses: np.ndarray, indices: np.ndarray, count: int,
                          reference: np.ndarray) -> np.ndarray:
    """``count`` of ``indices`` (one per row of ``losses``) that greedily maximise the hypervolume."""
    return np.asarray(_solve_hssp(losses, indices, count, reference))


def non_domination_rank(losses: np.ndarray, *, penalty: np.ndarray | None = None) -> np.ndarray:
    """Constrained non-domination rank (0 = first front): feasible (penalty <= 0) trials first by
    dominance, infeasible ones after them by penalty, as in Optuna's constrained NSGA-II."""
    return np.asarray(_fast_non_domination_rank(losses, penalty=penalty))


def study_id(study: Study) -> int:
    """The study's id in its storage (unique within one storage only)."""
    return study._study_id


def storage_of(study: Study) -> BaseStorage:
    """The storage a study reads and writes (Optuna's cache in front of an RDB storage)."""
    return study._storage


def storage_behind_cache(study: Study) -> BaseStorage:
    """The storage behind Optuna's cache: the ``RDBStorage`` with its URL and grace period."""
    storage = study._storage
    return getattr(storage, "_backend", storage)


def heartbeat_interval(study: Study) -> int | None:
    """Seconds between heartbeats of the study's storage (``None``: no heartbeat)."""
    return study._storage.get_heartbeat_interval()  # type: ignore[attr-defined]


def stale_trial_callback(study: Study) -> Any:
    """What the storage's heartbeat does with a trial whose worker died (re-queues it), or ``None``."""
    return study._storage.get_heartbeat_stale_trial_callback()  # type: ignore[attr-defined]


def heartbeat_enabled(study: Study) -> bool:
    """Whether the study's storage runs Optuna's heartbeat (dead workers are detected)."""
    return is_heartbeat_enabled(study._storage)


def is_enqueued(trial: FrozenTrial) -> bool:
    """Whether the trial runs parameters given to ``study.enqueue_trial`` (or a retry's copy)."""
    return "fixed_params" in trial.system_attrs


def trial_id(trial: FrozenTrial) -> int:
    """The trial's id in its storage (unique within one storage only)."""
    return trial._trial_id


def study_trials(study: Study, states: Container[TrialState] | None) -> list[FrozenTrial]:
    """The study's trials in ``states``, not copied, from the per-ask cache Optuna's samplers use."""
    return study._get_trials(deepcopy=False, states=states, use_cache=True)


def set_trial_user_attr(study: Study, trial: FrozenTrial, key: str, value: Any) -> None:
    """Set a user attribute from ``before_trial``, where a sampler holds no ``optuna.Trial``."""
    study._storage.set_trial_user_attr(trial._trial_id, key, value)
