"""bench/gpu without a GPU: its dry run, and the choice of wheels the GPU machine needs.

GPU machines are lent rarely; the dry run runs every stage of ``bench/gpu/run.sh`` on the CPU
at toy sizes against the stand-in ``pynvml``, so the script is known to work when one comes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu.gather_wheels import needs
from tests.nvml_standin import FakeNvml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("gpu-dry-run")
    environment = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    completed = subprocess.run(["bash", "bench/gpu/run.sh", "--dry-run"], cwd=REPO, env=environment,
                               capture_output=True, text=True, timeout=300)
    return completed, out


def test_dry_run_runs_every_stage_and_writes_the_report(dry_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    completed, out = dry_run
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["dry_run"] is True
    assert report["command"] == "bash bench/gpu/run.sh --dry-run"
    stages = report["stages"]
    assert list(stages) == ["environment", "gpu_tests", "energy_protocol", "data_path", "packing", "search"]
    assert not [name for name, stage in stages.items() if "error" in stage]
    assert stages["environment"]["nvml"]["device_name"] == "Fake H100"
    markdown = (out / "report.md").read_text()
    assert all(f"## {name} (" in markdown for name in list(stages)[1:])
    assert "=== search: ok" in (out / "log.txt").read_text()


def test_dry_run_collects_the_gpu_tests_that_normal_runs_leave_out(
        dry_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    collected = json.loads((dry_run[1] / "report.json").read_text())["stages"]["gpu_tests"]["collected"]
    assert collected and all(test.startswith("tests/gpu/") for test in collected)
    # Without the flag the folder's conftest ignores every file, even when the folder is named.
    normal = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                             "tests/gpu"], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={key: value for key, value in os.environ.items()
                                 if key != "OPTUNA_ENERGY_GPU_TESTS"})
    assert normal.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, normal.stdout
    assert "tests/gpu/" not in normal.stdout


def test_dry_run_pairs_counter_and_power_sampling_over_the_same_windows(
        dry_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    """The stand-in draws a constant 250 W: both meters must find it, window for window."""
    protocol = json.loads((dry_run[1] / "report.json").read_text())["stages"]["energy_protocol"]
    assert protocol["energy_source"] == "nvml-counter"
    assert protocol["idle_watts"]["nvml-counter"] == pytest.approx(250, rel=0.05)
    assert protocol["idle_watts"]["nvml-power"] == pytest.approx(250, rel=0.05)
    assert set(protocol["models"]) == {"small", "medium", "large"}
    for measured in protocol["models"].values():
        windows = measured["counter_vs_power"]["windows"]
        assert len(windows) == protocol["repeats"]
        for window in windows:
            assert window["counter_j"] / window["seconds"] == pytest.approx(250, rel=0.1)
            assert window["power_over_counter"] == pytest.approx(1, rel=0.1)


def test_dry_run_search_reports_its_rate_time_split_and_sampled_utilisation(
        dry_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    search = json.loads((dry_run[1] / "report.json").read_text())["stages"]["search"]
    summary = search["summary"]
    assert summary["finished_trials"] == summary["complete_trials"] == 2
    assert summary["trials_per_gpu_hour"] == pytest.approx(3600 * 2 / summary["trials_s"])
    split = summary["median_s"]
    assert split["training"] > 0 and split["measuring"] > 0
    assert split["overhead"] >= 0  # a trial's own training and measuring lie inside its wall time
    assert search["utilisation"]["samples"] > 0
    assert search["utilisation"]["gpu_mean_percent"] == FakeNvml().utilization_percent
    assert search["energy"]["mean_watts"] == pytest.approx(250, rel=0.05)


def test_dry_run_packs_workers_and_measures_one_architecture_again_and_again(
        dry_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    packing = json.loads((dry_run[1] / "report.json").read_text())["stages"]["packing"]
    assert list(packing["per_gpu"]) == ["1", "2"]
    for row in packing["per_gpu"].values():
        assert row["exit_codes"] == [0] * len(row["exit_codes"])
        assert row["finished_trials"] == row["reference_trials"] == packing["repeats"]
        assert row["trials_per_gpu_hour"] > 0
        assert row["energy"]["mean_watts"] == pytest.approx(250, rel=0.05)  # the stand-in's GPU
        assert row["energy_per_inference_j_cv"] >= 0
    assert len(packing["per_gpu"]["2"]["exit_codes"]) == 2


def test_wheels_are_gathered_only_for_what_the_gpu_machine_lacks() -> None:
    assert needs(["optuna>=5", "numpy", "torch>=2.4", "psycopg[binary]>=3.1", "tomli; python_version < '3.11'",
                  "colorama; sys_platform == 'win32'", "PyMySQL; extra == 'mysql'", "Mako"]) == {"optuna", "mako"}
