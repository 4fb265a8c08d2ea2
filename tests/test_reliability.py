"""Failure paths: bugs in the objective, quiet failed trials, dead workers, bad inputs (issue 11)."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optuna_energy.store.record import TrialRecord
from optuna_energy.study import run_study
from optuna_energy.trial import objective as objective_module
from optuna_energy.trial.objective import MAX_UNEXPECTED_IN_A_ROW, ObjectiveError
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
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(objective_module, "build_model", _broken_build_model)
    config = tiny_config(tmp_path, n_trials=1)
    with caplog.at_level(logging.WARNING, logger="optuna"):
        run_study(config, show_progress_bar=False)
    said = [record for record in caplog.records if record.name.startswith("optuna.study")]
    assert [record.getMessage() for record in said] == [
        "trial 0 failed: unexpected ValueError: a bug in build_model"]
    assert said[0].exc_info is None and said[0].levelno == logging.WARNING


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
    from optuna_energy.config import load_config
    from optuna_energy.store import record
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


@pytest.fixture(scope="module")
def stored_study(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file holding a finished one-trial study named 'tiny'."""
    folder = tmp_path_factory.mktemp("stored")
    run_study(tiny_config(folder, n_trials=1), show_progress_bar=False)
    return f"sqlite:///{folder / 'study.db'}"


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    from optuna_energy.cli import main

    with pytest.raises(SystemExit) if any(arg.startswith("--port") for arg in argv) else _no_error():
        code = main(argv)
        assert code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 or err.splitlines()[-1].startswith("optuna-energy dashboard: error"), err
    return err.splitlines()[-1]


