"""The pieces for your own objective: the space as suggest functions, measuring any model,
recording it, and a study made only of them that gets the report, the note and a clear export."""

from __future__ import annotations

import math
import warnings

import optuna
import pytest
import torch
from optuna.trial import FixedTrial
from torch import nn

import optuna_energy
from optuna_energy import cli
from optuna_energy.config import load_config
from optuna_energy.host.meters import EnergyEstimateWarning, estimate
from optuna_energy.model.arch import profile
from optuna_energy.reading.report import table_metrics
from optuna_energy.samplers import EvolutionSampler
from tests.helpers import tiny_config

RECORD_OF_THE_SPACE = ("architecture", "architecture_summary", "skipped_slots", "params", "macs", "training")


@pytest.fixture(scope="module")
def monitor() -> optuna_energy.EnergyMonitor:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a named meter: no step down, no warning
        return optuna_energy.EnergyMonitor(device="cpu", meter="estimate")


def small_net(width: int = 4) -> nn.Module:
    """A model of the user's own, not from the package's space."""
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(width * 64, 10))


def test_suggest_functions_sample_and_store_what_the_builtin_objective_does(tmp_path):
    config = load_config(tiny_config(tmp_path))
    study = optuna_energy.run_study(config, show_progress_bar=False)
    for trial in study.trials:
        # Replaying a built-in trial's parameters through the public functions gives its record.
        replay = FixedTrial(trial.params)
        optuna_energy.suggest_training(replay, training=config.training)
        spec = optuna_energy.suggest_architecture(replay, (1, 8, 8), 10, space=config.space)
        assert spec == trial.user_attrs["architecture"]
        assert {key: replay.user_attrs[key] for key in RECORD_OF_THE_SPACE} == {
            key: trial.user_attrs[key] for key in RECORD_OF_THE_SPACE}
        model = optuna_energy.build_model(spec, (1, 8, 8), 10)
        assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize(("call", "name"), [
    (lambda: optuna_energy.suggest_architecture(FixedTrial({}), (8, 8), 10), "input_shape"),
    (lambda: optuna_energy.suggest_architecture(FixedTrial({}), (1, 8, 8), 1), "n_classes"),
    (lambda: optuna_energy.suggest_architecture(FixedTrial({}), (1, 8, 8), 10, space={}), "space"),
    (lambda: optuna_energy.suggest_training(FixedTrial({}), training={}), "training"),
    (lambda: optuna_energy.EnergyMonitor(device="cpu", idle_seconds=-1), "idle_seconds"),
    (lambda: optuna_energy.EnergyMonitor(device="cpu", meter="joulemeter"), "meter"),
    (lambda: optuna_energy.create_study(objectives=["accuracy"]), "objectives"),
    (lambda: optuna_energy.create_study(objectives=["accuracy", "speed"]), "objectives"),
    (lambda: EvolutionSampler(block_of="stage"), "block_of"),
    (lambda: optuna_energy.profile_module(small_net(), torch.zeros(())), "example"),
])
def test_bad_arguments_are_value_errors_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize(("arguments", "name"), [
    ({"batch_size": 0}, "batch_size"), ({"warmup_batches": -1}, "warmup_batches"),
    ({"min_window_seconds": -1.0}, "min_window_seconds"), ({"energy": "both"}, "energy"),
])
def test_bad_measuring_arguments_name_the_argument(monitor, arguments, name):
    with pytest.raises(ValueError, match=name):
        monitor.measure_inference(small_net(), torch.zeros(10, 1, 8, 8), **arguments)


def test_a_model_of_your_own_is_measured_on_a_tensor_or_on_batches(monitor):
    model = small_net().train()
    images = torch.rand(200, 1, 8, 8)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.zeros(200)), batch_size=50)
    on_tensor = monitor.measure_inference(model, images, min_window_seconds=0.01)
    on_loader = monitor.measure_inference(model, loader, min_window_seconds=0.01)
    assert model.training  # put back in the mode it was in
    for result in (on_tensor, on_loader):
        assert result.source == "estimate" and result.device == "cpu"
        assert result.inputs_per_pass == 200 and result.window_inputs % 200 == 0
        assert result.seconds_per_pass > 0 and result.energy_per_input_j > 0
        assert result.params == sum(p.numel() for p in model.parameters())
        assert result.memory_bytes > 0
    # The estimate's joules per input depend on the batch: fewer inputs share each weight read.
    assert on_loader.energy_gross_j > on_tensor.energy_gross_j


def test_the_estimate_for_a_spec_is_the_builtin_objectives(monitor):
    spec = [{"slot": 0, "kind": "conv", "out_channels": 8, "kernel": [3, 3], "stride": 1, "padding": 1},
            {"slot": 16, "kind": "activation", "fn": "relu"}]
    costs = profile(spec, (1, 8, 8), 10)
    model = optuna_energy.build_model(spec, (1, 8, 8), 10)
    result = monitor.measure_inference(model, torch.rand(300, 1, 8, 8), costs=costs, min_window_seconds=0.01)
    expected = estimate.inference_joules(macs=costs.macs, params=costs.params,
                                         activations=costs.activations, batch_size=100)
    assert result.energy_gross_j == pytest.approx(expected)
    assert result.macs == costs.macs
    # Counted on the module, the work agrees with the spec's.
    counted = optuna_energy.profile_module(model, torch.zeros(4, 1, 8, 8))
    assert (counted.params, counted.macs) == (costs.params, costs.macs)


