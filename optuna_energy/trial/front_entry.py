"""Whether a trained network would enter the Pareto front only on the luck of its measurement.

A cost measured in a few windows can be lucky: a quiet moment of the machine, a counter's step
that fell outside the window. A network whose cost came out a little low may then enter the
study's front and stay there, pushing out a member that is really as cheap. The objective
therefore measures such a network again (``optuna_energy.trial.costs_first.measure_again``)
before its trial ends, and stores the costs pooled over all the windows.

The criterion, cheap and decided before any extra measuring: a trained, feasible network
**enters the front only within its spread** when

* no member of the study's current front dominates its values as measured (it enters), and
* some member dominates them once each measured cost is made worse by its own relative spread
  (``value + spread * |value|``; an exact value, such as accuracy or a count, does not move).

A network that enters by more than its spread, or that a member dominates even with its lucky
values, is not measured again; nor is one without a spread (one window), which gives no margin
to judge by.

The front is that of ``store.ledger.StudyLedger`` (the completed, feasible trials that no other
dominates, by Optuna's dominance on the stored values), kept up to date from a ``TrialFeed``: a
trial reads the trials finished since the last one and compares itself with the front's members
only, so its cost does not grow with the study.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection

from optuna_energy.metrics import METRICS
from optuna_energy.store.ledger import StudyLedger


def enters_within_spread(losses: Sequence[float], spreads: Sequence[float],
                         front: Sequence[Sequence[float]]) -> bool:
    """Whether a point enters ``front`` only by a margin within its spread (the module's rule).

    Args:
        losses: The point's values, lower is better (a maximised objective's negated).
        spreads: Each value's relative spread (0 or NaN: exact).
        front: The members' losses, in the same order.
    """
    if len(front) == 0:
        return False
    point = np.asarray(losses, dtype=float)
    spread = np.nan_to_num(np.asarray(spreads, dtype=float), nan=0.0)
    members = np.asarray(front, dtype=float)
    with np.errstate(invalid="ignore"):  # an infinite value with spread 0 stays as it is
        worse = np.where(spread > 0, point + spread * np.abs(point), point)

    def dominated(losses: np.ndarray) -> bool:
        return bool(np.any(np.all(members <= losses, axis=1) & np.any(members < losses, axis=1)))

    return not dominated(point) and dominated(worse)


def objective_values(fields: Mapping[str, Any], objectives: Sequence[str]) -> tuple[list[float], list[float]]:
    """The objectives' values and relative spreads in trial record ``fields`` (a metric without
    a spread field: 0; a spread not recorded: NaN)."""
    values, spreads = [], []
    for name in objectives:
        entry = METRICS[name]
        values.append(float(fields[entry.field]))
        spread = fields.get(entry.spread_field) if entry.spread_field is not None else 0.0
        spreads.append(math.nan if spread is None else float(spread))
    return values, spreads


class FrontEntry:
    """The study's current Pareto front, read at each question from a ``StudyLedger`` kept
    between trials (the run loop's, or one of its own), and the module's question about a
    trial's values; thread-safe (``study.optimize(n_jobs=...)``)."""

    def __init__(self, ledger: StudyLedger | None = None) -> None:
        self._ledger = ledger
        self._lock = threading.Lock()

    def within_spread(self, trial: optuna.Trial, values: Sequence[float], spreads: Sequence[float]) -> bool:
        """Whether ``trial``, with these values in the study's objective order and their
        relative spreads, would enter the study's front only within its spread."""
        study = trial.study
        with self._lock:
            if self._ledger is None:
                self._ledger = StudyLedger.of(study, save_rebuilt=False)
            else:
                self._ledger.refresh(study)
            front = self._ledger.pareto_front
        losses = [-value if direction == StudyDirection.MAXIMIZE else value
                  for value, direction in zip(values, study.directions, strict=True)]
        return enters_within_spread(losses, spreads, front)
