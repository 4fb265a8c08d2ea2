"""The study's budget ledger: which trials count, what they hold and spent, kept incrementally.

The trial budget, the training budget and the progress bar ask the same questions at every trial
(how many trials count, how many epochs do trials numbered before this one hold, how many joules
were spent, how large is the Pareto front). Answering them by reading every trial costs more the
larger the study. The ledger answers from running totals instead, fed by a :class:`TrialFeed`:

* trials numbered below ``floor`` are all finished and summed up in ``folded``;
* finished trials at or above ``floor`` are kept one by one (a few: those that ended while an
  older trial still ran), and folded in once every trial below them has finished;
* unfinished trials are read again at every refresh, as they are.

Every finished trial is read exactly once, so the totals are exact. The ledger is written on the
study (system attribute ``optuna_energy:ledger``) after each trial, so a worker that joins reads
the totals and then only the trials after them; a missing or unreadable ledger, or one saved in
an older form (:data:`_VERSION`), is rebuilt from the trials.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_energy.samplers._optuna_compat import storage_of, study_id
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.trial_feed import FeedPosition, TrialFeed

LEDGER_ATTR = "optuna_energy:ledger"
"""Study system attribute holding the last saved ledger."""
_VERSION = 2
"""The saved form's version; 2 added the cheapest joules per epoch to each holding."""


def counts(trial: FrozenTrial) -> bool:
    """Whether a trial uses up budget: finished, deliberately failed, running or queued.

    A trial failed by the heartbeat (its worker died) does not count: it is retried.
    """
    stored = TrialRecord.of(trial)
    if stored.over_budget:
        return False
    if trial.state == TrialState.FAIL:
        return stored.failure_reason is not None
    return True


def epochs_held(trial: FrozenTrial, *, full: int) -> int:
    """Epochs of the epoch budget a counted trial holds: a finished trial what it trained, a
    running, queued or part-way failed one what it claimed (``full``: training in full, for
    trials that have not claimed yet or were written before the budget existed)."""
    epochs, in_full = _epochs_held(trial)
    return epochs + in_full * full


def _epochs_held(trial: FrozenTrial) -> tuple[int, int]:
    """:func:`epochs_held` as ``(epochs, 1 if it holds full training else 0)``: what a trial
    holds, whatever full training is."""
    stored = TrialRecord.of(trial)
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        if stored.epochs_trained is not None:
            return stored.epochs_trained, 0
        return (0, 1) if trial.state == TrialState.COMPLETE else (0, 0)
    return (stored.epochs_claimed, 0) if stored.epochs_claimed is not None else (0, 1)


@dataclasses.dataclass(frozen=True)
class Tally:
    """Budget-counted trials of a study by state: finished, running, and waiting in the queue."""

    finished: int
    running: int
    waiting: int

    @property
    def counted(self) -> int:
        return self.finished + self.running + self.waiting


@dataclasses.dataclass(frozen=True)
class Spent:
    """What the study's counted trials trained so far (running ones: rungs finished)."""

    epochs: int
    joules: float
    cheapest_epoch_j: float | None = None
    """The fewest joules per epoch a counted trial trained at (``None``: none trained yet): the
    cheapest first rung the study has seen costs this times the rung's epochs."""


@dataclasses.dataclass(frozen=True)
class _Holding:
    """What counted trials hold of the budgets: trials, epochs held (``held`` plus ``held_full``
    times full training), epochs trained, joules, and the fewest joules per epoch among them."""

    trials: int = 0
    held: int = 0
    held_full: int = 0
    trained: int = 0
    joules: float = 0.0
    cheapest: float | None = None

    @classmethod
    def of(cls, trial: FrozenTrial) -> _Holding:
        if not counts(trial):
            return cls()
        stored = TrialRecord.of(trial)
        held, held_full = _epochs_held(trial)
        trained, joules = stored.epochs_trained or 0, stored.train_energy_j
        return cls(trials=1, held=held, held_full=held_full, trained=trained, joules=joules or 0.0,
                   cheapest=joules / trained if trained and joules is not None else None)

    def __add__(self, other: _Holding) -> _Holding:
        rates = [rate for rate in (self.cheapest, other.cheapest) if rate is not None]
        return _Holding(trials=self.trials + other.trials, held=self.held + other.held,
                        held_full=self.held_full + other.held_full, trained=self.trained + other.trained,
                        joules=self.joules + other.joules, cheapest=min(rates, default=None))


