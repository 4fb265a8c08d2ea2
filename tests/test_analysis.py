"""Analysis on hand-made trials whose answers are worked out by hand in the comments."""

from __future__ import annotations

import math
import warnings

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState, create_trial

from optuna_energy.reading.analysis import (
    AnalysisError,
    TradeOffWeights,
    highlight,
    highlights,
    hypervolume_history,
    metric_values,
    model_labels,
    pareto_front,
    pareto_mask,
    pareto_trials,
    payback,
    roles,
    usable_trials,
)

DIRECTIONS = {"accuracy": "maximize", "inference_time": "minimize", "params": "minimize",
              "energy": "minimize"}

# accuracy, params, energy per inference (J), training energy (J). Normalised over the usable
# trials (0-4): accuracy shortfall / 0.8, params / 1000, energy / 5e-3.
POINTS = [
    (0.50, 100, 2.0e-3, 10.0),   # shortfall .625, params .1, energy .4
    (0.90, 1000, 5.0e-3, 20.0),  # most accurate: shortfall .125, params 1, energy 1
    (0.80, 300, 1.5e-3, 30.0),   # best trade-off: shortfall .25, params .3, energy .3
    (0.20, 10, 1.0e-3, 0.0),     # lowest params and energy: shortfall 1
    (0.45, 200, 3.0e-3, 0.0),    # dominated by trial 0 on every metric
]
INFEASIBLE = (0.99, 1, 1.0e-4, 40.0)  # would dominate everything, but breaks a constraint


def named_study(objectives):
    study = optuna.create_study(directions=[DIRECTIONS[name] for name in objectives])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(objectives))
    return study


def make_study(objectives=("accuracy", "params"), points=POINTS, infeasible=INFEASIBLE):
    study = named_study(objectives)
    rows = [(point, -1.0) for point in points] + ([(infeasible, 5.0)] if infeasible else [])
    for (accuracy, params, energy, train), violation in rows:
        attrs = {"accuracy": accuracy, "params": params, "energy_per_inference_j": energy,
                 "inference_time_s": params / 1e4, "train_energy_j": train, "energy_source": "estimate"}
        study.add_trial(create_trial(
            values=[{"accuracy": accuracy, "params": params, "energy": energy,
                     "inference_time": params / 1e4}[name] for name in objectives],
            user_attrs=attrs, system_attrs={"constraints:params": violation}))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"failure_reason": "out of memory"}))
    return study


def numbers(trials):
    return [trial.number for trial in trials]


def test_usable_trials_leave_out_infeasible_and_failed_ones():
    study = make_study()
    assert numbers(usable_trials(study)) == [0, 1, 2, 3, 4]


def test_pareto_front_over_all_objectives_and_over_a_pair():
    study = make_study(objectives=("accuracy", "params", "energy"))
    assert numbers(pareto_front(study)) == [0, 1, 2, 3]
    assert numbers(pareto_front(study, ["accuracy", "params"])) == [0, 1, 2, 3]
    # Energy is not an objective of this study but every trial records it; on that pair
    # trial 2 (more accurate, less energy) dominates trial 0.
    assert numbers(pareto_front(make_study(), ["accuracy", "energy"])) == [1, 2, 3]


def noisy_study(newcomer_time: float):
    """A front member (trial 0: 90 %, 10 ms with a 20 % spread) and a newcomer (trial 1: 85 %)
    whose inference time differs from the member's by less than that spread."""
    study = named_study(("accuracy", "inference_time"))
    for accuracy, seconds, spread in ((0.90, 0.010, 0.2), (0.85, newcomer_time, 0.1)):
        study.add_trial(create_trial(values=[accuracy, seconds], user_attrs={
            "accuracy": accuracy, "inference_time_s": seconds, "inference_time_spread": spread,
            "params": 100, "energy_per_inference_j": 1e-3}))
    return study


@pytest.mark.parametrize("newcomer_time", [0.0095, 0.0100, 0.0110])
def test_a_trial_faster_only_within_the_noise_does_not_enter_the_front(newcomer_time):
    study = noisy_study(newcomer_time)
    assert numbers(pareto_front(study)) == [0]
    assert numbers(pareto_trials(study)) == [0]
    assert numbers(pareto_front(study, ["accuracy", "params"])) == [0]  # params: exact


def test_a_trial_faster_beyond_the_noise_enters_the_front_and_no_spread_is_pareto_dominance():
    assert numbers(pareto_front(noisy_study(0.005))) == [0, 1]
    assert pareto_mask([[0.10, 0.010], [0.15, 0.0095]]).tolist() == [True, True]  # no spreads


def test_pareto_mask_keeps_ties_and_drops_dominated_rows():
    assert pareto_mask([[1, 1], [1, 1], [2, 2], [0, 3]]).tolist() == [True, True, False, True]


def test_highlight_picks_lowest_cost_most_accurate_and_best_trade_off():
    study = make_study()
    chosen = highlight(usable_trials(study), "params", study.metric_names)
    assert (chosen.lowest_cost.number, chosen.most_accurate.number, chosen.best_trade_off.number) == (3, 1, 2)


