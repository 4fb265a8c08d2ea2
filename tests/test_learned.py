"""The ``learned`` rule: above chance with 99.9 % confidence, judged the same by the objective,
the rung decision and every reader, old studies included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState, create_trial
from scipy.stats import binom

from optuna_energy.config import load_config
from optuna_energy.reading.analysis import pareto_trials, usable_trials
from optuna_energy.reading.dashboard import dashboard_only_best, note_markdown
from optuna_energy.reading.report import build_report
from optuna_energy.reading.study_trials import StudyTrials, dataset_chance, feasible_in, is_feasible
from optuna_energy.store.record import TrialRecord
from optuna_energy.study import create_or_load_study, run_study
from optuna_energy.trial.stopping import LEARNED, LEARNED_CONFIDENCE, ChanceLevel
from tests.helpers import tiny_config

DIGITS = ChanceLevel(accuracy=37 / 360, eval_images=360)
"""The digits validation split: 360 images, the most frequent class 37 of them."""


@settings(max_examples=60, deadline=None)
@given(images=st.integers(10, 20_000), classes=st.integers(2, 100))
def test_the_threshold_is_the_smallest_count_the_binomial_test_accepts(images: int, classes: int) -> None:
    chance = ChanceLevel(accuracy=max(1, images // classes) / images, eval_images=images)
    count = round(chance.learned_threshold * images)
    alpha = 1 - LEARNED_CONFIDENCE
    assert binom.sf(count - 1, images, chance.accuracy) <= alpha < binom.sf(count - 2, images, chance.accuracy)


def test_on_digits_a_network_needs_57_of_360_images() -> None:
    assert round(DIGITS.learned_threshold * 360) == 57  # 15.8 %; the old rule asked for 38 (10.6 %)
    guesses = np.random.default_rng(0).binomial(360, DIGITS.accuracy, size=100_000) / 360
    assert np.mean(guesses >= DIGITS.learned_threshold) < 1 - LEARNED_CONFIDENCE


def judged(accuracy: float, *, recorded: bool) -> optuna.trial.FrozenTrial:
    """A completed trial judged by the old rule (chance plus one image), with or without the
    chance level recorded on it."""
    attrs: dict = {"accuracy": accuracy}
    if recorded:
        attrs |= {"eval_images": DIGITS.eval_images, "chance_accuracy": DIGITS.accuracy}
    old_violation = DIGITS.accuracy + 1 / DIGITS.eval_images - accuracy
    return create_trial(state=TrialState.COMPLETE, values=[accuracy, 1.0], user_attrs=attrs,
                        system_attrs={f"constraints:{LEARNED}": old_violation})


def test_a_trial_judged_by_the_old_rule_is_judged_again_by_todays() -> None:
    assert is_feasible(judged(0.2, recorded=True))
    assert not is_feasible(judged(0.125, recorded=True))  # feasible when it was stored
    assert not is_feasible(judged(0.125, recorded=False), study_chance=DIGITS)
    assert is_feasible(judged(0.125, recorded=False))  # nothing to judge it by: as stored
    other = ChanceLevel(accuracy=0.5, eval_images=100)  # not the set it was judged on
    assert is_feasible(judged(0.125, recorded=False), study_chance=other)


def old_study(tmp_path: Path) -> optuna.Study:
    """A digits study as an older version stored it: trials without their chance level."""
    study = create_or_load_study(load_config(tiny_config(tmp_path, objectives=["accuracy", "params"])))
    for accuracy, params in [(0.125, 10.0), (0.9, 1000.0), (0.5, 100.0)]:
        trial = judged(accuracy, recorded=False)
        study.add_trial(create_trial(state=trial.state, values=[accuracy, params],
                                     user_attrs=trial.user_attrs, system_attrs=trial.system_attrs))
    return study


def test_an_old_digits_study_offers_no_chance_level_network(tmp_path: Path) -> None:
    study = old_study(tmp_path)
    assert dataset_chance(study) == DIGITS  # from the stored config, no trial needed
    assert [t.number for t in study.best_trials] == [0, 1, 2]  # Optuna reads the stored constraint
    assert [t.number for t in pareto_trials(study)] == [1, 2]
    assert [t.number for t in usable_trials(study)] == [1, 2]
    assert not StudyTrials(study).feasible(study.trials[0])
    assert not feasible_in(study, study.trials[0]) and feasible_in(study, study.trials[2])


def test_a_study_without_a_stored_config_is_judged_as_stored() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(judged(0.125, recorded=False))
    assert dataset_chance(study) is None
    assert [t.number for t in usable_trials(study)] == [0]


def test_a_trained_trial_below_the_users_floor_completes_and_is_offered_nowhere(tmp_path: Path) -> None:
    """``[constraints] min_accuracy`` on top of ``learned``: trained fully, COMPLETE, infeasible."""
    config = tiny_config(tmp_path, n_trials=2, objectives=["accuracy", "params"]) | {
        "constraints": {"min_accuracy": 1.0}}  # no network of one epoch gets every digit right
    study = run_study(config, show_progress_bar=False)
    trained = [trial for trial in study.trials if trial.state == TrialState.COMPLETE]
    assert trained  # those that learned; one at chance after its epoch ends PRUNED (test below)
    assert all(TrialRecord.of(trial).stop_reason == "at chance after 1 epoch"
               for trial in study.trials if trial not in trained)
    for trial in trained:
        record = TrialRecord.of(trial)
        assert record.accuracy is not None and record.accuracy < 1
        assert trial.constraints["accuracy"] == pytest.approx(1.0 - record.accuracy)
        assert record.constraints == trial.constraints and record.feasible is False
    feasible = create_trial(state=TrialState.COMPLETE, values=[1.0, 1e9],
                            user_attrs={"accuracy": 1.0, "params": 1e9, "energy_per_inference_j": 1.0,
                                        "train_energy_j": 1.0, "eval_images": 360, "chance_accuracy": 0.1},
                            system_attrs={f"constraints:{LEARNED}": -0.8, "constraints:accuracy": 0.0})
    study.add_trial(feasible)
    assert [trial.number for trial in study.best_trials] == [2]  # what optuna-dashboard should show
    assert [trial.number for trial in pareto_trials(study)] == [2]
    assert {row.trial.number for row in build_report(study).rows} == {2}
    on_the_values_front = {trial.number for trial in dashboard_only_best(study)}
    assert on_the_values_front and on_the_values_front <= {0, 1}
    assert f"Not best trials: {', '.join(map(str, sorted(on_the_values_front)))}" in note_markdown(study)


def test_a_network_still_at_chance_after_full_training_is_stopped_not_offered(tmp_path: Path) -> None:
    """One epoch is full training here (no rung): the learned rule ends such a trial PRUNED, as at
    a rung, so that no view that ignores constraints (optuna-dashboard) can offer it."""
    config = tiny_config(tmp_path, n_trials=3) | {  # steps too small to move the initial weights
        "training": {"epochs": 1, "batch_sizes": [128], "learning_rate": [1e-9, 2e-9], "optimizers": ["sgd"]}}
    study = run_study(config, show_progress_bar=False)
    records = [(trial, TrialRecord.of(trial)) for trial in study.trials]
    learned = DIGITS.learned_threshold
    at_chance = [(trial, record) for trial, record in records if record.accuracy < learned]
    assert at_chance, [record.accuracy for _, record in records]
    for trial, record in at_chance:
        assert trial.state == TrialState.PRUNED
        assert (record.stop_reason, record.epochs_trained) == ("at chance after 1 epoch", 1)
    assert all(trial.state == TrialState.COMPLETE for trial, record in records if record.accuracy >= learned)
    assert not study.best_trials or all(TrialRecord.of(t).accuracy >= learned for t in study.best_trials)
