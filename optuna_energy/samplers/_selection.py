"""Steady-state multi-objective selection: an elite population and tournaments within it.

MENNDL's master hands a free worker a child whenever it asks; there is no generation barrier.
Here the population is the survivors of the previous population together with every trial
completed since (a (mu + lambda) update where lambda is whatever finished in between), so it
always reflects the storage at ask time while each update costs O(population^2), never
O(trials^2): a thousand-trial study stays as fast to ask as a fifty-trial one.

Survival is constrained and rank-based, like Optuna's NSGA-II: feasible trials first by
non-domination rank, infeasible ones after them by total violation (``trial.constraints``).
Ranks are by dominance beyond the noise (:mod:`optuna_energy.samplers._dominance`): a trial whose
objective carries a relative spread (its user attribute ``<metric name>_spread``) is equal, on
that objective, to any value within the spread, so a lucky measuring window does not lift a
trial into the first front nor an unlucky one push it out.
Within the last front that fits, and in the tournaments that pick parents, one of two measures
decides:

* ``"hypervolume"`` (the default; SMS-EMOA, Beume et al. 2007): the hypervolume a trial adds,
  objectives normalised to [0, 1] over the candidates with positive costs on a log scale. A
  trial that is cheap but no better than chance adds almost nothing, because its box along the
  accuracy axis is thin; crowding distance gives such extremes infinite worth.
* ``"crowding"``: NSGA-II's crowding distance, extremes first.

Optuna accepts infinite objective values (only NaN fails a trial). Normalisation spans the
finite values alone, so one infinity does not squash the others onto one point. An infinitely
bad value sits on the reference point, where a trial adds no hypervolume: it survives and wins
tournaments last in its front. An infinitely good one lies as far beyond the best finite value
(0) as the reference beyond the worst (1), keeping the order for ranking and crowding, and
counts as adding infinite hypervolume: it survives and wins tournaments first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from optuna_energy.samplers._dominance import noisy_non_domination_rank
from optuna_energy.samplers._optuna_compat import hypervolume, select_by_hypervolume

REFERENCE = 1.1  # reference point in every normalised objective: the worst candidate still counts
_BEYOND_BEST = 1.0 - REFERENCE  # where an infinitely good value goes: as far beyond 0 as 1.1 beyond 1


def normalised_losses(values: np.ndarray, *, maximize: np.ndarray) -> np.ndarray:
    """Objective values as losses in [0, 1] for hypervolumes: the one normalisation that the
    sampler's selection and the report's hypervolume share, with :data:`REFERENCE` as reference.

    Maximised objectives are negated; positive costs are taken on a log scale (they span
    decades); each column is min-max scaled over its finite values. ``+inf`` losses go to the
    reference point, ``-inf`` ones just below 0.
    """
    costs = ~maximize & np.all(values > 0, axis=0)  # +inf is positive, -inf is not
    losses = np.where(maximize, -values, values)
    losses[:, costs] = np.log10(losses[:, costs])  # log10(+inf) is +inf, without a warning
    finite = np.isfinite(losses)
    # Over the finite values only: one infinity would otherwise squash the rest onto 0.
    low = np.min(losses, axis=0, where=finite, initial=np.inf)
    high = np.max(losses, axis=0, where=finite, initial=-np.inf)
    low, high = np.where(high >= low, low, 0.0), np.where(high >= low, high, 0.0)
    scaled = (np.where(finite, losses, low) - low) / np.where(high > low, high - low, 1.0)
    scaled[losses == np.inf] = REFERENCE
    scaled[losses == -np.inf] = _BEYOND_BEST
    return scaled


class ElitePopulation:
    """The bounded population parents are drawn from, updated from completed trials."""

    def __init__(self, size: int, directions: Sequence[StudyDirection], *,
                 selection: str = "hypervolume", spread_attrs: Sequence[str] = ()) -> None:
        self.size = size
        self.selection = selection
        self.spread_attrs = tuple(spread_attrs)
        """The user attribute holding each objective's relative spread (none: every value exact)."""
        self._maximize = np.array([d == StudyDirection.MAXIMIZE for d in directions])
        self.members: list[FrozenTrial] = []
        self._rank = np.zeros(0, dtype=int)
        self._worth = np.zeros(0)
        self._seen: set[int] = set()

    def update(self, completed: Sequence[FrozenTrial]) -> None:
        """Merge trials not seen before and keep the ``size`` best."""
        new = [trial for trial in completed if trial.number not in self._seen]
        if not new:
            return
        self._seen.update(trial.number for trial in new)
        candidates = self.members + new
        values = np.array([t.values for t in candidates], dtype=float)
        losses = normalised_losses(values, maximize=self._maximize)
        penalty = np.array([sum(max(v, 0.0) for v in t.constraints.values()) for t in candidates])
        # Ranks past the front that fills the population are never used: stop sorting there.
        # The noise is relative to the values themselves, not to their normalised losses.
        rank = noisy_non_domination_rank(np.where(self._maximize, -values, values),
                                         self._spreads(candidates, values.shape[1]),
                                         penalty=penalty, n_below=self.size)
        kept: list[int] = []
        for level in np.unique(rank):
            front = np.flatnonzero(rank == level)
            room = self.size - len(kept)
            if len(front) > room:
                front = self._best_of_front(losses, front, room)
            kept.extend(front)
            if len(kept) == self.size:
                break
        kept.sort()  # members in the order they arrived, for reproducible tournaments
        worth = np.zeros(len(kept))
        kept_rank = rank[kept]
        for level in np.unique(kept_rank):
            members = np.flatnonzero(kept_rank == level)
            worth[members] = self._worth_in_front(losses[[kept[i] for i in members]])
        self.members = [candidates[i] for i in kept]
        self._rank, self._worth = kept_rank, worth

    def _spreads(self, trials: Sequence[FrozenTrial], n_objectives: int) -> np.ndarray:
        """Each trial's relative spread per objective, NaN (exact) where it recorded none."""
        if len(self.spread_attrs) != n_objectives:
            return np.full((len(trials), n_objectives), np.nan)
        return np.array([[_spread(t.user_attrs.get(attr)) for attr in self.spread_attrs]
                         for t in trials], dtype=float)

    def tournament(self, rng: np.random.Generator, *, size: int,
                   exclude: int | None = None) -> FrozenTrial:
        """The best of ``size`` members drawn at random: lower rank, then greater worth."""
        pool = [i for i in range(len(self.members)) if self.members[i].number != exclude]
        pool = pool or list(range(len(self.members)))
        drawn = rng.choice(pool, size=min(size, len(pool)), replace=False)
        best = min(drawn, key=lambda i: (self._rank[i], -self._worth[i]))
        return self.members[best]

    def _best_of_front(self, losses: np.ndarray, front: np.ndarray, count: int) -> np.ndarray:
        if self.selection == "hypervolume":
            # An infinitely good value (normalised below 0) adds infinite hypervolume: such
            # trials survive first, earliest first; the rest is chosen by the volume each adds.
            unbounded = front[_infinitely_good(losses[front])]
            if len(unbounded) >= count:
                return unbounded[:count]
            rest = front[~_infinitely_good(losses[front])]
            reference = np.full(losses.shape[1], REFERENCE)
            chosen = select_by_hypervolume(losses[rest], rest, count - len(unbounded), reference)
            return np.sort(np.concatenate([unbounded, chosen]))
        order = np.argsort(-crowding_distance(losses[front]), kind="stable")
        return np.sort(front[order[:count]])

    def _worth_in_front(self, front_losses: np.ndarray) -> np.ndarray:
        if self.selection == "hypervolume":
            worth = hypervolume_contributions(front_losses,
                                              np.full(front_losses.shape[1], REFERENCE))
            worth[_infinitely_good(front_losses)] = np.inf
            return worth
        return crowding_distance(front_losses)


def _spread(stored: object) -> float:
    """A stored spread as a number: NaN (exact) for a missing or non-numeric attribute."""
    return float(stored) if isinstance(stored, (int, float)) and not isinstance(stored, bool) else np.nan


def _infinitely_good(losses: np.ndarray) -> np.ndarray:
    """Rows with an objective at ``-inf``: the only normalised losses below 0."""
    return np.any(losses < 0, axis=1)


def hypervolume_contributions(losses: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The hypervolume each point alone adds to the set (its exclusive contribution)."""
    if len(losses) == 1:
        return np.array([float(np.prod(reference - losses[0]))])
    total = hypervolume(losses, reference)
    return np.array([total - hypervolume(np.delete(losses, i, axis=0), reference)
                     for i in range(len(losses))])


def crowding_distance(losses: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of the points of one front; the extremes get infinity."""
    count, n_objectives = losses.shape
    distance = np.zeros(count)
    if count <= 2:
        return np.full(count, np.inf)
    for objective in range(n_objectives):
        order = np.argsort(losses[:, objective], kind="stable")
        values = losses[order, objective]
        width = values[-1] - values[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if width > 0:
            distance[order[1:-1]] += (values[2:] - values[:-2]) / width
    return distance
