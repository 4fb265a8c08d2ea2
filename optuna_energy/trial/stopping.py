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
import threading
from collections.abc import Sequence

import optuna

from optuna_energy.compose import study_objectives
from optuna_energy.data import DeviceData
from optuna_energy.metrics import ACCURACY, METRICS
from optuna_energy.store import record
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.training_budget import TrainingBudget
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


class EarlyStopper:
    """Multi-objective early stopping for any Optuna study, single- or multi-objective.

    Optuna's pruners read ``trial.report``, which a multi-objective study refuses; this stopper
    asks instead. Call :meth:`should_stop` after each epoch of your training loop: at a rung
    (``first_rung``, then ``factor`` times further, below ``epochs``) it records the trial's
    accuracy, ranks it with its costs against the trials that reached the rung (the stop rule of
    :mod:`optuna_energy.trial.rungs`: at chance, or outside the top ``1 / factor`` by
    non-dominated rank of accuracy and costs), and says whether to stop; at any other epoch it
    says no at once. The costs are the trial's recorded values of the study's cost objectives
    (measured before training by :func:`optuna_energy.measure_costs_first`), or those passed.

    With a training budget (``max_train_epochs``, ``max_train_energy``: the study's, over every
    trial, thread and process), :meth:`claim` tells a trial how many epochs it may train, and
    :meth:`should_stop` also stops a trial whose next rung the budget cannot pay.

    Peers are read from the study incrementally (the trials since the last decision, at most
    :data:`MAX_PEERS` per rung), so any sampler, ``study.optimize(n_jobs=...)`` and any number of
    processes on one storage share the rungs. Make one stopper per study and process, before
    ``study.optimize``; the built-in objective uses one too. What it records (rung accuracies,
    epochs trained, stop reason) is what ``optuna-energy report`` counts in its savings line.

    Args:
        epochs: Full training, in epochs.
        first_rung: Epochs before the first decision.
        factor: Rung spacing, and the share ``1 / factor`` of the trials at a rung that go on.
        min_peers: Trials at a rung (the deciding one included) before ranking; fewer: go on.
        chance_accuracy: Evaluation accuracy of always answering the most frequent class. With
            ``eval_images``, a trial not above it with 99.9 % confidence stops at its first rung
            (the ``learned`` rule); without them there is no chance rule.
        eval_images: Size of the evaluation set the accuracies are measured on.
        objectives: The study's objectives by registry name; ``None``: its metric names
            (:func:`optuna_energy.create_study`). Every one but ``accuracy`` is a cost.
        max_train_epochs: Training epochs the whole study may spend (exact across workers).
        max_train_energy: Training joules the whole study may spend (checked before each rung).

    Raises:
        ValueError: A bad argument, naming it.

    Example:
        >>> stopper = optuna_energy.EarlyStopper(epochs=9, chance_accuracy=0.1, eval_images=400)
        >>> def objective(trial):
        ...     ...
        ...     for epoch in range(1, stopper.claim(trial) + 1):
        ...         accuracy = train_one_epoch_and_evaluate(model)
        ...         if stopper.should_stop(trial, epoch=epoch, accuracy=accuracy):
        ...             raise optuna.TrialPruned()
    """

    def __init__(self, *, epochs: int, first_rung: int = 1, factor: int = 3, min_peers: int = 3,
                 chance_accuracy: float | None = None, eval_images: int | None = None,
                 objectives: Sequence[str] | None = None, max_train_epochs: int | None = None,
                 max_train_energy: float | None = None) -> None:
        for name, value, least in (("epochs", epochs, 1), ("first_rung", first_rung, 1),
                                   ("factor", factor, 2), ("min_peers", min_peers, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if (chance_accuracy is None) != (eval_images is None):
            raise ValueError("chance_accuracy and eval_images go together: give both or neither")
        if chance_accuracy is not None and not (isinstance(chance_accuracy, (int, float))
                                                and 0 <= chance_accuracy < 1):
            raise ValueError(f"chance_accuracy must be a fraction in [0, 1), got {chance_accuracy!r}")
        if eval_images is not None and (isinstance(eval_images, bool) or not isinstance(eval_images, int)
                                        or eval_images < 1):
            raise ValueError(f"eval_images must be an integer >= 1, got {eval_images!r}")
        if max_train_epochs is not None and (isinstance(max_train_epochs, bool)
                                             or not isinstance(max_train_epochs, int) or max_train_epochs < 1):
            raise ValueError(f"max_train_epochs must be an integer >= 1, got {max_train_epochs!r}")
        if max_train_energy is not None and (isinstance(max_train_energy, bool) or not isinstance(
                max_train_energy, (int, float)) or not max_train_energy > 0):
            raise ValueError(f"max_train_energy must be a number of joules > 0, got {max_train_energy!r}")
        self.schedule = RungSchedule(first_rung=first_rung, factor=factor, epochs=epochs)
        self.chance = (None if chance_accuracy is None or eval_images is None
                       else ChanceLevel(accuracy=float(chance_accuracy), eval_images=eval_images))
        self.learned = self.chance.learned_threshold if self.chance else 0.0
        """Accuracy a network must reach to have learned anything (0: no chance rule)."""
        self.min_peers = min_peers
        self.objectives = None if objectives is None else _cost_objectives(objectives)
        self.budget = (TrainingBudget(max_epochs=max_train_epochs, max_joules=max_train_energy,
                                      boundaries=self.schedule.boundaries)
                       if max_train_epochs is not None or max_train_energy is not None else None)
        """The study's training budget; ``None`` without a limit on training."""
        self._peers: dict[str, RungPeers] = {}
        # study.optimize(n_jobs=...) runs trials in threads: one feed read at a time.
        self._lock = threading.Lock()

    def claim(self, trial: optuna.Trial) -> int:
        """The epochs ``trial`` may train: full training, or under a training budget as many
        rungs as the epochs left fit (recorded as ``epochs_claimed``; exact across workers).

        Raises:
            optuna.TrialPruned: Not even the first rung fits (the epochs left, or the joules left
                for the cheapest first rung the study has seen): the trial is over budget and
                does not count (recorded as ``over_budget``).
        """
        self._note_full_epochs(trial.study)
        return self.budget.claim(trial) if self.budget is not None else self.schedule.epochs

    def should_stop(self, trial: optuna.Trial, *, epoch: int, accuracy: float,
                    costs: Sequence[float] | None = None, train_energy_j: float | None = None) -> bool:
        """Whether ``trial`` stops after ``epoch`` epochs; ``False`` at once between rungs.

        At a rung: records ``accuracy`` (``rung_accuracies``), ``epoch`` (``epochs_trained``)
        and ``train_energy_j`` if given, then decides (see :meth:`decide`); a stopped trial's
        reason is recorded as ``stop_reason``. Raise ``optuna.TrialPruned`` when it says so.

        Args:
            trial: The running trial.
            epoch: Epochs trained so far (1 after the first).
            accuracy: Evaluation accuracy after them (0 to 1).
            costs: The trial's costs, one per cost objective in the study's order; ``None``:
                read from the trial's record (``measure_costs_first``).
            train_energy_j: Joules this trial spent training so far: recorded for the report's
                savings line and checked against ``max_train_energy``.

        Raises:
            ValueError: A bad argument, or no recorded value of a cost and none passed.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ValueError(f"epoch must be an integer >= 1 (epochs trained), got {epoch!r}")
        if epoch not in self.schedule.rungs:
            return False
        return not self.decide(trial, rung=epoch, accuracy=accuracy, costs=costs,
                               train_energy_j=train_energy_j).go_on

    def decide(self, trial: optuna.Trial, *, rung: int, accuracy: float,
               costs: Sequence[float] | None = None, train_energy_j: float | None = None) -> Decision:
        """:meth:`should_stop` at a rung, with the reason: the stop rule, then the budget.

        Raises:
            ValueError: ``rung`` is not a rung, a bad ``accuracy``, or the trial has no recorded
                value for a cost and none was passed.
        """
        if rung not in self.schedule.rungs:
            raise ValueError(f"{rung} is not a rung of {self.schedule.rungs}")
        if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not 0 <= accuracy <= 1:
            raise ValueError(f"accuracy must be a fraction between 0 and 1, got {accuracy!r}")
        study = trial.study
        self._note_full_epochs(study)
        names = self._cost_names(study)
        stored = TrialRecord.of(trial)
        if costs is not None:
            if len(costs) != len(names):
                raise ValueError(f"costs must hold {len(names)} values ({', '.join(names)}), got {len(costs)}")
            # Recorded, so that the trials deciding after this one rank against them too.
            record.write(trial, **{METRICS[name].field: float(cost) for name, cost in zip(names, costs)})
            stored = TrialRecord.of(trial)
        own = costs_of(stored, names)
        if own is None:
            missing = [METRICS[name].field for name in names if math.isnan(stored.value(name))]
            raise ValueError(f"trial {trial.number} has no {', '.join(missing)} recorded: "
                             "measure its costs before training (measure_costs_first) or pass costs=")
        spent = {} if train_energy_j is None else {"train_energy_j": float(train_energy_j)}
        chance = ({} if self.chance is None or stored.chance_accuracy is not None else
                  {"chance_accuracy": self.chance.accuracy, "eval_images": self.chance.eval_images})
        record.write(trial, rung_accuracies={**(stored.rung_accuracies or {}), str(rung): float(accuracy)},
                     epochs_trained=rung, **spent, **chance)
        with self._lock:
            peers = self._peers[study.study_name].of(study, rung=rung, exclude=trial.number)
        decision = decide(accuracy=float(accuracy), costs=own, peers=peers,
                          learned=self.learned, factor=self.schedule.factor, min_peers=self.min_peers,
                          rung=rung)
        if decision.go_on:
            decision = self._affordable(trial, stored, rung=rung, train_energy_j=train_energy_j)
        if not decision.go_on:
            record.write(trial, stop_reason=decision.reason)
        return decision

    def _affordable(self, trial: optuna.Trial, stored: TrialRecord, *, rung: int,
                    train_energy_j: float | None) -> Decision:
        """Whether the budget pays the stretch from ``rung`` to the next boundary."""
        following = self.schedule.boundaries[self.schedule.boundaries.index(rung) + 1]
        if stored.epochs_claimed is not None and following > stored.epochs_claimed:
            return Decision(False, "training epoch budget used")
        if self.budget is not None and train_energy_j is not None and self.budget.short_of_joules(
                trial.study, train_energy_j / rung * (following - rung)):
            return Decision(False, "training energy budget used")
        return Decision(True)

    def _cost_names(self, study: optuna.Study) -> tuple[str, ...]:
        return self.objectives if self.objectives is not None else _cost_objectives(study_objectives(study))

    def _note_full_epochs(self, study: optuna.Study) -> None:
        """Tell the study's savings line what full training is, and keep the study's rung peers
        (once per study and stopper)."""
        with self._lock:
            if study.study_name in self._peers:
                return
            self._peers[study.study_name] = RungPeers(self._cost_names(study))
        record.store_full_epochs(study, self.schedule.epochs)


def _cost_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    names = [objectives] if isinstance(objectives, str) else list(objectives)
    unknown = [name for name in names if name not in METRICS]
    if unknown or ACCURACY not in names:
        raise ValueError(f"objectives must be registry names ({', '.join(METRICS)}) with accuracy among "
                         f"them, got {names}")
    return tuple(name for name in names if name != ACCURACY)
