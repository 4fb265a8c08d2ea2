"""Every private Optuna API optuna-energy uses, in one place.

Optuna exports no public hypervolume, subset selection or constrained non-domination ranking,
and a sampler has no public way to reach the storage of the trial it is preparing. Its own
samplers (NSGA-II, TPE) use the same private pieces. The run loop and the recovery of dead
workers need a study's storage and a trial's storage id too. The module sits in ``samplers`` so
that the sampler stays importable without the rest of the package; the application imports it
from here as well. Should a new Optuna release move or
change one of them, ``tests/test_sampler_contract.py`` fails on this module alone, and this is
the only file to mend.

A study of 100,000 trials must not be read whole for every trial: :func:`trials_after` reads only
the trials created or changed since a point, through ``RDBStorage``'s own incremental query (the
one Optuna's trial cache uses), and :func:`read_through` takes that cache, which loads the whole
study on its first read, out of a worker's way.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import numpy as np
from optuna._hypervolume import compute_hypervolume as _compute_hypervolume
from optuna._hypervolume.hssp import _solve_hssp
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.study import Study
from optuna.study._constrained_optimization import _CONSTRAINTS_KEY
from optuna.study._multi_objective import _fast_non_domination_rank, _is_pareto_front
from optuna.trial import FrozenTrial

__all__ = [
    "heartbeat_enabled",
    "heartbeat_interval",
    "hypervolume",
    "is_enqueued",
    "is_pareto_front",
    "non_domination_rank",
    "read_trials_without_params",
    "read_through",
    "select_by_hypervolume",
    "set_trial_user_attr",
    "stale_trial_callback",
    "storage_of",
    "storage_behind_cache",
    "study_id",
    "trial_by_number",
    "trial_id",
    "trials_after",
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


def non_domination_rank(losses: np.ndarray, *, penalty: np.ndarray | None = None,
                        n_below: int | None = None) -> np.ndarray:
    """Constrained non-domination rank (0 = first front): feasible (penalty <= 0) trials first by
    dominance, infeasible ones after them by penalty, as in Optuna's constrained NSGA-II.

    With ``n_below``, sorting stops once that many points are ranked: ranks are exact up to the
    front holding the ``n_below``-th point, and every point after it ranks worse than that front.
    """
    return np.asarray(_fast_non_domination_rank(losses, penalty=penalty, n_below=n_below))


def is_pareto_front(losses: np.ndarray) -> np.ndarray:
    """Rows of a loss matrix that no other row dominates (duplicates kept): the first front
    alone, without ranking the rest, as ``study.best_trials`` finds it."""
    return np.asarray(_is_pareto_front(losses, assume_unique_lexsorted=False), dtype=bool)


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


def heartbeat_age(study: Study, trial: FrozenTrial) -> float | None:
    """Seconds since a running trial's last heartbeat, by the database's clock; ``None`` when it
    never recorded one (or the storage keeps no heartbeats)."""
    import sqlalchemy
    from optuna.storages._rdb import models

    storage = storage_behind_cache(study)
    if not isinstance(storage, RDBStorage):
        return None
    session = storage.scoped_session()
    try:
        beat = models.TrialHeartbeatModel.where_trial_id(trial._trial_id, session)
        if beat is None:
            return None
        now = session.execute(sqlalchemy.func.now()).scalar()
        if now is None:
            return None
        return (now.replace(tzinfo=None) - beat.heartbeat.replace(tzinfo=None)).total_seconds()
    finally:
        session.close()


def is_enqueued(trial: FrozenTrial) -> bool:
    """Whether the trial runs parameters given to ``study.enqueue_trial`` (or a retry's copy)."""
    return "fixed_params" in trial.system_attrs


def trial_id(trial: FrozenTrial) -> int:
    """The trial's id in its storage (unique within one storage only)."""
    return trial._trial_id


def trials_after(study: Study, *, after_id: int, also_ids: Collection[int]) -> list[FrozenTrial]:
    """The study's trials with a storage id above ``after_id`` or in ``also_ids`` (which must be
    at most ``after_id``), by id, not copied: one indexed query on a database storage, whatever
    the size of the study. Other storages hold their trials in memory and filter them there."""
    storage = storage_behind_cache(study)
    if isinstance(storage, RDBStorage):
        return storage._get_trials(study._study_id, None, set(also_ids), after_id)
    wanted = set(also_ids)
    return [trial for trial in study._storage.get_all_trials(study._study_id, deepcopy=False)
            if trial._trial_id > after_id or trial._trial_id in wanted]


def trial_by_number(study: Study, number: int) -> FrozenTrial | None:
    """The study's trial numbered ``number`` (``None``: it has none), read alone."""
    try:
        return study._storage.get_trial(
            study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number))
    except KeyError:
        return None


