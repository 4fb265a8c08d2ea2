"""The rung schedule and the stop rule of multi-objective early stopping.

Training runs in rungs: after ``first_rung`` epochs, then after ``factor`` times as many, and
so on, up to (not including) the configured ``epochs``, which is full training. At each rung a
trial goes on only if it can still reach the Pareto front:

1. **Chance.** A network whose accuracy is not yet above always answering the most frequent
   class with confidence (the ``learned`` constraint's threshold) stops: it learned nothing yet.
2. **Asynchronous successive halving, multi-objective.** Among the trials that reached this
   rung (from what the storage holds now: no barrier, any number of workers), the points
   ``(1 - accuracy at the rung, cost_1, ..., cost_k)`` are sorted into non-dominated fronts.
   The costs are the study's cost objectives, measured exactly before training (see
   :mod:`optuna_energy.trial.costs_first`), so a cheap network competes with other cheap ones and
   needs less accuracy to stay worth training than an expensive one. A measured cost counts
   as equal to a peer's within the larger of their relative spreads (dominance beyond the
   noise, :mod:`optuna_energy.samplers._dominance`; accuracy on the fixed evaluation set is
   exact), so a trial is not stopped by a lucky measurement of a peer. The trial goes on if
   fewer than ``ceil(n / factor)`` of the ``n`` trials at the rung lie in fronts better than
   its own: its whole front counts as the top, which keeps every trial no peer beats on all
   objectives. With fewer than ``min_peers`` trials at the rung the rule has nothing to rank
   against and the trial goes on.

Pure functions of numbers: the caller gathers the peers
(:class:`optuna_energy.trial.stopping.RungPeers`, from :func:`rung_results`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from optuna.trial import FrozenTrial

from optuna_energy.samplers import noisy_non_domination_rank
from optuna_energy.store.record import TrialRecord


@dataclasses.dataclass(frozen=True)
class RungSchedule:
    """Epoch counts at which a trial is evaluated and may be stopped."""

    first_rung: int
    factor: int
    epochs: int
    """Full training; the last rung lies below it."""

    @property
    def rungs(self) -> tuple[int, ...]:
        """``first_rung * factor ** k`` below ``epochs``, e.g. (1, 3) for 1, 3 and 6 epochs."""
        rungs, epoch = [], self.first_rung
        while epoch < self.epochs:
            rungs.append(epoch)
            epoch *= self.factor
        return tuple(rungs)

    @property
    def boundaries(self) -> tuple[int, ...]:
        """Every rung and then full training: where training pauses."""
        return (*self.rungs, self.epochs)


def epochs_text(count: int) -> str:
    """``"1 epoch"``, ``"3 epochs"``: how stop reasons and savings count epochs."""
    return f"{count} epoch{'' if count == 1 else 's'}"


@dataclasses.dataclass(frozen=True)
class Decision:
    go_on: bool
    reason: str | None = None
    """Why the trial stops; ``None`` when it goes on."""


@dataclasses.dataclass(frozen=True)
class Costs:
    """A trial's measured costs before training, one per cost objective (lower is better), each
    with its relative spread (0 or NaN: exact)."""

    values: tuple[float, ...]
    spreads: tuple[float, ...]


def decide(*, accuracy: float, costs: Costs, peers: Sequence[tuple[float, Costs]],
           learned: float, factor: int, min_peers: int, rung: int) -> Decision:
    """Whether a trial at ``rung`` epochs goes on training.

    Args:
        accuracy: The trial's accuracy after ``rung`` epochs.
        costs: Its costs, measured before training, with their spreads.
        peers: ``(accuracy at this rung, costs)`` of the other trials that reached the rung.
        learned: Accuracy a network must reach to have learned anything (the ``learned``
            constraint's threshold: :attr:`optuna_energy.trial.stopping.ChanceLevel.learned_threshold`).
        factor: Keep the best ``1 / factor`` of the trials at the rung.
        min_peers: Trials (this one included) needed at the rung before ranking them.
        rung: Epochs trained, for the reason.
    """
    if accuracy < learned:
        return Decision(False, f"at chance after {epochs_text(rung)}")
    if len(peers) + 1 < min_peers:
        return Decision(True)
    points = [(accuracy, costs), *peers]
    losses = np.array([[1.0 - a, *c.values] for a, c in points], dtype=float)
    spreads = np.array([[0.0, *c.spreads] for _, c in points], dtype=float)
    ranks = noisy_non_domination_rank(losses, spreads)
    ahead = int(np.sum(ranks < ranks[0]))
    if ahead < math.ceil(len(losses) / factor):
        return Decision(True)
    return Decision(False, f"not in the top 1/{factor} of {len(losses)} trials after {epochs_text(rung)}")


def costs_of(stored: TrialRecord, cost_names: Sequence[str]) -> Costs | None:
    """The record's costs with their spreads, in the order of ``cost_names``; ``None`` when a
    cost is not recorded."""
    pairs = [stored.value_with_spread(name) for name in cost_names]
    if any(math.isnan(value) for value, _ in pairs):
        return None
    return Costs(values=tuple(value for value, _ in pairs), spreads=tuple(spread for _, spread in pairs))


def rung_results(trials: Iterable[FrozenTrial], *,
                 cost_names: Sequence[str]) -> Iterator[tuple[int, dict[str, float], Costs]]:
    """``(number, accuracy by rung, costs)`` of each trial in ``trials`` that reached a rung, has
    every cost recorded and counts (not over the budget)."""
    for trial in trials:
        stored = TrialRecord.of(trial)
        costs = costs_of(stored, cost_names)
        if not stored.rung_accuracies or stored.over_budget or costs is None:
            continue
        yield (trial.number, {rung: float(accuracy) for rung, accuracy in stored.rung_accuracies.items()},
               costs)