@pytest.mark.parametrize(("weights", "expected"), [
    # distance = sqrt(wa * shortfall^2 + wc * params^2), normalised values from POINTS
    (TradeOffWeights(), 2),                            # t2: .39 beats t0: .63
    (TradeOffWeights(accuracy=0.1, cost=1.0), 0),      # t0: sqrt(.039 + .01) = .22 beats t2: .31
    (TradeOffWeights(accuracy=1.0, cost=0.0), 1),      # accuracy alone: the most accurate
    (TradeOffWeights(accuracy=0.0, cost=1.0), 3),      # cost alone: the cheapest
])
def test_weights_move_the_best_trade_off(weights, expected):
    study = make_study()
    chosen = highlight(usable_trials(study), "params", study.metric_names, weights=weights)
    assert chosen.best_trade_off.number == expected


def test_weights_must_be_non_negative_and_not_both_zero():
    with pytest.raises(AnalysisError, match="weights"):
        TradeOffWeights(accuracy=0.0, cost=0.0)
    with pytest.raises(AnalysisError, match="weights"):
        TradeOffWeights(accuracy=-1.0)


def test_highlights_follow_the_study_costs_and_labels_follow_the_paper():
    study = make_study(objectives=("accuracy", "params", "energy"))
    selected = highlights(study)
    assert [item.cost for item in selected] == ["params", "energy"]
    # Trade-off, most accurate, lowest cost, per cost in order; each trial labelled once.
    assert model_labels(selected) == {2: "A", 1: "B", 3: "C"}
    assert roles(selected)[3] == "lowest: params, energy"


def test_labels_go_past_z():
    from optuna_energy.reading.analysis import _letter

    assert [_letter(i) for i in (0, 25, 26, 27, 52)] == ["A", "Z", "AA", "AB", "BA"]


def test_payback_arithmetic():
    result = payback(make_study())
    # Training energy of every trial that recorded it, the infeasible one included.
    assert result.search_energy_j == pytest.approx(100.0)
    assert (result.most_accurate.number, result.best_trade_off.number) == (1, 2)
    assert result.saved_per_inference_j == pytest.approx(5.0e-3 - 1.5e-3)
    assert result.inferences == pytest.approx(100.0 / 3.5e-3)
    assert result.energy_sources == ("estimate",)


def test_payback_is_none_when_the_most_accurate_is_the_trade_off():
    study = make_study(points=[(0.9, 10, 1e-3, 5.0), (0.5, 20, 2e-3, 5.0)], infeasible=None)
    assert payback(study).inferences is None


def test_hypervolume_history_on_two_points():
    # The sampler's normalisation: error min-max over .1-.5 (t0 1, t1 0), log10 params over
    # 2-3 (t0 0, t1 1, t2 .301); reference 1.1 on both axes.
    study = make_study(points=[(0.5, 100, 1e-3, 0.0), (0.9, 1000, 1e-3, 0.0), (0.5, 200, 1e-3, 0.0)],
                       infeasible=None)
    history = hypervolume_history(study)
    assert [number for number, _ in history] == [0, 1, 2]
    volumes = [volume for _, volume in history]
    # t0 at (1, 0): .1 * 1.1; t1 at (0, 1) adds 1.1 * .1 less the shared .1 * .1; t2 is dominated.
    assert volumes == pytest.approx([0.11, 0.21, 0.21])


def test_metric_values_read_objectives_then_attributes():
    study = make_study()
    trials = usable_trials(study)
    assert metric_values(trials, "energy", study.metric_names).tolist() == [p[2] for p in POINTS]
    with pytest.raises(AnalysisError, match="unknown objective 'flops'"):
        metric_values(trials, "flops", study.metric_names)
    bare = [create_trial(values=[0.5, 1.0])]
    assert math.isnan(metric_values(bare, "energy", ["accuracy", "params"])[0])


def test_studies_without_names_or_usable_trials_give_one_line_errors():
    with pytest.raises(AnalysisError, match="no metric names"):
        highlights(optuna.create_study(directions=["maximize", "minimize"]))
    with pytest.raises(AnalysisError, match="no completed, feasible trials"):
        highlights(named_study(["accuracy", "params"]))


def test_payback_sentence_names_the_models_and_the_count():
    from optuna_energy.reading.report import build_report, payback_text

    text = payback_text(build_report(make_study()))
    # 100 J / (5e-3 - 1.5e-3) J = 28,571 inferences; labels: trade-off A, most accurate B.
    assert "model A (trial 2)" in text and "model B (trial 1)" in text
    assert "paid for itself after 28,571 inferences" in text
    same = build_report(make_study(points=[(0.9, 10, 1e-3, 5.0), (0.5, 20, 2e-3, 5.0)], infeasible=None))
    assert "no payback point" in payback_text(same)


def test_incremental_hypervolume_equals_the_volume_recomputed_from_scratch():
    from optuna_energy.samplers import REFERENCE, hypervolume, normalised_losses

    rng = np.random.default_rng(0)
    points = [(float(a), float(p), float(e), 0.0)
              for a, p, e in zip(rng.uniform(0, 1, 60), rng.lognormal(8, 2, 60), rng.lognormal(-9, 1, 60))]
    study = make_study(objectives=("accuracy", "params", "energy"), points=points, infeasible=None)
    values = np.array([point[:3] for point in points])
    normal = normalised_losses(values, maximize=np.array([True, False, False]))
    for number, volume in hypervolume_history(study)[::7]:
        assert volume == pytest.approx(hypervolume(normal[: number + 1], np.full(3, REFERENCE)))
