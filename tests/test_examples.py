"""The examples and the README's "Use it from your own objective" run as a user runs them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import optuna_energy
from optuna_energy import cli

REPO = Path(__file__).resolve().parent.parent
# One thread: the examples' models are tiny, and threads fight on a shared machine.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(arguments: list[str], cwd: Path) -> str:
    result = subprocess.run([sys.executable, *arguments], cwd=cwd, env=ENV, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_the_builtin_space_in_a_hand_written_loop(tmp_path):
    out = run([str(REPO / "examples" / "builtin_space_own_loop.py"), str(tmp_path), "--trials", "8"], tmp_path)
    assert "Pareto front of 'builtin-space'" in out and "energy/inference" in out
    study = optuna.load_study(study_name="builtin-space", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len(study.trials) == 8 and study.metric_names == ["accuracy", "energy"]
    assert all(trial.user_attrs["architecture"] is not None and trial.user_attrs["train_energy_j"] > 0
               for trial in study.trials)
    assert all(name.startswith(("s", "train_")) for trial in study.trials for name in trial.params)


def test_a_model_family_of_your_own_ends_with_the_report(tmp_path):
    out = run([str(REPO / "examples" / "own_model_family.py"), str(tmp_path), "--trials", "10"], tmp_path)
    assert "Highlighted models of study 'resnet-family'" in out and "The search spent" in out
    report = tmp_path / "report"
    assert {"report.md", "table.csv", "fig1_costs_vs_accuracy.png"} <= {path.name for path in report.iterdir()}
    study = optuna.load_study(study_name="resnet-family", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert any(trial.user_attrs["parents"] for trial in study.trials)  # bred by the evolution sampler


def test_your_own_model_gets_costs_first_early_stopping_and_the_budget_from_two_processes(tmp_path, capsys):
    arguments = [str(REPO / "examples" / "own_model.py"), str(tmp_path), "--trials", "8", "--epochs", "9",
                 "--max-train-epochs", "40", "--max-params", "3000", "--no-report"]
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # Made first: two processes creating one SQLite file's tables at once race (not the stopper's).
    optuna_energy.create_study(objectives=["accuracy", "energy"], storage=storage, study_name="mlp-family")
    # Two processes on one SQLite study: one budget, one set of rung peers.
    workers = [subprocess.Popen([sys.executable, *arguments, "--seed", str(seed)], cwd=tmp_path, env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (0, 1)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="mlp-family", storage=storage)
    records = [trial.user_attrs for trial in study.trials if not trial.user_attrs.get("over_budget")]
    assert len(study.trials) == 16 and sum(r["epochs_trained"] for r in records) <= 40
    stopped = [r for r in records if r.get("stop_reason")]
    assert any(r["stop_reason"] == "over max_params" and r["epochs_trained"] == 0 for r in stopped)
    assert any(r["epochs_trained"] > 0 and r["rung_accuracies"] for r in stopped)
    assert cli.main(["report", "--storage", storage, "--study-name", "mlp-family", "--out", str(tmp_path / "r")]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"Early stopping stopped {len(stopped)} of {len(records)} trials" in printed
    assert "CO2e at 400 g CO2e/kWh" in printed  # the intensity the example gave create_study


def test_the_readme_example_runs_and_its_study_reports(tmp_path, capsys, monkeypatch):
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Use it from your own objective", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    (tmp_path / "mine.py").write_text(code.group(1))
    run(["mine.py"], tmp_path)
    command = re.search(r"```bash\n(optuna-energy report .*?)\n```", section, re.S)
    assert command is not None
    arguments = command.group(1).split()[1:]
    monkeypatch.chdir(tmp_path)
    assert cli.main(arguments) == 0
    assert "Highlighted models of study 'mine'" in capsys.readouterr().out
    assert (tmp_path / "report" / "report.md").is_file()


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.py")), ids=lambda path: path.name)
def test_every_example_is_tested(example):
    assert example.stem in Path(__file__).read_text().replace("-", "_")


def test_a_stopped_example_shows_its_progress_and_leaves_no_trial_running(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    example = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "builtin_space_own_loop.py"), str(tmp_path), "--trials", "50"],
        cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal gives it
    deadline = time.monotonic() + 300
    while not _states(storage).count(TrialState.COMPLETE) or TrialState.RUNNING not in _states(storage):
        assert example.poll() is None and time.monotonic() < deadline, example.stderr.read()[-2000:]
        time.sleep(0.05)
    example.send_signal(signal.SIGINT)
    _, err = example.communicate(timeout=120)
    assert example.returncode != 0 and "/50 [" in err  # Optuna's bar over the trials
    assert TrialState.RUNNING not in _states(storage)


def _states(storage: str) -> list[TrialState]:
    """The example's trials' states, [] before it created its study."""
    try:
        return [trial.state for trial in optuna.load_study(study_name="builtin-space", storage=storage).trials]
    except KeyError:
        return []
