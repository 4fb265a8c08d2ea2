"""What the command prints fits 100 columns, warnings and the progress bar included, in a wide
terminal too; and ``--help`` is answered without importing PyTorch, Optuna or matplotlib."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import optuna_energy.config
import optuna_energy.export
from optuna_energy.choices import DEFAULT_EXPORT_FORMAT, EXPORT_FORMATS, SAMPLER_NAMES
from optuna_energy.host.meters import EnergyEstimateWarning, select_meter
from optuna_energy.host.terminal import MAX_COLUMNS
from tests.helpers import tiny_config, write_toml

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "optuna", "matplotlib")


def _command(*args: str, env: dict[str, str], importtime: bool = False) -> subprocess.CompletedProcess:
    options = ["-X", "importtime"] if importtime else []
    return subprocess.run([sys.executable, *options, "-m", "optuna_energy", *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600, check=False)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "250", **extra}


def _printed(result: subprocess.CompletedProcess) -> list[str]:
    """stdout and stderr as the user sees them, each redraw of the progress bar (carriage
    returns) a line of its own."""
    return (result.stdout + "\n" + result.stderr).replace("\r", "\n").splitlines()


def test_run_and_report_fit_100_columns_in_a_wide_terminal(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, n_trials=4)
    config["measure"]["meter"] = "auto"  # without a powercap tree: the estimate, with its warning
    env = _env(OPTUNA_ENERGY_POWERCAP_ROOT=str(tmp_path / "absent"))
    run = _command("run", str(write_toml(tmp_path / "tiny.toml", config)), env=env)
    assert run.returncode == 0, run.stderr
    report = _command("report", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "report"), env=env)
    assert report.returncode == 0, report.stderr
    lines = _printed(run) + _printed(report)
    assert any("warning: no hardware energy meter works" in line for line in lines)
    assert any("Highlighted models" in line for line in lines)
    too_wide = [line for line in lines if len(line) > MAX_COLUMNS]
    assert not too_wide, "\n".join(too_wide)


def test_help_imports_nothing_heavy() -> None:
    for args in (["--help"], ["run", "--help"], ["export", "--help"]):
        result = _command(*args, env=_env(), importtime=True)
        assert result.returncode == 0 and "usage: optuna-energy" in result.stdout, result.stderr
        imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "optuna_energy.cli_parser" in imported  # the listing is real
        assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_the_parser_offers_the_names_the_package_implements() -> None:
    assert tuple(optuna_energy.config.SAMPLERS) == SAMPLER_NAMES
    assert (EXPORT_FORMATS, DEFAULT_EXPORT_FORMAT) == (optuna_energy.export.FORMATS,
                                                       optuna_energy.export.DEFAULT_FORMAT)


def test_the_meter_warning_prints_no_source_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPTUNA_ENERGY_POWERCAP_ROOT", str(tmp_path / "absent"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        select_meter("cpu")
    [warning] = caught
    assert warning.category is EnergyEstimateWarning
    shown = warnings.formatwarning(warning.message, warning.category, warning.filename, warning.lineno,
                                   warning.line)
    assert shown.count("\n") == 1 and "no hardware energy meter works" in shown, shown
