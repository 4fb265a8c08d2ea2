"""Several workers on one GPU (optuna_energy.host.gpu_share): real processes on a stand-in device."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import optuna_energy
from optuna_energy.host import gpu_share
from optuna_energy.host.meters import EnergyMeter
from optuna_energy.store.record import TrialRecord
from tests.helpers import tiny_config

REPO = Path(__file__).resolve().parent.parent


def start(role: str, log: Path, locks: Path, rounds: int = 1) -> subprocess.Popen:
    env = {**os.environ, gpu_share.LOCKS_ENV: str(locks), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "tests.gpu_share_process", role, str(log), str(rounds)],
                            env=env, cwd=REPO)


def events(log: Path) -> list[tuple[int, int, str]]:
    lines = log.read_text().split("\n") if log.exists() else []
    return [(int(ns), int(pid), event) for ns, pid, event in (line.split() for line in lines if line)]


def intervals(log: Path, begin: str, end: str) -> list[tuple[int, int, int]]:
    """(pid, start ns, end ns) of each begin/end pair a process logged."""
    opened: dict[int, int] = {}
    found = []
    for ns, pid, event in sorted(events(log)):
        if event == begin:
            opened[pid] = ns
        elif event == end:
            found.append((pid, opened.pop(pid), ns))
    return found


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_no_training_step_of_another_worker_runs_inside_a_measuring_window(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    workers = [start("both", log, tmp_path / "gpu0", rounds=5) for _ in range(3)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0

    windows = intervals(log, "window-open", "window-close")
    steps = intervals(log, "step-begin", "step-end")
    pids = {worker.pid for worker in workers}
    assert {pid for pid, _, _ in windows} == pids and len(windows) == 15
    assert {pid for pid, _, _ in steps} == pids and len(steps) == 300
    inside = [(step, window) for step in steps for window in windows
              if step[0] != window[0] and step[1] < window[2] and window[1] < step[2]]
    assert inside == []
    # The test could have failed: other workers stepped between one worker's windows.
    first, last = min(w[1] for w in windows), max(w[2] for w in windows)
    assert len({pid for pid, begin, _ in steps if first < begin < last}) == 3


def test_a_worker_killed_in_its_window_blocks_no_one(tmp_path: Path) -> None:
    log, locks = tmp_path / "events.log", tmp_path / "gpu0"
    hung = start("hang", log, locks)
    wait_for(lambda: any(event == "window-open" for _, _, event in events(log)), "the window to open")
    trainer = start("train", log, locks, rounds=50)
    time.sleep(0.5)
    assert not any(event == "step-begin" for _, _, event in events(log))  # it waits for the window
    hung.send_signal(signal.SIGKILL)
    hung.wait()
    assert trainer.wait(timeout=60) == 0
    measurer = start("both", log, locks)
    assert measurer.wait(timeout=60) == 0
    assert len(intervals(log, "step-begin", "step-end")) == 50 + 20


def test_a_trainer_is_charged_its_share_of_the_chip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(gpu_share, "_clock", lambda: now[0])
    monkeypatch.setenv(gpu_share.LOCKS_ENV, str(tmp_path / "gpu0"))
    other = start("train", tmp_path / "events.log", tmp_path / "gpu0", rounds=100_000)
    try:
        wait_for(lambda: any(event == "step-begin" for _, _, event in events(tmp_path / "events.log")),
                 "the other trainer to train")
        with gpu_share.training(torch.device("cpu")) as turn:
            mark = turn.mark()
            now[0] += 1.0
            assert turn.share_since(mark) == pytest.approx(0.5)  # two trainers all along
            other.send_signal(signal.SIGKILL)
            other.wait()
            now[0] += gpu_share.SAMPLE_S
            gpu_share.step()  # counts the trainers again: one left
            mark = turn.mark()
            now[0] += 1.0
            assert turn.share_since(mark) == pytest.approx(1.0)
    finally:
        other.kill()
        other.wait()


def test_without_the_lock_folder_nothing_is_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(gpu_share.LOCKS_ENV, raising=False)
    with gpu_share.training(torch.device("cpu")) as turn, gpu_share.alone():
        gpu_share.step()
        assert not turn.shared and turn.share_since(turn.mark()) == 1.0


class _Counter(EnergyMeter):
    """A whole-device counter at a steady 100 W, as NVML's would be."""

    source = "test-counter"

    def total_joules(self) -> float:
        return 100.0 * time.perf_counter()


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "alone"])
def test_trials_on_a_shared_gpu_say_their_training_energy_is_a_share(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared: bool) -> None:
    if shared:
        monkeypatch.setenv(gpu_share.LOCKS_ENV, str(tmp_path / "gpu0"))
    else:
        monkeypatch.delenv(gpu_share.LOCKS_ENV, raising=False)
    monkeypatch.setattr("optuna_energy.study.open_meter", lambda *args, **kwargs: _Counter())
    config = tiny_config(tmp_path, n_trials=2, objectives=["accuracy", "params"])
    config["early_stopping"] = {"enabled": False}
    study = optuna_energy.run_study(config, show_progress_bar=False)

    records = [TrialRecord.of(trial) for trial in study.trials]
    assert len(records) == 2
    for trained in records:
        assert trained.train_energy_j is not None and trained.train_energy_j > 0
        if shared:  # alone on its folder: the whole window is its share
            assert trained.train_energy_basis == "apportioned"
            assert trained.train_energy_j == pytest.approx(trained.train_window_j)
        else:
            assert trained.train_energy_basis is None and trained.train_window_j is None
