"""The shared budget and the worker plan, in one process against SQLite (no server needed)."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from optuna_energy.cli import build_parser
from optuna_energy.config import StorageSection
from optuna_energy.host.gpu_share import LOCKS_ENV
from optuna_energy.run.loop import optimize_within_budget
from optuna_energy.store import record
from optuna_energy.store.budget import WithinBudget, tally
from optuna_energy.store.record import TrialRecord, search_energy
from optuna_energy.store.storage import StorageError, open_storage
from optuna_energy.workers import _Output, _SearchEnergy, _with_locks, plan_workers
from tests.nvml_standin import FakeNvml


def make_study(tmp_path: Path, **heartbeat: int) -> optuna.Study:
    settings = StorageSection(**heartbeat) if heartbeat else None
    storage = open_storage(f"sqlite:///{tmp_path}/budget.db", settings)
    return optuna.create_study(storage=storage, study_name="s", load_if_exists=True)


def objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0, 1)


def test_trials_created_past_the_budget_by_racing_workers_never_run(tmp_path: Path) -> None:
    study = make_study(tmp_path)
    racing = [study.ask() for _ in range(3)]  # three workers asked before anyone counted
    ran = []
    guarded = WithinBudget(lambda trial: ran.append(trial.number) or 0.5, n_trials=2)

    assert guarded(racing[0]) == 0.5 and guarded(racing[1]) == 0.5
    with pytest.raises(optuna.TrialPruned):
        guarded(racing[2])
    assert ran == [0, 1] and TrialRecord.of(racing[2]).over_budget is True
    study.tell(racing[2], state=TrialState.PRUNED)
    for trial in racing[:2]:
        study.tell(trial, 0.5)
    assert tally(study).finished == 2


def test_budget_counts_the_whole_study_and_deliberate_failures(tmp_path: Path) -> None:
    study = make_study(tmp_path)
    study.optimize(objective, n_trials=2)
    failed = study.ask()
    record.write(failed, failure_reason="out of memory")
    study.tell(failed, state=TrialState.FAIL)
    study.tell(study.ask(), state=TrialState.FAIL)  # lost worker: not counted, run again

    optimize_within_budget(study, objective, n_trials=5)

    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 4
    assert tally(study).finished == 5


def test_without_heartbeat_a_worker_leaves_when_running_trials_fill_the_budget(tmp_path: Path) -> None:
    study = make_study(tmp_path)
    study.optimize(objective, n_trials=1)
    study.ask()  # running in another worker

    optimize_within_budget(study, pytest.fail, n_trials=2)

    assert tally(study).running == 1


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_of_a_dead_worker_is_failed_and_rerun_with_its_parameters(tmp_path: Path) -> None:
    study = make_study(tmp_path, heartbeat_interval=1, grace_period=2)
    dead = study.ask()
    dead_x = dead.suggest_float("x", 0, 1)
    study._storage.record_heartbeat(dead._trial_id)  # then its worker was killed
    seen = []

    optimize_within_budget(study, lambda trial: seen.append(objective(trial)) or seen[-1], n_trials=1)

    assert seen == [dead_x]
    assert study.trials[0].state == TrialState.FAIL
    assert study.trials[1].state == TrialState.COMPLETE
    assert study.trials[1].system_attrs["failed_trial"] == 0


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_that_never_reached_its_objective_is_failed_and_rerun(tmp_path: Path) -> None:
    study = make_study(tmp_path, heartbeat_interval=1, grace_period=2)
    study.ask()  # created, then the connection was lost before its first heartbeat

    optimize_within_budget(study, objective, n_trials=1)

    assert [trial.state for trial in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].system_attrs["failed_trial"] == 0


def test_an_interrupted_trial_ends_failed_and_is_queued_again(tmp_path: Path) -> None:
    study = make_study(tmp_path)

    def interrupted(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        optimize_within_budget(study, interrupted, n_trials=3)

    failed, queued = study.trials
    assert failed.state == TrialState.FAIL and queued.state == TrialState.WAITING
    assert queued.params == failed.params and queued.system_attrs["failed_trial"] == 0
    optimize_within_budget(study, objective, n_trials=3)
    assert study.trials[1].state == TrialState.COMPLETE and study.trials[1].params == failed.params


def database_down(trial: optuna.Trial) -> float:
    raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))


def test_a_lost_database_is_retried_and_the_trial_in_flight_is_lost(tmp_path: Path) -> None:
    study = make_study(tmp_path)
    outages = iter([database_down])

    start = time.monotonic()
    optimize_within_budget(study, lambda trial: next(outages, objective)(trial), n_trials=2)

    assert time.monotonic() - start >= 1.0  # backed off before retrying
    assert [trial.state for trial in study.trials] == [TrialState.FAIL, TrialState.COMPLETE,
                                                       TrialState.COMPLETE]


def test_a_database_gone_for_longer_than_reconnect_timeout_is_an_error(tmp_path: Path) -> None:
    study = make_study(tmp_path)
    with pytest.raises(StorageError, match="did not answer for 0 s"):
        optimize_within_budget(study, database_down, n_trials=2, reconnect_timeout=0)


def test_plan_gives_each_gpu_worker_its_own_visible_device() -> None:
    slots = plan_workers("0,2", per_gpu=2, available_gpus=4)
    assert [slot.name for slot in slots] == ["gpu0.0", "gpu0.1", "gpu2.0", "gpu2.1"]
    assert [slot.env["CUDA_VISIBLE_DEVICES"] for slot in slots] == ["0", "0", "2", "2"]
    assert {slot.env["CUDA_DEVICE_ORDER"] for slot in slots} == {"PCI_BUS_ID"}
    assert [slot.name for slot in plan_workers(None, available_gpus=2)] == ["gpu0", "gpu1"]


def test_workers_sharing_a_gpu_get_its_lock_folder_and_no_one_else_does(tmp_path: Path) -> None:
    shared = _with_locks(plan_workers("0,1", per_gpu=2, available_gpus=2), str(tmp_path))
    assert [slot.env[LOCKS_ENV] for slot in shared] == [str(tmp_path / name) for name in
                                                        ("gpu0", "gpu0", "gpu1", "gpu1")]
    alone = _with_locks(plan_workers("0,1", available_gpus=2), str(tmp_path))
    cpus = _with_locks(plan_workers(None, cpu_workers=2, available_gpus=0), str(tmp_path))
    assert not any(LOCKS_ENV in slot.env for slot in alone + cpus)


def test_per_gpu_is_an_option_of_launch_and_workers_per_gpu_its_old_name() -> None:
    parser = build_parser()
    assert parser.parse_args(["launch", "--per-gpu", "4"]).per_gpu == 4
    assert parser.parse_args(["launch", "--workers-per-gpu", "2"]).per_gpu == 2
    assert parser.parse_args(["launch"]).per_gpu is None  # then the config's [workers] per_gpu


def test_the_launch_adds_each_gpus_energy_to_the_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())  # GPU 1 draws 250 W
    study = make_study(tmp_path)
    output = io.StringIO()
    slots = plan_workers("1", per_gpu=3, available_gpus=2)
    for _ in range(2):
        energy = _SearchEnergy(slots, _Output("sqlite://", output))
        time.sleep(0.3)
        energy.record(study)

    recorded = search_energy(study)
    assert list(recorded) == [f"{socket.gethostname()}/gpu1"]
    gpu = recorded[f"{socket.gethostname()}/gpu1"]
    assert gpu["launches"] == 2 and gpu["per_gpu"] == 3 and gpu["source"] == "nvml-counter"
    assert gpu["joules"] == pytest.approx(250.0 * gpu["seconds"], rel=0.05)
    assert output.getvalue() == ""


def test_a_gpu_without_a_counter_is_said_once_and_not_recorded(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml()
    nvml.counter_error = 3  # NVML_ERROR_NOT_SUPPORTED: older than Volta
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    study = make_study(tmp_path)
    output = io.StringIO()
    _SearchEnergy(plan_workers("0", per_gpu=2, available_gpus=2), _Output("sqlite://", output)).record(study)
    assert search_energy(study) == {}
    assert output.getvalue().startswith("[launch] gpu0 has no energy counter to read")


def test_plan_without_gpus_divides_the_allocated_cores_among_cpu_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Slurm job with 6 of a node's 64 cores: its affinity, not the node, is what it may use.
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(6)))
    slots = plan_workers(None, cpu_workers=3, available_gpus=0)
    assert [(slot.name, slot.device) for slot in slots] == [("cpu0", "cpu"), ("cpu1", "cpu"), ("cpu2", "cpu")]
    assert {slot.env["OMP_NUM_THREADS"] for slot in slots} == {"2"}
    assert {slot.env["CUDA_VISIBLE_DEVICES"] for slot in slots} == {""}


@pytest.mark.parametrize(("gpus", "message"), [
    ("all", "found no NVIDIA GPU"), ("1,x", "indices like 0,1,2"), ("3", "not one of the 0 GPUs"),
])
def test_plan_rejects_gpus_that_are_not_there(gpus: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_workers(gpus, available_gpus=0)


@pytest.fixture
def python_ctrl_c() -> Iterator[None]:
    """Python's own Ctrl-C handler, even where the test runner was started with SIGINT ignored
    (a CI job run in the background)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_while_optuna_records_a_trial_waits_until_it_is_stored(tmp_path: Path, python_ctrl_c: None) -> None:
    """Raised inside Optuna's tell, the interrupt left a RUNNING trial (or an UnboundLocalError)."""
    study = make_study(tmp_path)
    record = study._storage.set_trial_state_values

    def interrupted_record(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C lands while the values are being written
        return record(*args, **kwargs)

    study._storage.set_trial_state_values = interrupted_record
    with pytest.raises(KeyboardInterrupt):
        optimize_within_budget(study, objective, n_trials=3)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]

    study._storage.set_trial_state_values = record
    optimize_within_budget(study, objective, n_trials=3)  # the stop was used up: runs normally
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3


def test_a_stop_signal_arriving_while_a_line_is_written_is_said_too() -> None:
    # The launcher's SIGTERM handler writes "[launch] SIGTERM: stopping ..." in the main thread;
    # arriving while that thread wrote "started worker ..." it waited for a lock it held itself.
    code = ("import io, os, signal\n"
            "from optuna_energy.workers import _Output\n"
            "class Interrupting(io.StringIO):\n"
            "    def write(self, text):\n"
            "        if 'started' in text:\n"
            "            os.kill(os.getpid(), signal.SIGUSR1)\n"
            "        return super().write(text)\n"
            "stream = Interrupting()\n"
            "output = _Output('sqlite://', stream)\n"
            "signal.signal(signal.SIGUSR1, lambda *_: output.line('launch', 'SIGUSR1: stopping'))\n"
            "output.line('launch', 'started worker cpu0')\n"
            "print(stream.getvalue(), end='')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert done.stdout.splitlines() == ["[launch] SIGUSR1: stopping", "[launch] started worker cpu0"], done.stderr
