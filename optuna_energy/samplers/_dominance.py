"""Pareto dominance beyond the noise: the one rule by which the sampler's selection, the
early-stopping rungs and the report rank trials.

A measured cost carries its relative spread (how far repeated measuring windows disagreed, as
a fraction of the value). Two values of one objective are **equal within the noise** when they
differ by no more than ``max(spread_a, spread_b) * max(|a|, |b|)``: the larger of the two
trials' spreads, relative to the larger value. Then, on losses (lower is better):

    ``a`` dominates ``b`` iff on no objective ``a`` is worse than ``b`` beyond the noise, and
    on at least one it is better beyond the noise.

An exact value (a count, accuracy on the fixed evaluation set) has spread 0; an unknown spread
(NaN: one window, a study older than spreads) counts as 0 too, so with no spread anywhere the
rule is Optuna's Pareto dominance. An infinite value has no relative tolerance: it is equal
only to the same infinity.

The relation is irreflexive and asymmetric, and a trial that dominates another beyond the noise
is never dominated by it exactly; but it is not transitive (``a`` and ``c`` may differ beyond
the noise where ``a ~ b`` and ``b ~ c`` do not), and with three or more noisy objectives it
can cycle. Sorting into fronts therefore falls back, at a level where every remaining trial is
dominated by another remaining one, to the remaining trials that none dominates exactly, so
every front is non-empty and every trial gets a rank.

What it changes: a trial that beats a front member only within the noise on a cost, and loses
on an exact objective, no longer enters the front on that noise (the member dominates it); a
trial that a member beats only within the noise stays on the front beside it. Which of two
such trials is on the front no longer depends on which window was lucky.
"""

from __future__ import annotations

import numpy as np

from optuna_energy.samplers._optuna_compat import is_pareto_front, non_domination_rank

SPREAD_SUFFIX = "_spread"
"""A trial's user attribute ``<metric name>_spread`` holds the relative spread of that objective's
value; the sampler reads it by the study's metric names (``optuna_energy.metrics`` writes it as
``Metric.spread_field``)."""

_BLOCK_CELLS = 4_000_000
"""Pairs x objectives compared at once in the front of a large set: about 100 MB of work
arrays, whatever the number of trials."""


def _exact(spreads: np.ndarray) -> bool:
    """No spread anywhere (NaN: unknown, counted as 0): Optuna's dominance and its fast paths."""
    return not np.any(spreads > 0)  # NaN > 0 is False


