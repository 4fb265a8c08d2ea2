"""run_study end to end on digits: objectives, stored architectures, resuming, failures."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

import optuna_energy
from optuna_energy.config import load_config
from optuna_energy.data import from_tensors, load_dataset
from optuna_energy.export import study_config
from optuna_energy.host.devices import DeviceError
from optuna_energy.model.arch import build_model, profile
from optuna_energy.study import create_or_load_study
from optuna_energy.trial.stopping import ChanceLevel
from tests.helpers import tiny_config

ENERGY_ATTRS = ("energy_source", "energy_gross_j", "energy_net_j", "train_energy_j")


@pytest.mark.parametrize("objectives", [
    ("accuracy", "energy"),
    ("accuracy", "params", "inference_time"),
    ("accuracy", "inference_time", "params", "energy"),
])
def test_run_study_reports_the_configured_objectives(tmp_path, objectives):
    study = optuna_energy.run_study(tiny_config(tmp_path, learns=True), objectives=objectives,
                                    show_progress_bar=False)
    assert study.metric_names == list(objectives)
    assert [d.name for d in study.directions] == [
        "MAXIMIZE" if name == "accuracy" else "MINIMIZE" for name in objectives]
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3
    for trial in trials:
        attrs = trial.user_attrs
        expected = {"accuracy": attrs["accuracy"], "inference_time": attrs["inference_time_s"],
                    "params": attrs["params"], "energy": attrs["energy_per_inference_j"]}
        assert trial.values == pytest.approx([expected[name] for name in objectives])
        assert 0.0 <= attrs["accuracy"] <= 1.0
        assert attrs["energy_source"] == "estimate"
        assert all(key in attrs for key in ENERGY_ATTRS)
        assert attrs["inference_time_s"] > 0 and attrs["energy_net_j"] > 0


def test_stored_architecture_rebuilds_the_same_model(tmp_path):
    config = tiny_config(tmp_path)
    optuna_energy.run_study(config, show_progress_bar=False)
    # Read back through a fresh storage handle: the database alone must be enough.
    study = optuna.load_study(study_name="tiny", storage=config["study"]["storage"])
    for trial in study.trials:
        spec = trial.user_attrs["architecture"]
        model = build_model(spec, (1, 8, 8), 10)
        assert sum(p.numel() for p in model.parameters()) == trial.user_attrs["params"]
        assert profile(spec, (1, 8, 8), 10).macs == trial.user_attrs["macs"]


def test_resuming_runs_only_the_missing_trials(tmp_path):
    config = tiny_config(tmp_path)
    optuna_energy.run_study(config, n_trials=2, show_progress_bar=False)
    study = optuna_energy.run_study(config, n_trials=4, show_progress_bar=False)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    again = optuna_energy.run_study(config, n_trials=4, show_progress_bar=False)
    assert len(again.trials) == 4


def test_resuming_with_other_objectives_is_refused(tmp_path):
    config = tiny_config(tmp_path)
    optuna_energy.run_study(config, n_trials=1, show_progress_bar=False)
    with pytest.raises(optuna_energy.ConfigError, match="already exists with objectives"):
        optuna_energy.run_study(config, objectives=["accuracy", "params"], show_progress_bar=False)


def test_resuming_with_settings_that_define_trials_is_refused_naming_them(tmp_path):
    config = tiny_config(tmp_path, n_trials=1)
    optuna_energy.run_study(config, show_progress_bar=False)
    changed = {**config, "training": {**config["training"], "epochs": 3}}
    with pytest.raises(optuna_energy.ConfigError,
                       match=r"training.epochs = 1 \(now 3\).*restore them or use another study name"):
        optuna_energy.run_study(changed, n_trials=2, show_progress_bar=False)
    # What decides how trials run, not what they are, may change.
    guarded = {**config, "training": {**config["training"], "max_memory_share": 0.9}}
    study = optuna_energy.run_study(guarded, n_trials=2, sampler="random", device="cpu",
                                    show_progress_bar=False)
    assert len(study.trials) == 2


def test_a_first_run_that_ran_no_trial_does_not_fix_the_stored_config(tmp_path):
    config = tiny_config(tmp_path, n_trials=1)
    with pytest.raises(DeviceError):  # fails before any trial (no such device)
        optuna_energy.run_study({**config, "study": {**config["study"], "device": "cuda:7"}},
                                show_progress_bar=False)
    changed = {**config, "training": {**config["training"], "epochs": 2}}
    study = optuna_energy.run_study(changed, show_progress_bar=False)
    assert study.user_attrs["config"]["training"]["epochs"] == 2


def test_a_study_stored_before_the_meter_tables_resumes_and_exports_with_its_config(tmp_path):
    config = tiny_config(tmp_path, n_trials=1)
    study = optuna_energy.run_study(config, show_progress_bar=False)
    old = study.user_attrs["config"]
    measure = {key: value for key, value in old["measure"].items() if key not in ("nvml", "rapl")}
    study.set_user_attr("config", {**old, "measure": {**measure, "power_interval_s": 0.25}})
    resumed = optuna_energy.run_study(config, n_trials=2, show_progress_bar=False)
    assert len(resumed.trials) == 2
    assert study_config(resumed).measure.meters["nvml"].power_interval_s == 0.25


class _ExplodingLoss(torch.nn.CrossEntropyLoss):
    """The real loss, times infinity: what a diverged run reports, without hunting for a learning
    rate that diverges on every sampled network (the config caps learning_rate at 10)."""

    def forward(self, logits, labels):
        return super().forward(logits, labels) * float("inf")


def test_diverging_training_fails_the_trial_and_the_study_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr("optuna_energy.trial.train.nn.CrossEntropyLoss", _ExplodingLoss)
    config = tiny_config(tmp_path)
    study = optuna_energy.run_study(config, n_trials=2, show_progress_bar=False)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    for trial in study.trials:
        assert "non-finite training loss" in trial.user_attrs["failure_reason"]
        assert "architecture" in trial.user_attrs  # what failed is still known


def test_constraints_are_set_and_mirrored(tmp_path):
    config = tiny_config(tmp_path, learns=True)
    config["constraints"] = {"max_params": 5000}
    study = optuna_energy.run_study(config, show_progress_bar=False)
    eval_labels = load_dataset(load_config(config).dataset, seed=0).eval_y
    above_chance = ChanceLevel(accuracy=np.bincount(eval_labels).max() / len(eval_labels),
                               eval_images=len(eval_labels)).learned_threshold
    assert study.get_trials(states=(TrialState.COMPLETE,))
    for trial in study.trials:
        violations = {"params": trial.user_attrs["params"] - 5000}
        if trial.state != TrialState.COMPLETE:  # over max_params, never trained; or at chance
            assert trial.constraints == pytest.approx(violations)  # the costs', set before training
            continue
        violations["learned"] = above_chance - trial.user_attrs["accuracy"]
        assert trial.constraints == pytest.approx(violations)
        assert trial.user_attrs["constraints"] == pytest.approx(violations)
        assert trial.user_attrs["feasible"] is all(v <= 0 for v in violations.values())


def test_a_model_no_better_than_the_majority_class_is_infeasible(tmp_path):
    """Labels that images do not predict: nothing beats answering the most frequent class."""
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=600, p=[0.8, 0.1, 0.1])
    images = rng.integers(0, 256, size=(600, 1, 8, 8), dtype=np.uint8)
    data = from_tensors(images[:400], labels[:400], images[400:], labels[400:], name="noise")
    config = tiny_config(tmp_path, n_trials=4)
    config["training"]["epochs"] = 3
    config["early_stopping"] = {"enabled": False}  # trained fully, as the paper does (else stopped)
    study = optuna_energy.run_study(config, dataset=data, show_progress_bar=False)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 4
    assert not [t for t in study.trials if t.user_attrs["feasible"]]
    assert study.best_trials == []  # Optuna leaves infeasible trials off the Pareto front


def test_seeded_runs_repeat(tmp_path):
    first = optuna_energy.run_study(tiny_config(tmp_path / "a"), show_progress_bar=False)
    second = optuna_energy.run_study(tiny_config(tmp_path / "b"), show_progress_bar=False)
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    accuracies = [[t.user_attrs["accuracy"] for t in s.trials] for s in (first, second)]
    assert accuracies[0] == accuracies[1]
    assert not any(math.isnan(a) for a in accuracies[0])


def test_memory_objective_from_the_cli_to_the_report_with_its_constraint(tmp_path, capsys):
    from optuna_energy.cli import main
    from optuna_energy.store.record import TrialRecord

    config = tmp_path / "memory.toml"
    config.write_text(f"""
