"""The rung decision of a running trial: record its accuracy at a rung, rank it against the peers
the storage holds now, and say whether it goes on.

The stop rule itself is pure (:func:`optuna_energy.trial.rungs.decide`); this is the piece that
connects it to a trial and its study, for the built-in pipeline and for any training loop that
reports its accuracy at the rungs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import optuna

from optuna_energy.data import DeviceData
from optuna_energy.store import record
from optuna_energy.store.record import TrialRecord
from optuna_energy.trial.rungs import Decision, RungSchedule, decide, rung_peers


def learned_threshold(data: DeviceData) -> float:
    """The accuracy of always answering the most frequent class, plus one evaluation image."""
    return data.chance_accuracy + 1 / len(data.eval_y)


@dataclasses.dataclass(frozen=True)
class RungStopper:
    """Decides at every rung of ``schedule`` whether a trial trains on (see ``rungs``).

    ``cost_fields`` are the trial record fields of the study's cost objectives: a trial's own
    costs are read from its record (measured before training) unless the caller passes them.
    """

    schedule: RungSchedule
    learned: float
    """Accuracy a network must reach to have learned anything."""
    min_peers: int
    cost_fields: tuple[str, ...]

    def check(self, trial: optuna.Trial, *, rung: int, accuracy: float,
              costs: Sequence[float] | None = None) -> Decision:
        """Record ``accuracy`` as the trial's accuracy at ``rung`` and decide whether it goes on.

        Raises:
            ValueError: ``rung`` is not a rung of the schedule, or the trial has no recorded
                value for a cost and none was passed.
        """
        if rung not in self.schedule.rungs:
            raise ValueError(f"{rung} is not a rung of {self.schedule.rungs}")
        stored = TrialRecord.of(trial)
        if costs is None:
            costs = [getattr(stored, field) for field in self.cost_fields]
            missing = [field for field, cost in zip(self.cost_fields, costs) if cost is None]
            if missing:
                raise ValueError(f"trial {trial.number} has no {', '.join(missing)} recorded: "
                                 "measure its costs before training or pass costs=")
        record.write(trial, rung_accuracies={**(stored.rung_accuracies or {}), str(rung): accuracy})
        peers = rung_peers(trial.study.get_trials(deepcopy=False), rung=rung, exclude=trial.number,
                           cost_fields=self.cost_fields)
        return decide(accuracy=accuracy, costs=[float(cost) for cost in costs], peers=peers,
                      learned=self.learned, factor=self.schedule.factor, min_peers=self.min_peers,
                      rung=rung)
