"""A network that would enter the Pareto front only within its spread is measured again, its new
windows pooled with the first ones; every other network keeps its first measurement."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from optuna.trial import TrialState, create_trial

from optuna_energy import study as study_module
from optuna_energy.config import ConfigError, load_config
from optuna_energy.host.meters import EnergyWindow, EstimateMeter, Work
from optuna_energy.measuring.statistic import relative_spread
from optuna_energy.store.record import TrialRecord
from optuna_energy.study import create_or_load_study, optimize_study
from optuna_energy.trial import objective as objective_module
from optuna_energy.trial.early_stopping import RungTraining
from optuna_energy.trial.front_entry import enters_within_spread
from tests.helpers import tiny_config

# Losses (lower is better): negated accuracy, then a cost.
MEMBER = (-0.9, 1.0)


@pytest.mark.parametrize(("losses", "spreads", "within"), [
    ((-0.9, 0.95), (0, 0.1), True),    # as accurate, cheaper by 5 %: within its 10 % spread
    ((-0.95, 0.95), (0, 0.1), False),  # more accurate too: enters whatever its cost
    ((-0.9, 0.8), (0, 0.1), False),    # cheaper by 20 %, beyond its spread
    ((-0.9, 0.95), (0, 0.0), False),   # no spread, no margin to judge by
    ((-0.9, 0.95), (0, math.nan), False),  # one window: no spread either
    ((-0.8, 1.1), (0, 0.5), False),    # dominated as measured: it does not enter at all
])
def test_a_point_enters_within_its_spread_only_if_its_worse_self_is_dominated(losses, spreads, within):
    assert enters_within_spread(losses, spreads, [MEMBER]) is within


def test_nothing_enters_an_empty_front_within_its_spread():
    assert not enters_within_spread([-0.5, 1.0], [0.0, 0.3], [])


@given(st.lists(st.tuples(st.floats(-1, 0), st.floats(0.1, 10)), min_size=1, max_size=8),
       st.floats(-1, 0), st.floats(0.1, 10), st.floats(0, 1))
def test_within_spread_means_not_dominated_now_and_dominated_at_the_worse_end(front, accuracy, cost, spread):
    members = np.asarray(front)
    worse = cost * (1 + spread)

    def dominated(point: tuple[float, float]) -> bool:
        return any(np.all(m <= point) and np.any(m < point) for m in members)

    expected = not dominated((accuracy, cost)) and dominated((accuracy, worse))
    assert enters_within_spread([accuracy, cost], [0.0, spread], front) is expected


class LuckyFirstMeter(EstimateMeter):
    """Counts, window by window, the joules per image it is given: a lucky first run (low),
    then the truth."""

    def __init__(self, per_image: list[float]) -> None:
        super().__init__()
        self.per_image = per_image
        self.windows = 0

    def end_window(self, name: str, *, work: Work | None = None) -> EnergyWindow:
        window = super().end_window(name, work=work)
        assert work is not None and name == "inference"  # training is stood in for below
        joules = self.per_image[min(self.windows, len(self.per_image) - 1)] * work.images
        self.windows += 1
        return EnergyWindow(seconds=window.seconds, joules=joules)


LUCKY = [0.80, 0.85, 0.90]
TRUTH = 1.0


@pytest.mark.parametrize(("member_energy", "remeasure_windows", "measured_again"), [
    (0.9, 6, True),    # cheaper than the member only within its spread: measured again
    (0.9, 0, False),   # ... unless measuring again is turned off
    (0.5, 6, False),   # the member dominates it: it does not enter
    (2.0, 6, False),   # cheaper beyond its spread: it enters, as measured
])
def test_a_lucky_entrant_is_measured_again_and_its_stored_value_moves_to_the_truth(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, member_energy: float, remeasure_windows: int,
        measured_again: bool) -> None:
    config = load_config({**tiny_config(tmp_path, n_trials=2, objectives=["accuracy", "energy"],
                                        keep_weights=False),
                          "measure": {"min_window_seconds": 1e-6, "idle_seconds": 0.0, "warmup_batches": 0,
                                      "meter": "estimate", "windows": len(LUCKY),
                                      "remeasure_windows": remeasure_windows}})
    meter = LuckyFirstMeter(LUCKY + [TRUTH] * 6)
    monkeypatch.setattr(study_module, "open_meter", lambda *args, **kwargs: meter)
    # As accurate as the front's member, whatever it trained to.
    monkeypatch.setattr(objective_module, "train_in_rungs", lambda *args, **kwargs: RungTraining(
        epochs=1, joules=1.0, window_seconds=0.1, seconds=0.1, accuracy=0.9, stop_reason=None))
    study = create_or_load_study(config)
    study.add_trial(create_trial(values=[0.9, member_energy]))
    optimize_study(study, config)

    trial = study.trials[1]
    stored = TrialRecord.of(trial)
    lucky = float(np.mean(LUCKY))  # one pass per window, of equal images
    assert trial.state == TrialState.COMPLETE and stored.feasible
    if measured_again:
        assert meter.windows == 9 and stored.measure_windows == 9 and stored.remeasured_windows == 6
        pooled = float(np.mean(LUCKY + [TRUTH] * 6))
        assert stored.energy_per_inference_j == pytest.approx(pooled)
        assert abs(pooled - TRUTH) < abs(lucky - TRUTH)
        assert stored.energy_spread == pytest.approx(relative_spread(LUCKY + [TRUTH] * 6))
        assert trial.values[1] == stored.energy_per_inference_j
        assert len(stored.measure_conditions["load_1min"]) == 2  # one reading per run
        # Measured as it is, it no longer pushes onto the front beside the member.
        assert [t.number for t in study.best_trials] == [0]
    else:
        assert meter.windows == 3 and stored.measure_windows == 3 and stored.remeasured_windows is None
        assert stored.energy_per_inference_j == pytest.approx(lucky)


@pytest.mark.parametrize("value", [-1, 101])
def test_remeasure_windows_out_of_range_is_a_one_line_error(tmp_path: Path, value: int) -> None:
    with pytest.raises(ConfigError, match=rf"^\[measure\] remeasure_windows must be >= 0 and <= 100, got {value}$"):
        load_config({**tiny_config(tmp_path), "measure": {"remeasure_windows": value}})
