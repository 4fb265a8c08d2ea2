"""Your own objective gets what the built-in one has: EarlyStopper (multi-objective, threads,
the training budget), costs first, GPU sharing, and the report's savings line."""

from __future__ import annotations

import sys

import optuna
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState
from torch import nn

import optuna_energy
from optuna_energy import cli
from optuna_energy.host import gpu_share
from optuna_energy.reading.savings import savings, savings_text
from optuna_energy.store import record
from optuna_energy.store.record import TrialRecord
from optuna_energy.workers import WorkerSlot, launch

EPOCHS = 9  # rungs at 1 and 3 epochs


def synthetic_objective(stopper: optuna_energy.EarlyStopper):
    """A trial whose accuracy after ``epoch`` epochs is :func:`accuracy_of` and whose one
    cost (parameters) is recorded before training: a loop like a user's, without the training."""

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        quality, size = trial.suggest_float("quality", 0.2, 1.0), trial.suggest_int("size", 1, 1000)
        record.write(trial, params=size)  # what measure_costs_first records
        for epoch in range(1, stopper.claim(trial) + 1):
            accuracy = accuracy_of(quality, epoch)
            if stopper.should_stop(trial, epoch=epoch, accuracy=accuracy, train_energy_j=2.0 * epoch):
                raise optuna.TrialPruned()
        return optuna_energy.record_measurement(trial, accuracy=accuracy, epochs=epoch)

    return objective


def accuracy_of(quality: float, epoch: int) -> float:
    return quality * (1 + epoch / EPOCHS) / 2


def own_study(storage: str | None = None) -> optuna.Study:
    return optuna_energy.create_study(objectives=["accuracy", "params"], storage=storage,
                                      study_name="own", sampler=optuna.samplers.RandomSampler(seed=1),
                                      load_if_exists=True)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_multi_objective_study_stops_outranked_trials_and_reports_the_savings(n_jobs: int) -> None:
    study = own_study()
    stopper = optuna_energy.EarlyStopper(epochs=EPOCHS, first_rung=1, factor=3, min_peers=3,
                                         chance_accuracy=0.1, eval_images=400)
    study.enqueue_trial({"quality": 0.2, "size": 500})  # 0.11 after an epoch: chance is 0.14 of 400
    study.optimize(synthetic_objective(stopper), n_trials=30, n_jobs=n_jobs)
    trials = study.get_trials(deepcopy=False)
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED}
    for trial in trials:
        stored = TrialRecord.of(trial)
        if trial.state == TrialState.PRUNED:
            assert stored.stop_reason and stored.epochs_trained in (1, 3)
            assert stored.rung_accuracies[str(stored.epochs_trained)] == pytest.approx(
                accuracy_of(trial.params["quality"], stored.epochs_trained))
            assert stored.train_energy_j == 2.0 * stored.epochs_trained
        else:
            assert stored.epochs_trained == EPOCHS and set(stored.rung_accuracies) == {"1", "3"}
    assert TrialRecord.of(trials[0]).stop_reason == "at chance after 1 epoch"  # alone or not
    found = savings(study)
    stopped = sum(t.state == TrialState.PRUNED for t in trials)
    assert sum(found.stopped.values()) == stopped and found.epochs_if_full == EPOCHS * len(trials)
    assert savings_text(found).startswith(f"Early stopping stopped {stopped} of {len(trials)} trials")


def test_the_epoch_budget_is_claimed_exactly_across_threads() -> None:
    study = own_study()
    stopper = optuna_energy.EarlyStopper(epochs=EPOCHS, first_rung=1, factor=3, max_train_epochs=40)
    study.optimize(synthetic_objective(stopper), n_trials=25, n_jobs=2)
    stored = [TrialRecord.of(t) for t in study.get_trials(deepcopy=False)]
    counted = [r for r in stored if not r.over_budget]
    assert sum(r.epochs_trained or 0 for r in counted) <= 40
    assert any(r.over_budget for r in stored)  # the budget ran out before the trials did
    short = [r for r in counted if r.stop_reason == "training epoch budget used"]
    assert all(r.epochs_claimed < EPOCHS and r.epochs_trained == r.epochs_claimed for r in short)


@settings(max_examples=30, deadline=None)
@given(epochs=st.integers(1, 40), first_rung=st.integers(1, 10), factor=st.integers(2, 5),
       epoch=st.integers(1, 40))
