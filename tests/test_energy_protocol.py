"""The inference-energy protocol and what every trial records, on the CPU path (RAPL, estimate)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from optuna_energy import run_study
from optuna_energy.config import ConfigError, DatasetSection, load_config
from optuna_energy.data import DeviceData, load_dataset
from optuna_energy.host.meters import (
    EnergyMeterWarning,
    EstimateMeter,
    RaplMeter,
    Work,
    estimate,
)
from optuna_energy.host.meters.rapl import POWERCAP_ROOT_ENV
from optuna_energy.measuring.measure import (
    energy_per_inference,
    measure_idle_watts,
    measure_inference,
    metered,
)
from optuna_energy.model.arch import build_model, profile
from optuna_energy.trial.train import TrialFailure
from tests.test_energy_rapl import PowercapTree

WATTS = 40.0
ONE_PACKAGE = {"intel-rapl:0": ("package-0", WATTS, 10**12)}


@pytest.fixture
def tree(tmp_path: Path) -> PowercapTree:
    return PowercapTree(tmp_path / "powercap", ONE_PACKAGE)


@pytest.fixture(scope="module")
def digits() -> DeviceData:
    return DeviceData(load_dataset(DatasetSection()), torch.device("cpu"))


def test_window_lasts_the_minimum_and_energy_is_per_image_inferred(
        tree: PowercapTree, digits: DeviceData) -> None:
    spec = [{"slot": 0, "kind": "linear", "out_features": 10}]
    model = build_model(spec, (1, 8, 8), 10)
    with RaplMeter(tree.root) as meter, tree.advancing():
        result = measure_inference(model, digits, batch_size=100, warmup_batches=1,
                                   min_window_seconds=0.3, meter=meter, costs=profile(spec, (1, 8, 8), 10))
    assert result.window_seconds >= 0.3
    assert result.images == result.passes * len(digits.eval_y)
    assert result.seconds_per_pass * result.passes <= result.window_seconds
    assert result.window_joules == pytest.approx(WATTS * result.window_seconds, rel=0.03)


def test_idle_power_is_the_rate_the_counters_advance_at(tree: PowercapTree) -> None:
    with RaplMeter(tree.root) as meter, tree.advancing():
        assert measure_idle_watts(meter, 0.3) == pytest.approx(WATTS, rel=0.03)
        assert measure_idle_watts(meter, 0.0) == 0.0


def test_a_window_whose_work_fails_is_cancelled_and_can_open_again(tree: PowercapTree) -> None:
    def fail() -> None:
        raise TrialFailure("out of memory")

    cpu = torch.device("cpu")
    with RaplMeter(tree.root) as meter, tree.advancing():
        with pytest.raises(TrialFailure):
            metered(meter, "training", cpu, fail)
        result, window = metered(meter, "training", cpu, lambda: time.sleep(0.05) or "trained")
    assert result == "trained"
    assert window.seconds >= 0.05 and window.joules > 0


def _study_config(tmp_path: Path, **measure: object) -> dict:
    return {
        "study": {"name": "energy", "storage": f"sqlite:///{tmp_path / 'study.db'}", "n_trials": 2,
                  "device": "cpu", "sampler": "random"},
        "training": {"epochs": 1, "batch_sizes": [128]},
        "space": {"feature_slots": 4, "classifier_slots": 2, "conv_channels": [4, 8],
                  "inception_width": [2, 4], "linear_width": [8, 32]},
        "measure": {"min_window_seconds": 0.1, "idle_seconds": 0.2, **measure},
    }


ENERGY_ATTRS = ("energy_source", "energy_gross_j", "energy_net_j", "energy_window_s",
                "energy_window_images", "train_energy_j", "train_window_s", "idle_watts")


def test_every_trial_records_rapl_energy_and_the_chosen_objective(
        tree: PowercapTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POWERCAP_ROOT_ENV, str(tree.root))
    with tree.advancing():
        study = run_study(_study_config(tmp_path, energy="gross"), show_progress_bar=False)
    trials = study.get_trials(states=[TrialState.COMPLETE])
    assert len(trials) == 2
    energy_index = study.metric_names.index("energy")
    for trial in trials:
        attrs = trial.user_attrs
        assert set(ENERGY_ATTRS) <= set(attrs)
        assert attrs["energy_source"] == "rapl"
        assert attrs["idle_watts"] == pytest.approx(WATTS, rel=0.05)
        assert attrs["energy_window_s"] >= 0.1
        per_image = WATTS * attrs["energy_window_s"] / attrs["energy_window_images"]
        assert attrs["energy_gross_j"] == pytest.approx(per_image, rel=0.05)
        idle_per_image = attrs["idle_watts"] * attrs["energy_window_s"] / attrs["energy_window_images"]
        assert attrs["energy_net_j"] == pytest.approx(max(attrs["energy_gross_j"] - idle_per_image, 0.0))
        # The counter-writing thread can lag a window edge by tens of ms on a loaded machine.
        assert attrs["train_energy_j"] == pytest.approx(WATTS * attrs["train_window_s"], rel=0.05,
                                                        abs=WATTS * 0.05)
        assert attrs["train_window_s"] >= attrs["train_seconds"]
        assert attrs["meter"]["domains"] == ["package-0"]
        assert trial.values[energy_index] == attrs["energy_gross_j"]


def test_with_the_estimate_every_trial_says_so(
        tree: PowercapTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Named in the config, the estimate is used although RAPL could be read, without a warning."""
    monkeypatch.setenv(POWERCAP_ROOT_ENV, str(tree.root))
    with warnings.catch_warnings():
        warnings.simplefilter("error", EnergyMeterWarning)
        study = run_study(_study_config(tmp_path, meter="estimate"), n_trials=1, show_progress_bar=False)
    energy_index = study.metric_names.index("energy")
    (trial,) = study.get_trials(states=[TrialState.COMPLETE])
    attrs = trial.user_attrs
    assert set(ENERGY_ATTRS) <= set(attrs)
    assert attrs["energy_source"] == "estimate"
    assert attrs["energy_gross_j"] == attrs["energy_net_j"] == trial.values[energy_index] > 0
    assert attrs["train_energy_j"] > 0
    assert attrs["meter"]["joules_per_mac"] == estimate.JOULES_PER_MAC  # says how it was computed


def test_an_unknown_meter_in_the_config_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match=r"^\[measure\] meter is 'nvml'; allowed: auto, nvml-counter, "
                                          "nvml-power, rapl, estimate$"):
        load_config({"measure": {"meter": "nvml"}})


def test_the_estimate_is_a_meter_whose_windows_are_computed_from_their_work(digits: DeviceData) -> None:
    spec = [{"slot": 0, "kind": "linear", "out_features": 10}]
    costs = profile(spec, (1, 8, 8), 10)
    result = measure_inference(build_model(spec, (1, 8, 8), 10), digits, batch_size=100,
                               warmup_batches=0, min_window_seconds=0.05, meter=EstimateMeter(),
                               costs=costs)
    per_image = estimate.inference_joules(macs=costs.macs, params=costs.params,
                                          activations=costs.activations, batch_size=100)
    assert energy_per_inference(result, idle_watts=0.0) == pytest.approx((per_image, per_image))
    _, window = metered(EstimateMeter(), "training", torch.device("cpu"), lambda: "trained",
                        work=lambda _: Work(macs=costs.macs, params=costs.params,
                                            activations=costs.activations, batch_size=32,
                                            images=1000, training=True))
    assert window.joules == pytest.approx(estimate.training_joules(
        macs=costs.macs, params=costs.params, activations=costs.activations, batch_size=32, images=1000))
