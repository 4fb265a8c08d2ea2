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


@pytest.mark.parametrize("resume_heartbeat", [0, 1])
def test_a_sigkilled_run_without_heartbeat_is_retried_by_the_resume(
        postgres_url: str, tmp_path: Path, resume_heartbeat: int,
        caplog: pytest.LogCaptureFixture) -> None:
    from tests.test_workers_pg import STUDY, Watch, start, tiny_config, wait_for

    config = tiny_config(tmp_path, n_trials=2, min_window_seconds=2.0)
    config.write_text(config.read_text().replace("heartbeat_interval = 1", "heartbeat_interval = 0"))
    run = start("run", config, postgres_url)
    watch = Watch(postgres_url)
    killed = wait_for(lambda: [trial for trial in watch.trials(TrialState.RUNNING)
                               if TrialRecord.of(trial).worker], "a started trial")[0]
    run.kill()
    run.communicate(timeout=30)
    resumed = load_config_text(config, heartbeat_interval=resume_heartbeat)
    with caplog.at_level(logging.WARNING):
        study = run_study(resumed, storage=postgres_url, timeout=90, show_progress_bar=False)
    assert study.study_name == STUDY
    states = [trial.state for trial in study.get_trials()]
    assert TrialState.RUNNING not in states, states
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 2, states
    assert f"trial {killed.number} belonged to worker" in caplog.text


def load_config_text(path: Path, *, heartbeat_interval: int):
    from optuna_energy.config import load_config

    text = path.read_text().replace("heartbeat_interval = 0", f"heartbeat_interval = {heartbeat_interval}")
    path.write_text(text)
    return load_config(path)


def test_waiting_for_a_silent_worker_says_for_which_trial_and_how_long(
        postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from optuna_energy import record
    from optuna_energy.config import load_config
    from optuna_energy.study import create_or_load_study, optimize_study

    config = load_config(tiny_config(tmp_path, storage=postgres_url, n_trials=1)
                         | {"storage": {"heartbeat_interval": 1, "grace_period": 4}})
    study = create_or_load_study(config)
    elsewhere = study.ask()  # a trial of a worker on another machine that beat once, then fell silent
    record.write(elsewhere, worker="another-node:4242")
    study._storage.record_heartbeat(elsewhere._trial_id)  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING):
        optimize_study(study, config)
    assert f"s for trial {elsewhere.number} of worker another-node:4242, which stopped answering" in caplog.text
    assert "waiting up to" in caplog.text
    assert [trial.state for trial in study.get_trials()][0] == TrialState.FAIL
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 1