def spent(trials: Iterable[FrozenTrial], *, before: _Holding | None = None) -> Spent:
    """What the counted ones of ``trials`` trained (running ones: rungs finished)."""
    total = sum((_Holding.of(t) for t in trials), before or _Holding())
    return Spent(epochs=total.trained, joules=total.joules, cheapest_epoch_j=total.cheapest)


class StudyLedger:
    """Running totals of one study's budget (see the module docstring); :meth:`refresh` reads
    the trials since the last refresh, and every question is answered from memory."""

    def __init__(self) -> None:
        self._feed = TrialFeed()
        self._floor = 0
        self._folded = _Holding()
        self._finished: dict[int, _Holding] = {}
        self._uncounted: list[int] = []  # numbers of finished trials that do not count
        self._unfinished: list[FrozenTrial] = []
        self._front: dict[int, list[float]] = {}  # Pareto front: number -> losses
        self._next_number = 0
        self.workers: set[str] = set()
        """Workers (``host:pid``) of the trials read since this process started."""

    @classmethod
    def of(cls, study: optuna.Study, *, save_rebuilt: bool = True) -> StudyLedger:
        """The study's ledger as last saved, brought up to date; rebuilt from every trial when
        missing or unreadable, and then saved unless ``save_rebuilt`` is false (a reader)."""
        ledger = cls()
        saved = storage_of(study).get_study_system_attrs(study_id(study)).get(LEDGER_ATTR)
        try:
            ledger._load(saved)
        except ValueError:  # none yet, or unreadable: rebuilt from every trial, once
            ledger = cls()
            ledger.refresh(study)
            if save_rebuilt:
                ledger.save(study)
            return ledger
        ledger.refresh(study)
        return ledger

    def refresh(self, study: optuna.Study) -> None:
        """Read the trials created, or still unfinished, since the last refresh."""
        self.take(self._feed.read(study), directions=study.directions)

    def take(self, trials: Sequence[FrozenTrial], *, directions: Sequence[StudyDirection],
             position: FeedPosition | None = None) -> None:
        """Account for ``trials``, the study's trials new or unfinished since the last ones
        taken; ``position``: the feed's place after them, when they were read some other way
        (a study written in bulk)."""
        if position is not None:
            self._feed = TrialFeed(position)
        maximize = np.array([d == StudyDirection.MAXIMIZE for d in directions])
        unfinished = []
        for trial in trials:
            self._next_number = max(self._next_number, trial.number + 1)
            worker = TrialRecord.of(trial).worker
            if worker is not None:
                self.workers.add(worker)
            if not trial.state.is_finished():
                unfinished.append(trial)
                continue
            self._finished[trial.number] = _Holding.of(trial)
            if not counts(trial):
                self._uncounted.append(trial.number)
            if trial.state == TrialState.COMPLETE and _feasible(trial):
                self._add_to_front(trial, maximize)
        self._unfinished = unfinished
        while self._floor in self._finished:
            self._folded += self._finished.pop(self._floor)
            self._floor += 1

    def save(self, study: optuna.Study) -> None:
        """Write the ledger on the study, for the next worker that joins."""
        storage_of(study).set_study_system_attr(study_id(study), LEDGER_ATTR, self._dump())

    @property
    def running(self) -> list[FrozenTrial]:
        """The trials that were running at the last refresh."""
        return [t for t in self._unfinished if t.state == TrialState.RUNNING]

    @property
    def n_trials(self) -> int:
        """How many trials the study had at the last refresh (numbers run from 0)."""
        return self._next_number

    @property
    def pareto_front_size(self) -> int:
        """How many completed, feasible trials no other one dominates (``study.best_trials``)."""
        return len(self._front)

    @property
    def pareto_front(self) -> list[tuple[float, ...]]:
        """The values of those trials as losses (lower is better: a maximised objective's value
        negated), in the study's objective order."""
        return [tuple(losses) for losses in self._front.values()]

    def tally(self) -> Tally:
        counted = [t for t in self._unfinished if counts(t)]
        running = sum(t.state == TrialState.RUNNING for t in counted)
        finished = self._folded.trials + sum(h.trials for h in self._finished.values())
        return Tally(finished=finished, running=running, waiting=len(counted) - running)

    def counted_before(self, number: int) -> int:
        """Counted trials numbered below ``number`` (which must not exceed :attr:`n_trials`)."""
        uncounted = sum(n < number for n in self._uncounted) + sum(
            t.number < number and not counts(t) for t in self._unfinished)
        return number - uncounted

    def epochs_held_before(self, number: int, *, full: int) -> int:
        """Epochs that counted trials numbered below ``number`` hold of an epoch budget, where
        training in full is ``full`` epochs. ``number`` is at least that of every finished trial
        folded into the totals: an unfinished trial's, or the next new one's."""
        if number < self._floor:
            raise ValueError(f"trial {number} is below {self._floor}, where every trial has "
                             "finished: only an unfinished or a new trial claims epochs")
        finished = sum((h for n, h in self._finished.items() if n < number), self._folded)
        return finished.held + finished.held_full * full + sum(
            epochs_held(t, full=full) for t in self._unfinished if t.number < number and counts(t))

    def spent(self) -> Spent:
        """What every counted trial trained so far (running ones: the rungs they finished)."""
        finished = self._folded + sum(self._finished.values(), _Holding())
        return spent(self._unfinished, before=finished)

    def _add_to_front(self, trial: FrozenTrial, maximize: np.ndarray) -> None:
        losses = np.where(maximize, -np.asarray(trial.values, dtype=float),
                          np.asarray(trial.values, dtype=float))
        for number, other in list(self._front.items()):
            other_losses = np.asarray(other)
            if np.all(other_losses <= losses) and np.any(other_losses < losses):
                return  # dominated: nothing it would displace either (dominance is transitive)
            if np.all(losses <= other_losses) and np.any(losses < other_losses):
                del self._front[number]
        self._front[trial.number] = losses.tolist()

    def _dump(self) -> dict[str, Any]:
        return {"version": _VERSION, "position": self._feed.position.to_json(), "floor": self._floor,
                "folded": dataclasses.astuple(self._folded),
                "finished": [[n, *dataclasses.astuple(h)] for n, h in self._finished.items()],
                "uncounted": self._uncounted, "next_number": self._next_number,
                "front": [[n, *losses] for n, losses in self._front.items()]}

    def _load(self, saved: Any) -> None:
        if not isinstance(saved, dict) or saved.get("version") != _VERSION:
            raise ValueError("a ledger of another version")
        try:
            self._feed = TrialFeed(FeedPosition.from_json(saved["position"]))
            self._floor = int(saved["floor"])
            self._folded = _Holding(*saved["folded"])
            self._finished = {int(n): _Holding(*rest) for n, *rest in saved["finished"]}
            self._uncounted = [int(n) for n in saved["uncounted"]]
            self._next_number = int(saved["next_number"])
            self._front = {int(n): [float(v) for v in losses] for n, *losses in saved["front"]}
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"unreadable ledger: {error}") from error


def _feasible(trial: FrozenTrial) -> bool:
    """Whether a trial meets its constraints, as Optuna's ``best_trials`` decides it."""
    return all(value <= 0.0 for value in trial.constraints.values())
