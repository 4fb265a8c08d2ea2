"""The optuna-energy command: one-line errors for bad input, resumable after Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optuna_energy.cli import main

DIGITS = str(Path(__file__).parents[1] / "studies" / "digits.toml")


def _error_line(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("toml, expected", [
    ('[dataset]\nname = "mnist"', "[dataset] name is 'mnist'; allowed: digits"),
    ('[study]\nobjectives = ["accuracy", "flops"]',
     "[study] objectives entry is 'flops'; allowed: accuracy, inference_time, params, energy"),
    ('[study]\nobjectives = ["accuracy"]', "[study] objectives needs at least two of"),
    ('[study]\nsampler = "cmaes"', "[study] sampler is 'cmaes'; allowed: tpe"),
    ('[study\nname = 1', "malformed TOML in"),
    ('[training]\nepochs = "ten"', "[training] epochs must be int, got 'ten'"),
    ('[training]\nepoch = 3', "unknown key 'epoch' in [training]; allowed: "),
    ('[space]\nkernel_size = [5, 3]', "[space] kernel_size must be [low, high]"),
])
def test_bad_config_gives_one_line_error(tmp_path, capsys, toml, expected):
    line = _error_line(capsys, ["run", _write(tmp_path / "bad.toml", toml)])
    assert line.startswith("optuna-energy: error: ")
    assert expected in line


def test_missing_config_file(tmp_path, capsys):
    line = _error_line(capsys, ["run", str(tmp_path / "nope.toml")])
    assert line == f"optuna-energy: error: config file not found: {tmp_path / 'nope.toml'}"


@pytest.mark.parametrize("url, expected", [
    ("sqlite:////proc/no/such/dir/x.db", "cannot create the directory for sqlite:////proc/no/such/dir/x.db"),
    ("redis://user:hunter2@localhost/0", "unsupported storage URL 'redis://user:***@localhost/0'; allowed schemes: sqlite://"),
    ("not a url", "unsupported storage URL 'not a url'"),
])
def test_unusable_storage_gives_one_line_error_without_password(capsys, url, expected):
    line = _error_line(capsys, ["run", DIGITS, "--storage", url])
    assert expected in line
    assert "hunter2" not in line


@pytest.mark.parametrize("argv, expected", [
    (["run", "--n-trials", "-3"], "argument --n-trials: expected a positive int, got '-3'"),
    (["run", "--timeout", "soon"], "argument --timeout: expected a positive float, got 'soon'"),
    (["run", "--sampler", "grid"], "argument --sampler: invalid choice: 'grid'"),
    (["fly"], "argument COMMAND: invalid choice: 'fly'"),
])
def test_bad_arguments_are_named(capsys, argv, expected):
    line = _error_line(capsys, argv)
    assert expected in line


def test_bad_device_and_objectives_from_the_command_line(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'x.db'}"
    line = _error_line(capsys, ["run", "--storage", storage, "--device", "tpu"])
    assert "[study] unknown device 'tpu'; allowed: auto, cpu, cuda, cuda:N" in line
    line = _error_line(capsys, ["run", "--storage", storage, "--objectives", "accuracy,joules"])
    assert "[study] objectives entry is 'joules'" in line


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "run" in out and "Energy-aware" in out


def test_ctrl_c_leaves_a_resumable_study(tmp_path):
    # A budget the run cannot finish between two polls below, even on a fast idle machine
    # (5 trials once did, in 4.5 s, before the first poll saw a completed trial).
    budget = 20
    storage = f"sqlite:///{tmp_path / 'interrupted.db'}"
    config = _write(tmp_path / "c.toml", "\n".join([
        '[study]', 'name = "ctrl-c"', 'device = "cpu"', f'n_trials = {budget}',
        # Networks that learn in their one epoch: one still at chance would end PRUNED.
        '[training]', 'epochs = 1', 'learning_rate = [1e-2, 3e-2]', 'optimizers = ["adam"]',
        '[space]', 'feature_slots = 4', 'classifier_slots = 2',
        'conv_channels = [4, 8]', 'linear_width = [8, 32]', 'inception_width = [2, 4]',
        '[measure]', 'min_window_seconds = 0.3', 'idle_seconds = 0.0',
    ]))
    command = [sys.executable, "-m", "optuna_energy", "run", config, "--storage", storage]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # Ctrl-C as a terminal delivers it, even where the test runner ignores it
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    completed = []
    while time.monotonic() < deadline and not completed:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="ctrl-c", storage=storage)
            completed = study.get_trials(states=(TrialState.COMPLETE,))
        except KeyError:  # the study is not created yet
            continue
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted; finished trials are stored, run the same command to resume" in err
    stored = optuna.load_study(study_name="ctrl-c", storage=storage).trials
    assert 1 <= len([t for t in stored if t.state == TrialState.COMPLETE]) < budget

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "Pareto front of study 'ctrl-c'" in resumed.stdout
    final = optuna.load_study(study_name="ctrl-c", storage=storage).trials
    assert len([t for t in final if t.state.is_finished() and t.state != TrialState.FAIL]) == budget
    assert not [t for t in final if t.state == TrialState.RUNNING]
