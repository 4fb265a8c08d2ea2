"""Real `optuna-energy worker` / `launch` processes against a real PostgreSQL server."""

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
from optuna_energy.host.gpu_share import LOCKS_ENV
from optuna_energy.store.budget import Tally, counts, tally
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.storage import open_storage
from tests.pg import PASSWORD, PostgresServer

STUDY = "shared"


def tiny_config(tmp_path: Path, *, n_trials: int, min_window_seconds: float, epochs: int = 1,
                max_train_epochs: int | None = None) -> Path:
    """Digits with a tiny space and one epoch: a trial takes about ``min_window_seconds``, and
    its network learns in that epoch (Adam, a large step), so trials complete rather than end
    PRUNED at chance."""
    path = tmp_path / "tiny.toml"
    budget = "" if max_train_epochs is None else f"max_train_epochs = {max_train_epochs}"
    path.write_text(f"""
[study]
name = "{STUDY}"
sampler = "random"
n_trials = {n_trials}
{budget}
device = "cpu"
[training]
epochs = {epochs}
batch_sizes = [128]
learning_rate = [1e-2, 3e-2]
optimizers = ["adam"]
[space]
feature_slots = 2
classifier_slots = 1
conv_channels = [4, 8]
kernel_size = [1, 3]
linear_width = [8, 16]
[measure]
batch_size = 50
warmup_batches = 0
min_window_seconds = {min_window_seconds}
idle_seconds = 0.0
[storage]
heartbeat_interval = 1
grace_period = 10
reconnect_timeout = 60
""")
    return path


def start(command: str, config: Path, url: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OPTUNA_ENERGY_STORAGE": url, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "optuna_energy", command, str(config), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(processes: list[subprocess.Popen], timeout: float = 150) -> list[str]:
    outputs = []
    for process in processes:
        output, _ = process.communicate(timeout=timeout)
        assert PASSWORD not in output
        assert process.returncode == 0, output[-3000:]
        outputs.append(output)
    return outputs


def load(url: str) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=open_storage(url))


class Watch:
    """Polls a study that workers may not have created yet, over one connection pool."""

    def __init__(self, url: str) -> None:
        self.storage = open_storage(url)

    def trials(self, *states: TrialState) -> list[optuna.trial.FrozenTrial]:
        try:
            study = optuna.load_study(study_name=STUDY, storage=self.storage)
        except KeyError:
            return []
        return study.get_trials(deepcopy=False, states=states or None)


