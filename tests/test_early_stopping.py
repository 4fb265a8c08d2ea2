"""Costs first, rung decisions, stopped trials in the study, and the training budget."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import optuna_energy
from optuna_energy.config import ConfigError, load_config
from optuna_energy.data import DeviceData, load_dataset
from optuna_energy.host.meters import estimate
from optuna_energy.model.arch import ArchProfile
from optuna_energy.model.space import TrainingParams
from optuna_energy.reading.analysis import pareto_front, usable_trials
from optuna_energy.reading.report import build_report
from optuna_energy.reading.savings import Savings, savings_text
from optuna_energy.samplers._optuna_compat import storage_of, study_id
from optuna_energy.store import record
from optuna_energy.store.budget import counts
from optuna_energy.store.ledger import LEDGER_ATTR, StudyLedger
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.training_budget import spent
from optuna_energy.study import create_or_load_study, optimize_study
from optuna_energy.trial import early_stopping
from optuna_energy.trial.rungs import Costs, RungSchedule, decide
from optuna_energy.trial.stopping import MAX_PEERS, EarlyStopper, RungPeers
from tests.helpers import tiny_config

COSTS = ["inference_time_s", "params", "energy_per_inference_j"]
COST_NAMES = ["inference_time", "params", "energy"]
OBJECTIVES = ["accuracy", *COST_NAMES]
LEARNED = 0.11  # chance on ten balanced classes, plus one image


def fabricated_study(rung_results: list[tuple[float, list[float]]]) -> optuna.Study:
    """A study whose trials reached rung 1 with these (accuracy, costs), as workers record them."""
    study = optuna.create_study(directions=["maximize", "minimize", "minimize", "minimize"])
    for accuracy, costs in rung_results:
        study.add_trial(create_trial(
            state=TrialState.PRUNED, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
            user_attrs={"rung_accuracies": {"1": accuracy}, **dict(zip(COSTS, costs))}))
    return study


def exact(costs: list[float]) -> Costs:
    return Costs(values=tuple(costs), spreads=(0.0,) * len(costs))


def decide_at_first_rung(study: optuna.Study, accuracy: float, costs: list[float]):
    peers = RungPeers(COST_NAMES).of(study, rung=1, exclude=-1)
    return decide(accuracy=accuracy, costs=exact(costs), peers=peers, learned=LEARNED, factor=3,
                  min_peers=3, rung=1)


def test_the_schedule_is_geometric_below_full_training() -> None:
    assert RungSchedule(first_rung=1, factor=3, epochs=6).boundaries == (1, 3, 6)
    assert RungSchedule(first_rung=1, factor=2, epochs=6).rungs == (1, 2, 4)
    assert RungSchedule(first_rung=6, factor=2, epochs=6).boundaries == (6,)


def test_a_network_at_chance_stops_at_the_first_rung_even_alone() -> None:
    decision = decide_at_first_rung(fabricated_study([]), 0.10, [1e-3, 1000, 1e-6])
    assert not decision.go_on and "chance" in decision.reason


def test_a_cheap_accurate_network_goes_on_and_an_outranked_one_stops() -> None:
    # Eight peers, each both more accurate and cheaper than the expensive mediocre network.
    study = fabricated_study([(0.80 + i / 100, [1e-3, 1000 + i, 1e-6]) for i in range(8)])
    cheap = decide_at_first_rung(study, 0.60, [1e-4, 100, 1e-7])  # less accurate, far cheaper
    assert cheap.go_on
    outranked = decide_at_first_rung(study, 0.50, [1e-2, 50_000, 1e-5])
    assert not outranked.go_on and "top 1/3" in outranked.reason


def test_a_cost_lower_only_within_the_noise_does_not_keep_a_network_training() -> None:
    # Eight more accurate peers, each slower and hungrier by 10 %: exactly, the network is
    # cheaper than all of them and on the first front; within the 30 % the measurements spread
    # over, its costs equal theirs and every peer beats it.
    def peers(spread: float) -> list[tuple[float, Costs]]:
        return [(0.80 + i / 100, Costs((1.1e-3, 100.0, 1.1e-6), (spread, 0.0, spread))) for i in range(8)]

    def at_rung(spread: float):
        return decide(accuracy=0.6, costs=Costs((1e-3, 100.0, 1e-6), (spread, 0.0, spread)),
                      peers=peers(spread), learned=LEARNED, factor=3, min_peers=3, rung=1)

    assert at_rung(0.0).go_on
    assert at_rung(math.nan).go_on  # an unknown spread is no spread
    stopped = at_rung(0.3)
    assert not stopped.go_on and stopped.reason == "not in the top 1/3 of 9 trials after 1 epoch"


def test_with_too_few_peers_a_learning_network_goes_on() -> None:
    study = fabricated_study([(0.9, [1e-3, 1000, 1e-6])])
    assert decide_at_first_rung(study, 0.2, [1e-2, 50_000, 1e-5]).go_on


def test_the_stopper_ranks_a_live_trial_by_its_recorded_costs_and_records_its_rung() -> None:
    study = fabricated_study([(0.80 + i / 100, [1e-3, 1000 + i, 1e-6]) for i in range(8)])
    stopper = EarlyStopper(epochs=6, first_rung=1, factor=3, min_peers=3, objectives=OBJECTIVES)
    cheap, expensive = study.ask(), study.ask()
    record.write(cheap, **dict(zip(COSTS, [1e-4, 100, 1e-7])))
    record.write(expensive, **dict(zip(COSTS, [1e-2, 50_000, 1e-5])))

    assert stopper.decide(cheap, rung=1, accuracy=0.6).go_on
    outranked = stopper.decide(expensive, rung=1, accuracy=0.5)
    assert not outranked.go_on and outranked.reason == "not in the top 1/3 of 10 trials after 1 epoch"
    assert TrialRecord.of(study.trials[9]).stop_reason == outranked.reason
    assert stopper.decide(cheap, rung=3, accuracy=0.7).go_on  # alone at rung 3: too few peers
    assert TrialRecord.of(study.trials[8]).rung_accuracies == {"1": 0.6, "3": 0.7}
    assert TrialRecord.of(study.trials[8]).epochs_trained == 3


def test_rung_peers_read_only_new_and_unfinished_trials_and_keep_the_latest() -> None:
    study = fabricated_study([(0.5, [1e-3, 1000, 1e-6])] * (MAX_PEERS + 5))
    running = study.ask()
    record.write(running, rung_accuracies={"1": 0.9}, **dict(zip(COSTS, [1e-3, 10, 1e-6])))
    peers = RungPeers(COST_NAMES)
    assert len(peers.of(study, rung=1, exclude=-1)) == MAX_PEERS
    accuracy, costs = peers.of(study, rung=1, exclude=-1)[0]
    assert (accuracy, costs.values) == (0.9, (1e-3, 10.0, 1e-6))  # the latest first  # the latest first
    read = []
    real_read = peers.feed.read
    peers.feed.read = lambda study: read.extend(real_read(study)) or read  # type: ignore[method-assign]
    peers.of(study, rung=1, exclude=running.number)
    assert [t.number for t in read] == [running.number]  # not the finished thousand again


def test_the_stopper_says_what_it_lacks() -> None:
    study = fabricated_study([])
    stopper = EarlyStopper(epochs=6, first_rung=1, factor=3, min_peers=3, objectives=OBJECTIVES)
    trial = study.ask()
    with pytest.raises(ValueError, match=r"^2 is not a rung of \(1, 3\)$"):
        stopper.decide(trial, rung=2, accuracy=0.5)
    with pytest.raises(ValueError, match="has no inference_time_s, params, energy_per_inference_j recorded"):
        stopper.decide(trial, rung=1, accuracy=0.5)
    with pytest.raises(ValueError, match=r"^costs must hold 3 values"):
        stopper.decide(trial, rung=1, accuracy=0.5, costs=[1.0])
    assert not stopper.should_stop(trial, epoch=2, accuracy=0.0)  # between rungs: no decision
    assert stopper.decide(trial, rung=1, accuracy=0.5, costs=[1e-3, 10, 1e-6]).go_on


def run(tmp_path: Path, **study) -> optuna.Study:
    config = tiny_config(tmp_path, **study)
    config["training"] = {"epochs": 3, "batch_sizes": [32]}
    return optuna_energy.run_study(config, show_progress_bar=False)


@pytest.mark.parametrize("early", [True, False])
def test_an_architecture_over_a_limit_is_measured_and_never_trained(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, early: bool) -> None:
    """Costs first is its own switch: full training skips over-limit networks as well."""
    steps = []
    monkeypatch.setattr(early_stopping, "train", lambda *a, **k: steps.append(1))
    config = tiny_config(tmp_path, n_trials=3)
    config["constraints"] = {"max_params": 1}
    config["early_stopping"] = {"enabled": early}
    study = optuna_energy.run_study(config, show_progress_bar=False)

    assert steps == []
    for trial in study.trials:
        stored = TrialRecord.of(trial)
        assert trial.state == TrialState.PRUNED and stored.stop_reason == "over max_params"
        assert stored.epochs_trained == 0 and stored.train_energy_j == 0
        assert stored.params > 1 and stored.inference_time_s > 0 and stored.energy_per_inference_j > 0
        assert trial.constraints["params"] > 0


def test_without_costs_first_an_architecture_over_a_limit_is_trained_fully(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, n_trials=2, costs_first=False)
    config["constraints"] = {"max_params": 1}
    config["early_stopping"] = {"enabled": False}
    study = optuna_energy.run_study(config, show_progress_bar=False)

    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for trial in study.trials:
        assert TrialRecord.of(trial).epochs_trained == 1 and TrialRecord.of(trial).stop_reason is None
        assert trial.constraints["params"] > 0
    assert study.best_trials == []


def test_stopped_trials_are_never_on_a_front_in_best_trials_the_report_or_the_dashboard(
        tmp_path: Path) -> None:
    from optuna_dashboard._pareto_front import get_pareto_front_trials

    study = run(tmp_path, n_trials=8)
    stopped = {t.number for t in study.trials if t.state == TrialState.PRUNED}
    assert stopped and len(stopped) < len(study.trials)  # both kinds, or the test proves nothing
    for trial in study.trials:
        if trial.number in stopped:
            stored = TrialRecord.of(trial)
            assert stored.stop_reason and stored.rung_reached == 1 and stored.epochs_trained == 1
            assert stored.rung_accuracies["1"] >= 0 and stored.energy_per_inference_j > 0
    shown = {
        "best_trials": study.best_trials,
        "pareto_front": pareto_front(study),
        "usable": usable_trials(study),
        "report": [row.trial for row in build_report(study).rows],
        "dashboard": get_pareto_front_trials(trials=study.get_trials(), directions=study.directions),
    }
    for where, trials in shown.items():
        assert not {t.number for t in trials} & stopped, where


def test_tpe_ranks_a_stopped_trial_below_every_trained_feasible_one(tmp_path: Path) -> None:
    from optuna.samplers._tpe.sampler import _split_trials

    study = run(tmp_path, n_trials=8, sampler="tpe")
    trained = list(usable_trials(study))
    below, _ = _split_trials(study, study.get_trials(), n_below=len(trained))
    assert {t.number for t in below} == {t.number for t in trained}


def test_the_epoch_budget_is_spent_exactly(tmp_path: Path) -> None:
    study = run(tmp_path, n_trials=1000, max_train_epochs=10)
    counted = [t for t in study.trials if counts(t)]
    assert spent(counted).epochs == 10
    assert all(TrialRecord.of(t).epochs_trained <= TrialRecord.of(t).epochs_claimed for t in counted)


def test_full_training_is_one_setting_away(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, n_trials=4)
    config["training"] = {"epochs": 2, "batch_sizes": [128]}
    config["early_stopping"] = {"enabled": False}
    study = optuna_energy.run_study(config, show_progress_bar=False)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert all(TrialRecord.of(t).epochs_trained == 2 for t in study.trials)


def test_a_study_interrupted_mid_rung_resumes_without_losing_or_double_counting_budget(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tiny_config(tmp_path, n_trials=1000, max_train_epochs=9)
    raw["training"] = {"epochs": 3, "batch_sizes": [32]}
    config = load_config(raw)
    real_train, calls = early_stopping.train, []

    def interrupted_in_second_rung(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first trial's stretch from rung 1 to full training
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(early_stopping, "train", interrupted_in_second_rung)
    with pytest.raises(KeyboardInterrupt):
        optimize_study(create_or_load_study(config), config)
    monkeypatch.setattr(early_stopping, "train", real_train)
    study = create_or_load_study(config)
    interrupted = study.trials[0]
    assert interrupted.state == TrialState.FAIL and not counts(interrupted)
    assert TrialRecord.of(interrupted).epochs_trained == 1  # spent, but not charged: it reruns

    optimize_study(study, config)
    counted = [t for t in study.get_trials() if counts(t)]
    assert spent(counted).epochs == 9
    assert any(t.system_attrs.get("failed_trial") == 0 for t in counted)  # its copy ran


def test_a_joule_budget_that_cannot_pay_a_first_rung_ends_the_run_before_measuring(tmp_path: Path) -> None:
    # The first trial, on the estimate, trains one epoch for about half of the budget and stops
    # there (its next stretch does not fit); what is left is less than its epoch. Before, the run
    # went on to n_trials, measuring trial after trial (6 of the first 8) to stop it at 0 epochs.
    study = run(tmp_path, n_trials=12, max_train_energy=0.01)
    records = [TrialRecord.of(t) for t in study.trials]
    assert len(records) < 12
    assert not [r for r in records if r.inference_time_s is not None and not r.epochs_trained
                and r.stop_reason == "training energy budget used"]
    counted = [TrialRecord.of(t) for t in study.trials if counts(t)]
    cheapest = min(r.train_energy_j / r.epochs_trained for r in counted if r.epochs_trained)
    assert 0.01 - sum(r.train_energy_j or 0.0 for r in counted) < cheapest  # the first rung is 1 epoch


trained_trials = st.lists(st.tuples(
    st.sampled_from([TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.FAIL]),
    st.integers(0, 6), st.floats(0.0, 10.0)), max_size=8)


def budget_study(trials: list[tuple[TrialState, int, float]]) -> optuna.Study:
    """A study whose trials trained ``epochs`` for ``joules``; a failed one's worker died (it
    does not count)."""
    study = optuna.create_study()
    for state, epochs, joules in trials:
        study.add_trial(create_trial(
            state=state, value=0.5 if state == TrialState.COMPLETE else None,
            user_attrs={"epochs_trained": epochs, "train_energy_j": joules}))
    return study


def expected_spent(trials: list[tuple[TrialState, int, float]]) -> tuple[float, float | None]:
    """The joules the counted trials spent and the fewest per epoch, from every trial."""
    counted = [(epochs, joules) for state, epochs, joules in trials if state != TrialState.FAIL]
    return (sum(joules for _, joules in counted),
            min((joules / epochs for epochs, joules in counted if epochs), default=None))


@settings(max_examples=60, deadline=None)
@given(trials=trained_trials, budget=st.floats(0.1, 40.0), first_rung=st.sampled_from([1, 2]))
def test_a_trial_claims_only_while_the_joules_left_pay_the_cheapest_first_rung(
        trials: list[tuple[TrialState, int, float]], budget: float, first_rung: int) -> None:
    joules, cheapest = expected_spent(trials)
    left, first = budget - joules, (cheapest or 0.0) * first_rung
    assume(abs(left) > 1e-9 and abs(left - first) > 1e-9)  # no tie decided by summing order
    study = budget_study(trials)
    stopper = EarlyStopper(epochs=6, first_rung=first_rung, factor=3, objectives=OBJECTIVES,
                           max_train_energy=budget)
    assert stopper.budget is not None
    used_up = left < 0 or first > left
    assert stopper.budget.exhausted(StudyLedger.of(study)) == used_up
    trial = study.ask()
    if used_up:
        with pytest.raises(optuna.TrialPruned):
            stopper.claim(trial)
        assert TrialRecord.of(trial).over_budget
    else:
        assert stopper.claim(trial) == 6


@settings(max_examples=30, deadline=None)
@given(before=trained_trials, after=trained_trials)
def test_the_ledger_keeps_the_cheapest_epoch_across_a_save_and_a_resume(
        before: list[tuple[TrialState, int, float]], after: list[tuple[TrialState, int, float]]) -> None:
    finished = [(s, e, j) for s, e, j in before if s != TrialState.RUNNING]  # the saved ones ended
    study = budget_study(finished)
    StudyLedger.of(study).save(study)
    for state, epochs, joules in after:
        study.add_trial(create_trial(state=state, value=0.5 if state == TrialState.COMPLETE else None,
                                     user_attrs={"epochs_trained": epochs, "train_energy_j": joules}))
    joules, cheapest = expected_spent(finished + after)
    resumed = StudyLedger.of(study).spent()  # the saved totals and the trials after them
    assert resumed.joules == pytest.approx(joules) and resumed.cheapest_epoch_j == pytest.approx(cheapest)


def test_a_ledger_saved_before_the_cheapest_epoch_is_rebuilt_with_it() -> None:
    trials = [(TrialState.COMPLETE, 3, 6.0), (TrialState.PRUNED, 1, 1.5), (TrialState.FAIL, 1, 0.1)]
    study = budget_study(trials)
    StudyLedger.of(study).save(study)
    storage = storage_of(study)
    saved = storage.get_study_system_attrs(study_id(study))[LEDGER_ATTR]
    # As version 1 wrote it: each holding without its cheapest rate.
    storage.set_study_system_attr(study_id(study), LEDGER_ATTR, {
        **saved, "version": 1, "folded": saved["folded"][:-1],
        "finished": [holding[:-1] for holding in saved["finished"]]})
    assert StudyLedger.of(study).spent().cheapest_epoch_j == 1.5  # not the dead worker's 0.1
    assert storage.get_study_system_attrs(study_id(study))[LEDGER_ATTR] == saved  # rebuilt, saved


@pytest.mark.parametrize(("key", "value", "message"), [
    ("first_rung", 0, "[early_stopping] first_rung must be an epoch count >= 1, got 0"),
    ("factor", 1, "[early_stopping] factor must be an integer >= 2, got 1"),
    ("enabled", "yes", "[early_stopping] enabled must be bool, got 'yes'"),
])
def test_bad_early_stopping_settings_are_one_line_errors(key: str, value, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config({"early_stopping": {key: value}})
    assert str(error.value) == message


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"^\[study\] max_train_epochs must be > 0, got 0$"):
        load_config({"study": {"max_train_epochs": 0}})
    assert math.isinf(early_stopping.training_budget(load_config(None)).joules_left([]))


def test_the_evolution_sampler_never_breeds_from_a_stopped_trial(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, n_trials=14, sampler="evolution")
    config["training"] = {"epochs": 3, "batch_sizes": [32]}
    config["evolution"] = {"population_size": 2}
    study = optuna_energy.run_study(config, show_progress_bar=False)
    states = {trial.number: trial.state for trial in study.trials}
    assert TrialState.PRUNED in states.values()  # some were stopped, or the test proves nothing
    parents = [number for trial in study.trials for number in trial.user_attrs.get("parents", [])]
    assert parents, "no child was bred"
    assert all(states[number] == TrialState.COMPLETE for number in parents)


def test_before_its_first_epoch_a_trial_is_projected_at_the_studys_measured_joules_per_mac() -> None:
    data = DeviceData(load_dataset(load_config(None).dataset, seed=0), torch.device("cpu"))
    profile = ArchProfile(params=5_000, macs=3_000_000, activations=20_000)
    training = TrainingParams(learning_rate=1e-3, optimizer="adam", batch_size=64, weight_decay=0.0)
    estimated = estimate.training_joules(macs=profile.macs, params=profile.params,
                                         activations=profile.activations, batch_size=64,
                                         images=len(data.train_y))
    assert early_stopping.first_epoch_joules([], profile=profile, training=training, data=data) == estimated
    # Two trials the study's (hardware) meter measured at 2 and 4 µJ per epoch and MAC, and one
    # that never trained: the median rate, not the estimate, projects the new trial.
    measured = [create_trial(state=TrialState.COMPLETE, values=[0.9], user_attrs={
        "epochs_trained": epochs, "macs": macs, "train_energy_j": joules})
        for epochs, macs, joules in ((2, 1_000_000, 4.0), (3, 2_000_000, 24.0), (0, 10, 0.0))]
    projected = early_stopping.first_epoch_joules(measured, profile=profile, training=training, data=data)
    assert projected == pytest.approx(3e-6 * profile.macs) and projected != pytest.approx(estimated)


def test_the_savings_paragraph_counts_stopped_trials_per_rung_in_words() -> None:
    found = Savings(evaluated=6, stopped={0: 1, 1: 2, 3: 1}, epochs=14, epochs_if_full=36,
                    joules=2.0, joules_if_full=6.0)
    text = savings_text(found)
    assert ("Early stopping stopped 4 of 6 trials (1 over a limit, never trained, 2 after 1 epoch, "
            "1 after 3 epochs): they trained 14 epochs") in text
    assert "saving 22 epochs (61 %)" in text
