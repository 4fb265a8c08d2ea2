"""Steady-state multi-objective selection: an elite population and tournaments within it.

MENNDL's master hands a free worker a child whenever it asks; there is no generation barrier.
Here the population is the NSGA-II survivors of the previous population together with every
trial completed since (a (mu + lambda) update where lambda is whatever finished in between),
so it always reflects the storage at ask time while each update costs only O(population^2),
never O(trials^2): a thousand-trial study stays as fast to ask as a fifty-trial one.

Survival is constrained NSGA-II: feasible trials first by non-domination rank, infeasible ones
after them by total violation (Optuna's constraint API, ``trial.constraints``), and within the
last front that fits, the larger crowding distance wins. Parents are picked by tournaments on
the same order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from optuna.study import StudyDirection
from optuna.study._multi_objective import _fast_non_domination_rank
from optuna.trial import FrozenTrial


class ElitePopulation:
    """The bounded population parents are drawn from, updated from completed trials."""

    def __init__(self, size: int, directions: Sequence[StudyDirection]) -> None:
        self.size = size
        self._signs = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions])
        self.members: list[FrozenTrial] = []
        self._rank = np.zeros(0, dtype=int)
        self._crowding = np.zeros(0)
        self._seen: set[int] = set()

    def update(self, completed: Sequence[FrozenTrial]) -> None:
        """Merge trials not seen before and keep the ``size`` best (NSGA-II survival)."""
        new = [trial for trial in completed if trial.number not in self._seen]
        if not new:
            return
        self._seen.update(trial.number for trial in new)
        candidates = self.members + new
        losses = np.array([trial.values for trial in candidates], dtype=float) * self._signs
        penalty = np.array([sum(max(v, 0.0) for v in trial.constraints.values())
                            for trial in candidates])
        rank = _fast_non_domination_rank(losses, penalty=penalty)
        crowding = np.zeros(len(candidates))
        for level in np.unique(rank):
            front = np.flatnonzero(rank == level)
            crowding[front] = crowding_distance(losses[front])
        order = np.lexsort((-crowding, rank))[: self.size]
        order.sort()  # keep members in the order they arrived, for reproducible tournaments
        self.members = [candidates[i] for i in order]
        self._rank, self._crowding = rank[order], crowding[order]

    def tournament(self, rng: np.random.Generator, *, size: int,
                   exclude: int | None = None) -> FrozenTrial:
        """The best of ``size`` members drawn at random: lower rank, then larger crowding."""
        pool = [i for i in range(len(self.members)) if self.members[i].number != exclude]
        pool = pool or list(range(len(self.members)))
        drawn = rng.choice(pool, size=min(size, len(pool)), replace=False)
        best = min(drawn, key=lambda i: (self._rank[i], -self._crowding[i]))
        return self.members[best]


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