def read_through(study: Study) -> None:
    """Let ``study`` read its database directly instead of through Optuna's trial cache.

    The cache copies every trial of the study into memory on its first read (Optuna's own
    ``ask`` reads the queue through it), which costs a worker joining a 100,000-trial study
    minutes and gigabytes. Without it, ``ask`` reads only queued trials, and ``get_trials``
    reads the database each time: right for code that reads only what it needs
    (:func:`trials_after`), wrong for samplers that read the whole history on every ask.
    """
    if isinstance(study._storage, _CachedStorage):
        study._storage = study._storage._backend


def set_trial_user_attr(study: Study, trial: FrozenTrial, key: str, value: Any) -> None:
    """Set a user attribute from ``before_trial``, where a sampler holds no ``optuna.Trial``."""
    study._storage.set_trial_user_attr(trial._trial_id, key, value)


def read_trials_without_params(study: Study, *, user_attrs: Collection[str],
                               since_trial_id: int = 0,
                               trial_ids: Collection[int] = ()) -> list[FrozenTrial] | None:
    """Trials read straight from Optuna's RDB tables, with their values, constraints and only the
    named user attributes, and no parameters: a hundred thousand trials in seconds where
    ``get_trials`` builds every parameter's distribution and takes minutes and gigabytes.

    Only trials with an id above ``since_trial_id`` or in ``trial_ids`` are read (a reader that
    keeps what it read asks for the new and the unfinished ones). ``None`` when the study is not
    in an RDB storage: there ``get_trials`` costs no database reads.
    """
    import sqlalchemy
    from optuna.storages._rdb import models

    storage = storage_behind_cache(study)
    if not isinstance(storage, RDBStorage):
        return None
    table, values = models.TrialModel.__table__, models.TrialValueModel.__table__
    chosen = table.c.trial_id > since_trial_id
    if trial_ids:
        chosen = sqlalchemy.or_(chosen, table.c.trial_id.in_(list(trial_ids)))
    ids = sqlalchemy.select(table.c.trial_id).where(table.c.study_id == study._study_id, chosen)
    with storage.engine.connect() as connection:
        rows = connection.execute(sqlalchemy.select(
            table.c.trial_id, table.c.number, table.c.state, table.c.datetime_start,
            table.c.datetime_complete).where(table.c.trial_id.in_(ids))).all()
        found_values: dict[int, dict[int, float]] = {}
        for trial, objective, value, kind in connection.execute(sqlalchemy.select(
                values.c.trial_id, values.c.objective, values.c.value, values.c.value_type)
                .where(values.c.trial_id.in_(ids))):
            found_values.setdefault(trial, {})[objective] = (
                models.TrialValueModel.stored_repr_to_value(value, kind))
        attributes = {}
        for model, names in ((models.TrialUserAttributeModel, list(user_attrs)),
                             (models.TrialSystemAttributeModel, None)):
            attrs = model.__table__
            wanted = (attrs.c.key.in_(names) if names is not None
                      else attrs.c.key.like(_CONSTRAINTS_KEY + "%"))
            found: dict[int, dict[str, Any]] = {}
            for trial, key, value in connection.execute(sqlalchemy.select(
                    attrs.c.trial_id, attrs.c.key, attrs.c.value_json)
                    .where(attrs.c.trial_id.in_(ids), wanted)):
                found.setdefault(trial, {})[key] = json.loads(value)
            attributes[model] = found
    return [FrozenTrial(
        number=number, trial_id=trial, state=state, value=None,
        values=[found_values[trial][index] for index in sorted(found_values[trial])]
        if trial in found_values else None,
        datetime_start=start, datetime_complete=complete, params={}, distributions={},
        user_attrs=attributes[models.TrialUserAttributeModel].get(trial, {}),
        system_attrs=attributes[models.TrialSystemAttributeModel].get(trial, {}),
        intermediate_values={}) for trial, number, state, start, complete in rows]