@pytest.mark.parametrize(("argv", "expected"), [
    (["run", "--seed", "-1"], "seed must be an integer from 0 to"),
    (["run", "--objectives", ""], "objectives must not be empty"),
    (["run", "--storage", ""], "storage must not be empty"),
    (["dashboard", "--port", "70000"], "expected a TCP port from 1 to 65535"),
])
def test_bad_options_are_one_line(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert expected in _one_line_error(capsys, argv)


def test_bad_config_files_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    huge = tmp_path / "huge.toml"
    huge.write_text("[study]\nseed = 99999999999999999999\n")
    assert "seed must be an integer from 0 to" in _one_line_error(capsys, ["run", str(huge)])
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[study]\nname = "caf\xe9"\n')
    assert "is not UTF-8 text" in _one_line_error(capsys, ["run", str(latin)])
    steep = tmp_path / "steep.toml"
    steep.write_text("[training]\nlearning_rate = [1e-3, 1e3]\n")
    assert "learning_rate must lie in (0, 10]" in _one_line_error(capsys, ["run", str(steep)])
    digits = tmp_path / "digits.toml"
    digits.write_text('[dataset]\nname = "digits"\nroot = "data"\n')
    assert "root applies only to datasets read from disk" in _one_line_error(capsys, ["run", str(digits)])
    digits.write_text('[dataset]\nname = "digits"\ndownload = true\n')
    error = _one_line_error(capsys, ["run", str(digits)])
    assert "digits needs no download" in error and "under root" not in error


def test_foreign_files_are_refused_untouched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    for name, table in (("app.db", "studies (id INTEGER, title TEXT)"), ("shop.db", "invoices (id INTEGER)")):
        with sqlite3.connect(tmp_path / name) as connection:
            connection.execute(f"CREATE TABLE {table}")
        error = _one_line_error(capsys, ["run", "--storage", f"sqlite:///{tmp_path / name}"])
        assert "another application's SQLite database" in error
        with sqlite3.connect(tmp_path / name) as connection:
            assert len(connection.execute("SELECT name FROM sqlite_master").fetchall()) == 1  # untouched
    text = tmp_path / "notes.log"
    text.write_text("not a journal\n")
    error = _one_line_error(capsys, ["run", "--storage", f"journal:///{text}"])
    assert "is not an Optuna journal file" in error


def test_read_only_commands_never_create_storage(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in (["report", "--out", "r"], ["export", "--trial", "0", "--format", "torchscript", "-o", "m.pt"],
                 ["dashboard"]):
        error = _one_line_error(capsys, [*argv, "--storage", "sqlite:///typo_dir/x.db"])
        assert "never creates one" in error
    assert list(tmp_path.iterdir()) == []


def test_read_only_commands_honour_the_storage_variable(
        stored_study: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna_energy.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPTUNA_ENERGY_STORAGE", stored_study)
    assert main(["report", "--out", "r"]) == 0
    assert "Highlighted models of study 'tiny'" in capsys.readouterr().out
    assert sorted(path.name for path in tmp_path.iterdir()) == ["r"]  # no ./optuna_energy.db


def test_report_out_paths_are_checked_first(stored_study: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "existing.md"
    existing.write_text("keep me")
    error = _one_line_error(capsys, ["report", "--storage", stored_study, "--out", str(existing)])
    assert "is a file; the report is a folder" in error
    assert existing.read_text() == "keep me"
    error = _one_line_error(capsys, ["report", "--storage", stored_study, "--out", "/proc/optuna-energy"])
    assert "cannot create the report folder /proc/optuna-energy" in error


def test_python_api_misuse_is_one_clear_error(tmp_path: Path) -> None:
    from optuna_energy.config import ConfigError

    with pytest.raises(ConfigError, match="config must be a TOML path, a mapping"):
        run_study(123)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="objectives must be a list of names .* got the string"):
        run_study(tiny_config(tmp_path), objectives="accuracy,energy")  # type: ignore[arg-type]


def test_one_class_image_folder_is_refused(tmp_path: Path) -> None:
    from optuna_energy.config import load_config
    from optuna_energy.data import DatasetError, load_dataset

    (tmp_path / "cats").mkdir()
    config = load_config({"dataset": {"name": "imagefolder", "root": str(tmp_path), "image_size": 8}})
    with pytest.raises(DatasetError, match="only one class folder"):
        load_dataset(config.dataset)


def test_dashboard_on_a_busy_port_is_one_line(stored_study: str, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from optuna_energy.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dashboard", "--storage", stored_study, "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"optuna-energy: error: cannot serve on 127.0.0.1:{port}"), err
    assert "Traceback" not in "\n".join(err)


def test_ctrl_c_while_starting_is_one_line(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    # SIGINT as a terminal gives it (a runner started in the background may pass it on ignored);
    # "starting" once the light entry point is loaded and the heavy import begins.
    child = ("import signal, sys, optuna_energy.entry as e; "
             "signal.signal(signal.SIGINT, signal.default_int_handler); "
             "print('starting', flush=True); sys.exit(e.main(['run']))")
    process = subprocess.Popen([sys.executable, "-c", child], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "starting\n"
    time.sleep(0.2)  # inside the import of the command (PyTorch, Optuna: seconds)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert "Traceback" not in err, err
    assert process.returncode == 130
    assert err.strip().splitlines()[-1].startswith("optuna-energy: interrupted")


def test_many_processes_create_a_fresh_sqlite_schema_at_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    code = ("import sys, optuna; from optuna_energy.store.storage import open_storage; "
            f"optuna.create_study(storage=open_storage({url!r}), study_name='s', load_if_exists=True)")
    processes = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
                 for _ in range(8)]
    errors = [process.communicate(timeout=300)[1] for process in processes]
    failed = [error for process, error in zip(processes, errors) if process.returncode != 0]
    assert not failed, failed[0]


def test_two_seeded_runs_on_one_study_train_different_architectures(postgres_url: str, tmp_path: Path) -> None:
    import json

    from tests.test_workers_pg import finish, load, start
    from tests.test_workers_pg import tiny_config as worker_config

    config = worker_config(tmp_path, n_trials=8, min_window_seconds=0.05)  # seed 0, random sampler
    finish([start("run", config, postgres_url), start("run", config, postgres_url)])
    trials = [trial for trial in load(postgres_url).get_trials()
              if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and not TrialRecord.of(trial).over_budget]
    architectures = [json.dumps(trial.params, sort_keys=True) for trial in trials]
    assert len(trials) == 8
    # Processes that join an empty study in the same instant share one first proposal at most.
    assert len(set(architectures)) >= len(architectures) - 1, [
        (trial.number, TrialRecord.of(trial).worker, hash(name) % 1000) for trial, name in zip(trials, architectures)]


def test_a_seeded_single_run_is_reproducible_and_a_resume_proposes_new_networks(tmp_path: Path) -> None:
    first = run_study(tiny_config(tmp_path / "a", n_trials=3, sampler="random"), show_progress_bar=False)
    again = run_study(tiny_config(tmp_path / "b", n_trials=3, sampler="random"), show_progress_bar=False)
    assert [t.params for t in first.trials] == [t.params for t in again.trials]
    resumed = run_study(tiny_config(tmp_path / "a", n_trials=6, sampler="random"), show_progress_bar=False)
    params = [t.params for t in resumed.trials]
    assert params[3:] != params[:3]


def test_a_model_too_big_for_its_share_of_memory_fails_before_it_is_built(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna_energy.model.arch import profile, training_memory

    built = []
    monkeypatch.setattr(objective_module, "available_memory", lambda device: 64 * 2**10)  # a 64 KiB device
    monkeypatch.setattr(objective_module, "build_model",
                        lambda *args, **kwargs: built.append(args) or pytest.fail("built"))
    config = tiny_config(tmp_path, storage=postgres_url, n_trials=2)
    config["training"]["max_memory_share"] = 0.25
    study = run_study(config, show_progress_bar=False)
    assert not built
    for trial in study.get_trials():
        assert trial.state == TrialState.FAIL
        reason = TrialRecord.of(trial).failure_reason or ""
        assert "to train at batch 128 (estimate from its spec)" in reason and "over max_memory_share = 0.25" in reason
    spec = [{"slot": 16, "kind": "linear", "out_features": 100_000}]
    costs = profile(spec, (1, 8, 8), 10)
    assert training_memory(costs, 128) >= 4 * 4 * costs.params + 4 * 2 * costs.activations * 128


def test_a_read_only_sqlite_database_is_one_line(stored_study: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    copy = tmp_path / "copy.db"
    shutil.copy(stored_study.split(":///", 1)[1], copy)
    error = _one_line_error(capsys, ["run", "--storage", f"sqlite:///file:{copy}?mode=ro&uri=true",
                                     "--n-trials", "5"])
    assert "attempt to write a readonly database" in error and "max length" not in error


@pytest.mark.parametrize("url", ["postgresql://u:S3C/RE@T:P%W@127.0.0.1:1/db",
                                 "postgresql://127.0.0.1:1/db?user=u&password=S3C/RE@T:P%W"])
def test_no_piece_of_a_password_is_printed_when_the_driver_splits_the_url_elsewhere(
        url: str, capsys: pytest.CaptureFixture[str]) -> None:
    error = _one_line_error(capsys, ["run", "--storage", url])
    assert not any(piece in error for piece in ("S3C", "RE@T", "P%W")), error


def test_a_worker_says_a_failed_trial_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    from optuna_energy.config import load_config
    from optuna_energy.workers import run_worker

    monkeypatch.setattr(objective_module, "build_model", _broken_build_model)
    with caplog.at_level(logging.INFO):
        run_worker(load_config(tiny_config(tmp_path, n_trials=1)))
    said = [record.getMessage() for record in caplog.records if "trial 0" in record.getMessage().lower()]
    assert len(said) == 1 and "(unexpected ValueError: a bug in build_model)" in said[0], said


def test_every_public_name_loads_lazily() -> None:
    import optuna_energy

    assert set(optuna_energy.__all__) == set(optuna_energy._HOMES)
    for name in optuna_energy.__all__:
        assert getattr(optuna_energy, name) is not None