def test_an_estimated_window_needs_the_work_done(monitor):
    model = small_net()
    monitor.begin_window("training")
    with pytest.warns(EnergyEstimateWarning, match="n_inputs"):
        assert monitor.end_window("training").joules == 0.0
    monitor.begin_window("training")
    window = monitor.end_window("training", model=model, example=torch.zeros(32, 1, 8, 8), n_inputs=640)
    costs = optuna_energy.profile_module(model, torch.zeros(32, 1, 8, 8))
    assert window.joules == pytest.approx(estimate.training_joules(
        macs=costs.macs, params=costs.params, activations=costs.activations, batch_size=32, images=640))
    assert window.source == "estimate" and window.seconds >= 0 and window.net_joules == window.joules


def test_recording_needs_a_study_with_registry_names(monitor):
    study = optuna.create_study(directions=["maximize", "minimize"])
    with pytest.raises(ValueError, match="create_study"):
        optuna_energy.record_measurement(study.ask(), accuracy=0.5)
    study = optuna_energy.create_study(objectives=["accuracy", "energy"])
    with pytest.raises(ValueError, match="pass inference="):
        optuna_energy.record_measurement(study.ask(), accuracy=0.5)
    with pytest.raises(ValueError, match="accuracy"):
        optuna_energy.record_measurement(study.ask(), accuracy=50)


@pytest.fixture(scope="module")
def own_study(tmp_path_factory, monitor):
    """A study made only of the public pieces: the user's own models, objective and loop."""
    folder = tmp_path_factory.mktemp("own")
    storage = f"sqlite:///{folder / 'own.db'}"
    torch.manual_seed(0)
    images, labels = torch.rand(256, 1, 8, 8), torch.randint(0, 10, (256,))

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        model = small_net(trial.suggest_int("width", 1, 8))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        monitor.begin_window("training")
        for batch in torch.arange(256).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images[batch]), labels[batch]).backward()
            optimizer.step()
        training = monitor.end_window("training", model=model, example=images[:64], n_inputs=256)
        with torch.no_grad():
            accuracy = (model(images).argmax(1) == labels).float().mean().item()
        inference = monitor.measure_inference(model, images, min_window_seconds=0.01)
        return optuna_energy.record_measurement(trial, inference, accuracy=accuracy, training=training,
                                                epochs=1, constraints={"learned": -1.0})

    study = optuna_energy.create_study(objectives=["accuracy", "energy", "params"], storage=storage,
                                       study_name="own")
    study.optimize(objective, n_trials=5, callbacks=[optuna_energy.ReportNote()])
    return folder, storage, study


def test_recorded_values_are_the_objectives_and_the_record(own_study):
    _, _, study = own_study
    for trial in study.trials:
        attrs = trial.user_attrs
        assert trial.values == [attrs["accuracy"], attrs["energy_per_inference_j"], attrs["params"]]
        assert attrs["energy_source"] == "estimate" and attrs["train_energy_j"] > 0
        assert attrs["feasible"] is True and trial.constraints == {"learned": -1.0}


def test_a_study_of_your_own_gets_table_i_the_payback_and_the_note(own_study, tmp_path, capsys):
    from optuna_dashboard import get_note

    _, storage, study = own_study
    report = optuna_energy.build_report(study)
    assert report.rows and all(not math.isnan(row.metrics[name]) for row in report.rows for name in table_metrics())
    assert report.payback.search_energy_j > 0
    note = get_note(study)
    assert "Highlighted models" in note and "The search spent" in note
    assert cli.main(["report", "--storage", storage, "--study-name", "own", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # Which payback sentence depends on the measured energies; the report says the one that holds.
    payback = ("no payback point" if report.payback.inferences is None
               else "paid for itself after")
    # The sentence is wrapped to the terminal's width wherever its numbers put a break.
    assert "Highlighted models of study 'own'" in out and payback in " ".join(out.split())
    written = {path.name for path in tmp_path.iterdir()}
    assert {"report.md", "table.csv", "fig1_costs_vs_accuracy.png", "hypervolume.png"} <= written
    assert "fig2_topologies.png" not in written  # no spec of the built-in space to draw


def test_export_says_in_one_line_that_it_rebuilds_only_the_builtin_space(own_study, tmp_path, capsys):
    _, storage, _ = own_study
    code = cli.main(["export", "--storage", storage, "--study-name", "own", "--trial", "0",
                     "--format", "onnx", "-o", str(tmp_path / "model.onnx")])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert "only specs of optuna-energy's 32-slot space" in error