def wait_for(condition, what: str, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def assert_exact_budget(study: optuna.Study, n_trials: int) -> None:
    """The study has exactly ``n_trials`` counted trials, nothing running or queued, every trial
    it does not count accounted for, and trials of more than one worker; a failure prints the
    story of every trial that did not complete."""
    trials = study.get_trials(deepcopy=False)
    story = [(t.number, t.state.name, t.user_attrs, t.system_attrs.get("failed_trial")) for t in trials
             if t.state != TrialState.COMPLETE]
    assert tally(study) == Tally(finished=n_trials, running=0, waiting=0), story
    assert len({trial.number for trial in trials}) == len(trials)
    # Uncounted trials: stubs a racing worker created past the budget, which never ran, or
    # trials the heartbeat failed on a loaded machine, each with a counted retry.
    retried = {t.system_attrs.get("failed_trial") for t in trials if counts(t)}
    assert all(TrialRecord.of(t).over_budget or t.number in retried
               for t in trials if not counts(t)), story
    # Counted trials that did not complete failed on purpose (diverged, memory) or were stopped
    # (at chance), and say why.
    assert all(TrialRecord.of(t).failure_reason or TrialRecord.of(t).stop_reason for t in trials
               if counts(t) and t.state != TrialState.COMPLETE), story
    assert len({TrialRecord.of(trial).worker for trial in trials
                if trial.state == TrialState.COMPLETE}) > 1


def test_four_workers_finish_exactly_the_budget(postgres_url: str, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, n_trials=24, min_window_seconds=0.05)
    finish([start("worker", config, postgres_url) for _ in range(4)])
    assert_exact_budget(load(postgres_url), 24)


def test_three_workers_sharing_one_gpu_finish_exactly_the_budget(postgres_url: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock folder ``launch --per-gpu 3`` would give them, on the CPU standing in for the GPU."""
    monkeypatch.setenv(LOCKS_ENV, str(tmp_path / "gpu0"))
    config = tiny_config(tmp_path, n_trials=9, min_window_seconds=0.05)
    finish([start("worker", config, postgres_url) for _ in range(3)])
    assert_exact_budget(load(postgres_url), 9)


def test_killed_worker_trial_is_failed_by_heartbeat_and_retried(postgres_url: str, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, n_trials=5, min_window_seconds=2.0)
    workers = {process.pid: process for process in
               (start("worker", config, postgres_url) for _ in range(2))}

    watch = Watch(postgres_url)

    def measuring_trial():  # sampled and trained, now in its 2 s measurement window
        running = watch.trials(TrialState.RUNNING)
        return next((trial for trial in running if "architecture" in trial.user_attrs), None)

    victim = wait_for(measuring_trial, "a trial in its measurement window")
    pid = int(TrialRecord.of(victim).worker.rsplit(":", 1)[1])
    workers.pop(pid).send_signal(signal.SIGKILL)
    finish(list(workers.values()))

    study = load(postgres_url)
    killed = study.trials[victim.number]
    assert killed.state == TrialState.FAIL and "failure_reason" not in killed.user_attrs
    retries = [trial for trial in study.trials if trial.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].state.is_finished()  # trained, or diverged on its own
    assert retries[0].params == killed.params
    assert tally(study).finished == 5


def test_workers_survive_a_database_restart(postgres: PostgresServer, postgres_url: str,
                                            tmp_path: Path) -> None:
    config = tiny_config(tmp_path, n_trials=8, min_window_seconds=0.5)
    workers = [start("worker", config, postgres_url) for _ in range(2)]
    watch = Watch(postgres_url)
    wait_for(lambda: len(watch.trials(TrialState.COMPLETE)) >= 2, "two complete trials")
    postgres.restart()
    # Whether a worker notices depends on where it was (a worker mid-training reconnects
    # silently through pool pre-ping), so only the outcome is asserted, not the log.
    assert len(watch.trials(TrialState.COMPLETE)) < 8, "the restart came after the work"
    finish(workers)

    study = load(postgres_url)
    # Finished and counted: trained (COMPLETE, or PRUNED at chance) or failed on its own (diverged).
    assert tally(study).finished == 8
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_launch_stops_workers_on_sigterm_and_requeues_their_trials(postgres_url: str,
                                                                   tmp_path: Path) -> None:
    config = tiny_config(tmp_path, n_trials=20, min_window_seconds=3.0)
    launcher = start("launch", config, postgres_url, "--workers", "2")

    watch = Watch(postgres_url)

    def two_measuring():
        running = watch.trials(TrialState.RUNNING)
        return len([trial for trial in running if "architecture" in trial.user_attrs]) == 2

    wait_for(two_measuring, "both workers in a trial")
    launcher.send_signal(signal.SIGTERM)
    output, _ = launcher.communicate(timeout=60)

    assert launcher.returncode == 130, output[-3000:]
    assert PASSWORD not in output
    assert "[cpu0] " in output and "[cpu1] " in output
    study = load(postgres_url)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    # Stopped by the signal; a trial that failed on its own (a diverged loss) says why, is
    # counted and is not run again.
    stopped = [t for t in study.get_trials(states=(TrialState.FAIL,))
               if not TrialRecord.of(t).failure_reason]
    queued = study.get_trials(states=(TrialState.WAITING,))
    story = [(t.number, t.state.name, t.user_attrs, t.system_attrs) for t in study.trials]
    assert len(stopped) == 2, story
    assert sorted(trial.system_attrs["failed_trial"] for trial in queued) == sorted(
        trial.number for trial in stopped), (story, output[-3000:])
    assert {tuple(sorted(t.params.items())) for t in queued} == {
        tuple(sorted(t.params.items())) for t in stopped}


@pytest.mark.parametrize("case", ["wrong password", "unreachable host"])
def test_connection_errors_are_one_clear_line_without_password(
        postgres: PostgresServer, postgres_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], case: str) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    if case == "wrong password":
        url, expected = postgres.url(database, password="wrong-Secret-9"), "password authentication failed"
    else:
        url, expected = postgres.url(database, password="wrong-Secret-9", port=1), "refused"
    config = tiny_config(tmp_path, n_trials=1, min_window_seconds=0.05)

    assert main(["worker", str(config), "--storage", url]) == 2

    error = capsys.readouterr().err
    assert error.startswith("optuna-energy: error: cannot open storage postgresql://optuna:***@")
    assert expected in error.lower() and "wrong-Secret-9" not in error
    assert error.count("\n") == 1
