"""The rung decision of a running trial: record its accuracy at a rung, rank it against the peers
the storage holds now, and say whether it goes on.

The stop rule itself is pure (:func:`optuna_energy.trial.rungs.decide`); this is the piece that
connects it to a trial and its study, for the built-in pipeline and for any training loop that
reports its accuracy at the rungs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import optuna

from optuna_energy.data import DeviceData
from optuna_energy.store import record
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.trial_feed import TrialFeed
from optuna_energy.trial.rungs import Costs, Decision, RungSchedule, costs_of, decide, rung_results

LEARNED = "learned"
"""The constraint every trial carries: its accuracy must beat always answering the most frequent
class with :data:`LEARNED_CONFIDENCE` (:class:`ChanceLevel`). A model that does not is no
trade-off at any budget, and without the constraint the cheapest chance-level networks fill every
Pareto front and every sampler's idea of a good trial."""

LEARNED_CONFIDENCE = 0.999
"""Confidence with which a network's evaluation accuracy must beat always answering the most
frequent class for it to count as having learned anything (the ``learned`` constraint)."""


@dataclasses.dataclass(frozen=True)
class ChanceLevel:
    """What a network scores on an evaluation set by learning nothing, and how sure a score above
    it is: the inputs of the ``learned`` rule, recorded on every trial (``chance_accuracy``,
    ``eval_images``) so a reader judges old trials by today's rule."""

    accuracy: float
    """Evaluation accuracy of always answering the most frequent class."""
    eval_images: int

    @classmethod
    def of(cls, data: DeviceData) -> ChanceLevel:
        return cls(accuracy=data.chance_accuracy, eval_images=len(data.eval_y))

    @property
    def learned_threshold(self) -> float:
        """The lowest accuracy a network that learned something reaches: the smallest ``k / n``
        (``n`` evaluation images) that a one-sided binomial test rejects "no better than
        :attr:`accuracy`" at :data:`LEARNED_CONFIDENCE`. Networks that answer one or two classes
        score up to a few points above chance on a few hundred images (docs/energy.md); this
        threshold (57 of the 360 digits images, 15.8 %; chance 10.3 %) lies above them."""
        return _binomial_threshold(self.accuracy, self.eval_images)


@functools.lru_cache(maxsize=64)
def _binomial_threshold(chance: float, images: int) -> float:
    from scipy.stats import binom  # only where a threshold is computed: it takes a while to import

    # isf: the largest count k with P(X > k) > 1 - confidence; one image more passes the test.
    return (float(binom.isf(1 - LEARNED_CONFIDENCE, images, chance)) + 1) / images


MAX_PEERS = 1000
"""The latest trials at a rung that a trial is ranked against. Ranking against every trial that
ever reached the rung would cost more with every trial (a 100,000-trial study ranks 100,000
points per decision); the latest thousand estimate the same top ``1 / factor`` of a search that
only improves, and a trial that beats them would have beaten the older ones too."""


class RungPeers:
    """``(accuracy, costs)`` of the trials at each rung, the costs with their spreads, kept up to
    date from the trials stored since the last look (a
    :class:`~optuna_energy.store.trial_feed.TrialFeed`), so a decision reads only what changed,
    never the whole study."""

    def __init__(self, cost_names: Sequence[str]) -> None:
        self.cost_names = tuple(cost_names)
        self.feed = TrialFeed()
        self.at_rung: dict[str, dict[int, tuple[float, Costs]]] = {}

    def of(self, study: optuna.Study, *, rung: int, exclude: int) -> list[tuple[float, Costs]]:
        """The latest :data:`MAX_PEERS` trials but ``exclude`` that reached ``rung``, in any state:
        a rung is decided by what is known now."""
        for number, accuracies, costs in rung_results(self.feed.read(study), cost_names=self.cost_names):
            for at, accuracy in accuracies.items():
                self.at_rung.setdefault(at, {})[number] = (accuracy, costs)
        reached = self.at_rung.get(str(rung), {})
        latest = sorted((number for number in reached if number != exclude), reverse=True)[:MAX_PEERS]
        return [reached[number] for number in latest]


class RungStopper:
    """Decides at every rung of ``schedule`` whether a trial trains on (see ``rungs``).

    ``cost_names`` are the study's cost objectives: a trial's own costs and their spreads are
    read from its record (measured before training) unless the caller passes them.
    One stopper serves every trial of a process: it keeps the rungs' peers between trials.
    """

    def __init__(self, *, schedule: RungSchedule, learned: float, min_peers: int,
                 cost_names: Sequence[str]) -> None:
        self.schedule = schedule
        self.learned = learned
        """Accuracy a network must reach to have learned anything."""
        self.min_peers = min_peers
        self.cost_names = tuple(cost_names)
        self.peers = RungPeers(self.cost_names)

    def check(self, trial: optuna.Trial, *, rung: int, accuracy: float,
              costs: Costs | None = None) -> Decision:
        """Record ``accuracy`` as the trial's accuracy at ``rung`` and decide whether it goes on.

        Raises:
            ValueError: ``rung`` is not a rung of the schedule, or the trial has no recorded
                value for a cost and none was passed.
        """
        if rung not in self.schedule.rungs:
            raise ValueError(f"{rung} is not a rung of {self.schedule.rungs}")
        stored = TrialRecord.of(trial)
        costs = costs or costs_of(stored, self.cost_names)
        if costs is None:
            missing = [name for name in self.cost_names if math.isnan(stored.value(name))]
            raise ValueError(f"trial {trial.number} has no {', '.join(missing)} recorded: "
                             "measure its costs before training or pass costs=")
        record.write(trial, rung_accuracies={**(stored.rung_accuracies or {}), str(rung): accuracy})
        peers = self.peers.of(trial.study, rung=rung, exclude=trial.number)
        return decide(accuracy=accuracy, costs=costs, peers=peers, learned=self.learned,
                      factor=self.schedule.factor, min_peers=self.min_peers, rung=rung)