[study]
name = "memory"
storage = "sqlite:///{tmp_path / 'study.db'}"
n_trials = 4
device = "cpu"
objectives = ["accuracy", "memory"]
[training]
epochs = 1
batch_sizes = [128]
[space]
conv_channels = [4, 16]
inception_width = [2, 8]
linear_width = [8, 64]
[measure]
min_window_seconds = 0.01
idle_seconds = 0.0
meter = "estimate"
batch_size = 50
[constraints]
max_memory = 1e12
""")
    assert main(["run", str(config)]) == 0
    assert "peak memory" in capsys.readouterr().out
    study = optuna.load_study(study_name="memory", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert study.metric_names == ["accuracy", "memory"]
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        stored = TrialRecord.of(trial)
        profile_ = profile(stored.architecture, (1, 8, 8), 10)
        # On a CPU: fp32 parameters plus every layer's output for a batch of 50.
        assert trial.values[1] == stored.memory_bytes == 4 * (profile_.params + 50 * profile_.activations)
        assert "memory" in trial.constraints and trial.constraints["memory"] < 0
    assert main(["report", str(config), "--out", str(tmp_path / "report")]) == 0
    assert "peak memory" in capsys.readouterr().out
    assert "memory_bytes" in (tmp_path / "report" / "table.csv").read_text().splitlines()[0]


def _first_proposals(study: optuna.Study, count: int) -> list[list[float]]:
    proposals = []
    for _ in range(count):
        trial = study.ask()
        proposals.append([trial.suggest_float(f"x{i}", 0, 1) for i in range(4)])
    return proposals


@pytest.mark.parametrize("sampler", ["evolution", "tpe", "nsga2", "random", "gp"])
def test_two_processes_with_one_seed_never_propose_the_same_trials(tmp_path, sampler) -> None:
    config = load_config(tiny_config(tmp_path, sampler=sampler, seed=7))
    # Two processes that joined the fresh study at the same moment: each has its own sampler.
    first, second = create_or_load_study(config), create_or_load_study(config)
    ours, theirs = [], []
    for _ in range(3):
        ours += _first_proposals(first, 1)
        theirs += _first_proposals(second, 1)
    assert not {tuple(p) for p in ours} & {tuple(p) for p in theirs}
    # Alone on a fresh study, the seed replays exactly.
    again = load_config(tiny_config(tmp_path / "again", sampler=sampler, seed=7))
    (tmp_path / "again").mkdir()
    assert _first_proposals(create_or_load_study(again), 1) == ours[:1]