def test_between_rungs_the_stopper_says_go_on_without_a_read_or_a_write(epochs, first_rung, factor,
                                                                       epoch) -> None:
    stopper = optuna_energy.EarlyStopper(epochs=epochs, first_rung=first_rung, factor=factor)
    if epoch in stopper.schedule.rungs:
        return
    # A trial that would fail on any read or write: none happens.
    assert stopper.should_stop(object(), epoch=epoch, accuracy=0.0) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(("arguments", "message"), [
    ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
    ({"epochs": 6, "factor": 1}, "factor must be an integer >= 2, got 1"),
    ({"epochs": 6, "chance_accuracy": 0.1}, "chance_accuracy and eval_images go together"),
    ({"epochs": 6, "chance_accuracy": 1.5, "eval_images": 10}, r"chance_accuracy must be a fraction in \[0, 1\)"),
    ({"epochs": 6, "max_train_energy": -1}, "max_train_energy must be a number of joules > 0, got -1"),
    ({"epochs": 6, "objectives": ["params", "energy"]}, "with accuracy among them"),
])
def test_bad_stopper_arguments_are_one_line_errors(arguments, message) -> None:
    with pytest.raises(ValueError, match=message):
        optuna_energy.EarlyStopper(**arguments)


@pytest.fixture(scope="module")
def monitor() -> optuna_energy.EnergyMonitor:
    return optuna_energy.EnergyMonitor(device="cpu", meter="estimate", idle_seconds=0)


def test_costs_first_prunes_a_model_over_a_limit_before_training_and_keeps_its_costs(monitor) -> None:
    study = optuna_energy.create_study(objectives=["accuracy", "params", "energy"])
    inputs = torch.zeros(20, 8)

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        model = nn.Linear(8, trial.suggest_categorical("width", [2, 200]))
        optuna_energy.measure_costs_first(trial, model, inputs, monitor=monitor, min_window_seconds=0,
                                          limits={"max_params": 100, "max_energy": None})
        return optuna_energy.record_measurement(trial, accuracy=0.9, constraints={"learned": -0.5})

    study.enqueue_trial({"width": 200})
    study.enqueue_trial({"width": 2})
    study.optimize(objective, n_trials=2)
    over, under = study.trials
    assert over.state == TrialState.PRUNED and TrialRecord.of(over).stop_reason == "over max_params"
    assert TrialRecord.of(over).params == 8 * 200 + 200 and TrialRecord.of(over).epochs_trained == 0
    assert over.user_attrs["energy_per_inference_j"] > 0 and over.constraints["params"] > 0
    assert under.state == TrialState.COMPLETE and under.values[1] == 18
    assert TrialRecord.of(under).constraints == {"params": 18 - 100, "learned": -0.5}
    assert "1 over a limit, never trained" in savings_text(savings(study, full=EPOCHS))


def test_costs_first_names_a_bad_limit_before_measuring(monitor) -> None:
    trial = optuna_energy.create_study(objectives=["accuracy", "params"]).ask()
    with pytest.raises(ValueError, match=r"^unknown limits 'max_flops'; allowed: max_inference_time, max_params"):
        optuna_energy.measure_costs_first(trial, nn.Linear(2, 2), torch.zeros(1, 2), monitor=monitor,
                                          limits={"max_flops": 1})


def test_gpu_sharing_is_a_public_module_that_does_nothing_outside_launch(monkeypatch) -> None:
    assert optuna_energy.gpu_share is gpu_share
    monkeypatch.delenv(gpu_share.LOCKS_ENV, raising=False)
    with optuna_energy.gpu_share.training(torch.device("cpu")) as turn, optuna_energy.gpu_share.alone():
        optuna_energy.gpu_share.step()
    assert not turn.shared and turn.share_since(turn.mark()) == 1.0


def test_launch_runs_a_program_of_your_own_with_each_workers_gpu_and_lock_folder(capsys) -> None:
    shown = ("import os; print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['OPTUNA_ENERGY_STORAGE'], "
             f"os.path.basename(os.environ[{gpu_share.LOCKS_ENV!r}]))")
    slots = [WorkerSlot(f"gpu0.{k}", "cuda", {"CUDA_VISIBLE_DEVICES": "0"}, gpu=0) for k in range(2)]
    assert launch(slots, [], storage="sqlite:///mine.db", command=[sys.executable, "-c", shown]) == 0
    printed = capsys.readouterr().out
    assert printed.count("0 sqlite:///mine.db gpu0") == 2  # one lock folder for the GPU's two workers


def test_launch_run_must_name_a_program(capsys) -> None:
    assert cli.main(["launch", "--run", " "]) == 2
    assert "--run must name a program to run" in capsys.readouterr().err
