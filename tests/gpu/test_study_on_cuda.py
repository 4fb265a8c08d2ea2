"""A study on CUDA measures with the NVML energy counter, and its models export from the GPU."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from optuna_energy import run_study
from optuna_energy.export import FORMATS, export_trial
from optuna_energy.host.meters import EnergyMeterWarning, GpuId
from tests.helpers import tiny_config

MIN_WINDOW_S = 0.3


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    config = tiny_config(tmp_path_factory.mktemp("cuda-study"), device="cuda", n_trials=3)
    config["measure"] = {"min_window_seconds": MIN_WINDOW_S, "idle_seconds": 0.5, "warmup_batches": 1,
                         "meter": "auto"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", EnergyMeterWarning)  # the best meter works: no step down
        return run_study(config, show_progress_bar=False)


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(states=[TrialState.COMPLETE])


def test_every_trial_on_cuda_is_measured_by_the_nvml_counter_of_its_gpu(study: optuna.Study, gpu: GpuId) -> None:
    trials = _complete(study)
    assert len(trials) == 3
    for trial in trials:
        attrs = trial.user_attrs
        assert attrs["device"] == "cuda"
        assert attrs["energy_source"] == "nvml-counter"
        assert attrs["meter"]["uuid"].removeprefix("GPU-") == gpu.uuid.removeprefix("GPU-")
        limit = attrs["meter"]["power_limit_w"]
        assert 0 < attrs["idle_watts"] < limit
        assert attrs["energy_window_s"] >= MIN_WINDOW_S
        assert attrs["energy_gross_j"] > 0
        assert 0 <= attrs["energy_net_j"] <= attrs["energy_gross_j"]
        window_watts = attrs["energy_gross_j"] * attrs["energy_window_images"] / attrs["energy_window_s"]
        assert window_watts <= 1.1 * limit
        assert attrs["train_energy_j"] > 0
        assert attrs["train_window_s"] >= attrs["train_seconds"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_model_retrained_on_cuda_exports_and_the_file_predicts_as_it_does(
        study: optuna.Study, tmp_path: Path, fmt: str) -> None:
    trial = max(_complete(study), key=lambda t: t.user_attrs["accuracy"])
    result = export_trial(study, trial.number, fmt=fmt, path=tmp_path / f"model.{fmt}", device="cuda")
    assert result.weights == "retrained"
    # export_trial raises if the file's classes differ from the model's; its logits must match too.
    assert result.max_abs_difference < 1e-3
    # cuDNN may choose non-deterministic kernels, so a retrained model need not hit the same
    # accuracy to the last image; it must land close to the search's.
    assert result.accuracy == pytest.approx(trial.user_attrs["accuracy"], abs=0.05)
