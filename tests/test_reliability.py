"""Failure paths: bugs in the objective, quiet failed trials, dead workers, bad inputs (issue 11)."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optuna_energy import objective as objective_module
from optuna_energy.objective import MAX_UNEXPECTED_IN_A_ROW, ObjectiveError
from optuna_energy.record import TrialRecord
from optuna_energy.study import run_study
from tests.helpers import tiny_config


def _broken_build_model(*args, **kwargs):
    raise ValueError("a bug in build_model")


def test_unexpected_exceptions_are_recorded_counted_and_stop_the_run(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(objective_module, "build_model", _broken_build_model)
    config = tiny_config(tmp_path, storage=postgres_url, n_trials=10, timeout=60)
    with caplog.at_level(logging.WARNING), pytest.raises(ObjectiveError) as raised:
        run_study(config, show_progress_bar=False)
    assert f"{MAX_UNEXPECTED_IN_A_ROW} trials in a row" in str(raised.value)
    assert "unexpected ValueError: a bug in build_model" in str(raised.value)
    study = optuna.load_study(study_name="tiny", storage=postgres_url)
    trials = study.get_trials()
    assert len(trials) == MAX_UNEXPECTED_IN_A_ROW  # not retried again and again
    assert all(trial.state == TrialState.FAIL for trial in trials)
    assert {TrialRecord.of(trial).failure_reason for trial in trials} == {
        "unexpected ValueError: a bug in build_model"}
    assert "another worker" not in caplog.text


def test_a_failed_trial_is_one_line_without_parameters_or_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(objective_module, "build_model", _broken_build_model)
    config = tiny_config(tmp_path, n_trials=1)
    with pytest.raises(ObjectiveError) if MAX_UNEXPECTED_IN_A_ROW == 1 else _no_error():
        run_study(config, show_progress_bar=False)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "trial 0" in line.lower()]
    assert lines == ["trial 0 failed: unexpected ValueError: a bug in build_model"] or \
        [line.split("] ", 1)[-1] for line in lines] == [
            "trial 0 failed: unexpected ValueError: a bug in build_model"], err
    assert "Traceback" not in err and "with parameters" not in err and "failed with value" not in err


class _no_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> bool:
        return False