def _beyond_noise(a: np.ndarray, b: np.ndarray, spread_a: np.ndarray,
                  spread_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where ``a`` is worse and where it is better than ``b`` beyond the noise (broadcasting;
    the last axis is the objectives)."""
    spread = np.fmax(np.nan_to_num(spread_a, nan=0.0), np.nan_to_num(spread_b, nan=0.0))
    scale = np.maximum(np.abs(a), np.abs(b))
    with np.errstate(invalid="ignore"):  # inf * 0 and inf - inf: those pairs take tolerance 0
        tolerance = np.where(np.isfinite(scale) & (spread > 0), spread * scale, 0.0)
        difference = a - b
    return difference > tolerance, -difference > tolerance


def dominates(a: np.ndarray, b: np.ndarray, *, spread_a: np.ndarray, spread_b: np.ndarray) -> bool:
    """Whether losses ``a`` dominate losses ``b`` beyond the noise (the module's rule), each
    value with its relative spread (0 or NaN: exact)."""
    worse, better = _beyond_noise(*(np.asarray(x, dtype=float) for x in (a, b, spread_a, spread_b)))
    return bool(not worse.any() and better.any())


def domination_matrix(losses: np.ndarray, spreads: np.ndarray) -> np.ndarray:
    """``D[i, j]``: row ``i`` dominates row ``j`` beyond the noise; ``O(n^2)`` memory, for the
    points of a population or of a rung (at most ``MAX_PEERS`` + 1)."""
    worse, better = _beyond_noise(losses[:, None, :], losses[None, :, :],
                                  spreads[:, None, :], spreads[None, :, :])
    return np.asarray(~worse.any(axis=2) & better.any(axis=2))


def noisy_non_domination_rank(losses: np.ndarray, spreads: np.ndarray, *,
                              penalty: np.ndarray | None = None,
                              n_below: int | None = None) -> np.ndarray:
    """Constrained non-domination rank (0: first front) by dominance beyond the noise:
    feasible (``penalty <= 0``) trials first by fronts, infeasible ones after them by penalty,
    as in Optuna's constrained NSGA-II (``non_domination_rank``, which it is where no value has
    a spread; ``n_below`` only shortens that path).

    Args:
        losses: One row per trial, one column per objective, lower is better.
        spreads: The relative spread of each value, same shape (0 or NaN: exact).
        penalty: Each trial's total constraint violation, if constrained.
        n_below: Ranks need only be exact up to the front holding the ``n_below``-th trial.
    """
    losses, spreads = np.asarray(losses, dtype=float), np.asarray(spreads, dtype=float)
    if _exact(spreads):
        return non_domination_rank(losses, penalty=penalty, n_below=n_below)
    feasible = np.ones(len(losses), dtype=bool) if penalty is None else penalty <= 0
    ranks = np.zeros(len(losses), dtype=int)
    ranks[feasible] = _peel(losses[feasible], spreads[feasible])
    if not feasible.all():
        assert penalty is not None
        top = np.max(ranks[feasible], initial=-1) + 1
        ranks[~feasible] = top + non_domination_rank(penalty[~feasible][:, None])
    return ranks


def _peel(losses: np.ndarray, spreads: np.ndarray) -> np.ndarray:
    """Fronts of the relation by counting each point's dominators (Deb's fast sort, O(n^2))."""
    dominance = domination_matrix(losses, spreads)
    dominators = dominance.sum(axis=0)
    ranks = np.full(len(losses), -1, dtype=int)
    remaining = np.ones(len(losses), dtype=bool)
    level = 0
    while remaining.any():
        current = remaining & (dominators == 0)
        if not current.any():  # a cycle: the remaining points none beats exactly
            left = np.flatnonzero(remaining)
            current = np.zeros_like(remaining)
            current[left[is_pareto_front(losses[left])]] = True
        ranks[current] = level
        remaining &= ~current
        dominators -= dominance[current].sum(axis=0)
        level += 1
    return ranks


def noisy_pareto_mask(losses: np.ndarray, spreads: np.ndarray) -> np.ndarray:
    """Rows that no row dominates beyond the noise: the first front of
    :func:`noisy_non_domination_rank`, for any number of points.

    Without spreads this is Optuna's ``is_pareto_front``. With them, most points are set aside
    cheaply: a point that some point beats exactly on every objective, and on one of them by
    more than the largest spread of that objective allows, is dominated beyond any noise, and
    whether such a point exists is a question for the exact front alone. Only the rest are
    compared with every point.
    """
    losses, spreads = np.asarray(losses, dtype=float), np.asarray(spreads, dtype=float)
    if len(losses) == 0:
        return np.zeros(0, dtype=bool)
    if _exact(spreads):
        return is_pareto_front(losses)
    front = losses[is_pareto_front(losses)]
    candidates = np.flatnonzero(~_surely_dominated(losses, front, np.max(np.nan_to_num(spreads, nan=0.0), axis=0)))
    on_front = np.zeros(len(losses), dtype=bool)
    block = max(1, _BLOCK_CELLS // (len(losses) * losses.shape[1]))
    for start in range(0, len(candidates), block):
        rows = candidates[start:start + block]
        worse, better = _beyond_noise(losses[None, :, :], losses[rows, None, :],
                                      spreads[None, :, :], spreads[rows, None, :])
        on_front[rows] = ~np.any(~worse.any(axis=2) & better.any(axis=2), axis=1)
    if not on_front.any():  # the relation cycled over every candidate: the exact front
        return is_pareto_front(losses)
    return on_front


def _surely_dominated(losses: np.ndarray, front: np.ndarray, largest_spread: np.ndarray) -> np.ndarray:
    """Points some front member beats exactly everywhere and, on some objective, by more than
    any tolerance there can be.

    On objective ``j`` a value ``a < b`` is better beyond the noise whatever the spreads if
    ``a < b (1 - S)`` for ``b >= 0``, or ``a < b / (1 - S)`` for ``b < 0``, ``S < 1`` being the
    objective's largest spread. A point beaten that way by any point is beaten so by a member
    of the exact front (weak dominance is transitive).
    """
    surely = np.zeros(len(losses), dtype=bool)
    block = max(1, _BLOCK_CELLS // (max(len(front), 1) * losses.shape[1]))
    # Exact objectives first: they set most points aside, and later ones query only the rest.
    for j in np.argsort(largest_spread, kind="stable"):
        spread = largest_spread[j]
        if spread >= 1:
            break  # no value is surely better: the tolerance can exceed the value itself
        rows = np.flatnonzero(~surely & np.isfinite(losses[:, j]))
        bound = losses[rows, j]
        threshold = np.where(bound >= 0, bound * (1 - spread), bound / (1 - spread))
        queries = losses[rows]
        queries[:, j] = np.nextafter(threshold, -np.inf)  # a value at or below it: strictly below
        for start in range(0, len(rows), block):
            part = slice(start, start + block)
            surely[rows[part]] = np.all(front[None, :, :] <= queries[part, None, :], axis=2).any(axis=1)
    return surely
