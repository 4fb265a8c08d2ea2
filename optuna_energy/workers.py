"""Many processes on one study: the worker, and a launcher that starts workers on each GPU.

A worker is ``run_study`` for a shared study: it joins (or creates) the study, runs trials until
the study as a whole has its budget, logs one line per trial instead of a progress bar, and
turns SIGTERM into the same clean stop as Ctrl-C. The launcher starts workers on one node, each
with its own ``CUDA_VISIBLE_DEVICES``, prefixes their output, and stops them together. Workers
sharing a GPU get its lock folder (``optuna_energy.host.gpu_share``), and the launcher records each
GPU's energy over the whole launch on the study.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from typing import IO

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_energy.choices import STORAGE_ENV
from optuna_energy.config import StudyConfig
from optuna_energy.host.devices import BACKENDS
from optuna_energy.host.gpu_share import LOCKS_ENV
from optuna_energy.host.interrupts import SIGNALS, STOP
from optuna_energy.host.meters import EnergyMeter, EnergyMeterError, NvmlCounterMeter, gpu_at_index
from optuna_energy.store import record
from optuna_energy.store.budget import tally
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.storage import mask_text
from optuna_energy.study import create_or_load_study, create_sampler, optimize_study

_GPUS = BACKENDS["cuda"]
_VISIBLE = _GPUS.visible_devices_env or "CUDA_VISIBLE_DEVICES"
"""The launcher places workers on NVIDIA GPUs (indices in nvidia-smi's order)."""

STOP_SECONDS = 30.0
"""How long the launcher waits for stopped workers to record their trials before killing them."""

_logger = logging.getLogger("optuna_energy.worker")


def run_worker(config: StudyConfig) -> optuna.Study:
    """Run trials of the configured study until it has ``config.study.n_trials`` finished ones.

    Any number of workers, on any number of machines, may run this on one study. Each samples
    from its own random stream (a fixed seed would make every worker propose the same
    architectures); a trial's weights and batches are still seeded by ``seed + trial.number``.

    Example:
        >>> from optuna_energy import load_config
        >>> config = load_config("studies/digits.toml").with_study(
        ...     storage="postgresql://optuna@db.example.org/nas", n_trials=500)
        >>> study = run_worker(config)
    """
    sampler = create_sampler(config.study.sampler, seed=None, evolution=config.evolution)
    study = create_or_load_study(config, sampler=sampler)
    _logger.info("joined study %r: %d of %d trials finished", study.study_name,
                 tally(study).finished, config.study.n_trials)
    optuna_trials = logging.getLogger("optuna.study._optimize")
    said_by_trial_log = _SaidByTrialLog()
    optuna_trials.addFilter(said_by_trial_log)  # before the run loop's filter, which rewrites them
    try:
        optimize_study(study, config, callbacks=[_TrialLog(config.study.n_trials)])
    finally:
        optuna_trials.removeFilter(said_by_trial_log)
    _logger.info("study %r has %d of %d trials finished; worker done", study.study_name,
                 tally(study).finished, config.study.n_trials)
    return study


class _SaidByTrialLog(logging.Filter):
    """Drops Optuna's line for a failed trial: the worker's own line says it, with its reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Trial ") and " failed with " in message)


class _TrialLog:
    """One log line per finished trial of this worker."""

    def __init__(self, n_trials: int) -> None:
        self.n_trials = n_trials

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        if trial.state == TrialState.COMPLETE:
            values = ", ".join(f"{name} {value:.4g}"
                               for name, value in zip(study.metric_names or [], trial.values))
            outcome = f"complete in {seconds:.1f} s: {values}"
        else:
            stored = TrialRecord.of(trial)
            reason = "the study's budget was already used" if stored.over_budget else stored.failure_reason
            outcome = f"{trial.state.name.lower()} after {seconds:.1f} s" + (f" ({reason})" if reason else "")
        with warnings.catch_warnings():  # public since Optuna 2.8, still marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
        again = f" (retry of trial {retried})" if retried is not None else ""
        _logger.info("trial %d%s %s [%d/%d finished]", trial.number, again, outcome,
                     tally(study).finished, self.n_trials)


@dataclasses.dataclass(frozen=True)
class WorkerSlot:
    """One worker to start: a name for its log prefix, its device, its environment, its GPU."""

    name: str
    device: str
    env: dict[str, str]
    gpu: int | None = None
    """The GPU's ``nvidia-smi`` index; ``None`` for a CPU worker."""


def _usable_cores() -> int:
    """The cores this process may run on: a Slurm job's allocation (its CPU affinity), not the
    whole node's, where the platform says so."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def plan_workers(gpus: str | None, *, per_gpu: int = 1, cpu_workers: int = 1,
                 available_gpus: int) -> list[WorkerSlot]:
    """The workers to start on this node.

    Args:
        gpus: ``"all"``, a comma-separated list of GPU indices (``nvidia-smi`` order), or
            ``None``: all GPUs when there are any, else ``cpu_workers`` CPU workers.
        per_gpu: Workers sharing each GPU (small models rarely fill a big GPU); ``launch``
            lets their training overlap and runs each measuring window alone.
        cpu_workers: Workers when there is no GPU; the CPU cores this process may use (a Slurm
            job's allocation, not the node's) are divided among them.
        available_gpus: GPUs on this node (``devices.BACKENDS["cuda"].count_on_node()``).

    Raises:
        ValueError: A GPU index is malformed or not on this node, or ``all`` finds none.
    """
    if gpus is None and available_gpus == 0:
        threads = str(max(1, _usable_cores() // cpu_workers))
        return [WorkerSlot(f"cpu{index}", "cpu",
                           {_VISIBLE: "", "OMP_NUM_THREADS": threads})
                for index in range(cpu_workers)]
    indices = _gpu_indices(gpus or "all", available_gpus)
    # CUDA numbers devices fastest-first by default; PCI order matches nvidia-smi and NVML.
    return [WorkerSlot(f"gpu{gpu}" + (f".{k}" if per_gpu > 1 else ""), "cuda",
                       {_VISIBLE: str(gpu), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, gpu=gpu)
            for gpu in indices for k in range(per_gpu)]


def _gpu_indices(gpus: str, available: int) -> list[int]:
    if gpus == "all":
        if available == 0:
            raise ValueError("--gpus all found no NVIDIA GPU on this node; "
                             "leave out --gpus and use --workers N for CPU workers")
        return list(range(available))
    try:
        indices = [int(part) for part in gpus.split(",")]
    except ValueError:
        raise ValueError(f"--gpus must be 'all' or indices like 0,1,2, got {gpus!r}") from None
    wrong = [index for index in indices if not 0 <= index < available]
    if wrong or len(set(indices)) != len(indices):
        raise ValueError(f"--gpus {gpus!r} names GPU {wrong or indices} that is not one of the "
                         f"{available} GPUs of this node (0..{available - 1}) or names one twice")
    return indices


def launch(slots: Sequence[WorkerSlot], worker_args: Sequence[str], *, storage: str,
           study: optuna.Study | None = None, stop_seconds: float = STOP_SECONDS,
           command: Sequence[str] | None = None) -> int:
    """Start one ``optuna-energy worker`` per slot, stream their output, stop them together.

    ``command`` (your own objective's program) runs in each slot instead of the built-in worker,
    with the same environment: the slot's GPU, its lock folder, the storage URL.

    The storage URL reaches the workers through ``OPTUNA_ENERGY_STORAGE``, never their command
    line. Slots on the same GPU share a lock folder (``optuna_energy.host.gpu_share.LOCKS_ENV``), made
    here and removed at the end. With ``study``, each GPU's energy counter is read at the start
    and the end and the difference added to the study (``record.add_search_energy``). On SIGINT,
    SIGTERM or SIGHUP every worker gets SIGTERM: its running trial ends as FAIL and is queued
    again with the same parameters; a worker still alive ``stop_seconds`` later is killed (its
    trial is then found by the heartbeat).

    Returns:
        0 when every worker finished cleanly, else the first failing exit code.

    Raises:
        Interrupted: A stop signal, once every worker has stopped.
    """
    output = _Output(storage)
    with tempfile.TemporaryDirectory(prefix="optuna-energy-gpu-locks-") as locks:
        energy = _SearchEnergy(slots, output) if study is not None else None
        codes, stopped_by = _run_workers(_with_locks(slots, locks), worker_args, storage=storage,
                                         stop_seconds=stop_seconds, output=output, command=command)
        if energy is not None and study is not None:
            energy.record(study)
    if stopped_by is not None:
        STOP.request(stopped_by)  # raises Interrupted, and further signals wait for the command's end
    return next((code for code in codes if code != 0), 0)


def _with_locks(slots: Sequence[WorkerSlot], locks: str) -> list[WorkerSlot]:
    """The slots, each sharing its GPU with another given that GPU's lock folder."""
    sharing = {gpu for gpu in (slot.gpu for slot in slots)
               if gpu is not None and sum(other.gpu == gpu for other in slots) > 1}
    return [dataclasses.replace(slot, env={**slot.env, LOCKS_ENV: os.path.join(locks, f"gpu{slot.gpu}")})
            if slot.gpu in sharing else slot for slot in slots]


class _SearchEnergy:
    """Each GPU's energy counter, read when the launch starts and when it ends: the exact energy
    of everything its workers did, which their trials' apportioned shares cannot be."""

    def __init__(self, slots: Sequence[WorkerSlot], output: _Output) -> None:
        self.meters: dict[int, EnergyMeter] = {}
        self.per_gpu = {gpu: sum(slot.gpu == gpu for slot in slots)
                        for gpu in {slot.gpu for slot in slots if slot.gpu is not None}}
        for gpu in sorted(self.per_gpu):
            try:
                meter = NvmlCounterMeter(gpu_at_index(gpu))
            except EnergyMeterError as error:
                output.line("launch", f"gpu{gpu} has no energy counter to read ({error}); "
                            "the search's energy on it is not recorded")
                continue
            meter.begin_window("search")
            self.meters[gpu] = meter

    def record(self, study: optuna.Study) -> None:
        """Close every GPU's window and add its joules to the study."""
        for gpu, meter in self.meters.items():
            try:
                window = meter.end_window("search")
            finally:
                meter.close()
            record.add_search_energy(study, f"{socket.gethostname()}/gpu{gpu}", joules=window.joules,
                                     seconds=window.seconds, per_gpu=self.per_gpu[gpu], source=meter.source)


def _run_workers(slots: Sequence[WorkerSlot], worker_args: Sequence[str], *, storage: str,
                 stop_seconds: float, output: _Output,
                 command: Sequence[str] | None = None) -> tuple[list[int], int | None]:
    """Start the workers and wait for them; their exit codes, and the signal that stopped them."""
    workers: list[subprocess.Popen] = []
    stopping = threading.Event()
    stopped_by: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if not stopping.is_set():
            output.line("launch", f"{signal.Signals(signum).name}: stopping {len(workers)} workers")
            stopped_by.append(signum)
            stopping.set()
            _stop_all(workers)

    # Before the first worker starts: a signal while starting them stops those already started.
    previous = {sig: signal.signal(sig, stop) for sig in SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        for slot in slots:
            if stopping.is_set():
                break
            started = list(command) if command else [
                sys.executable, "-m", "optuna_energy", "worker", *worker_args, "--device", slot.device]
            env = {**os.environ, **slot.env, STORAGE_ENV: storage, "PYTHONUNBUFFERED": "1"}
            # Own session: a terminal's Ctrl-C reaches the launcher only, which stops workers once.
            process = subprocess.Popen(started, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True, errors="replace", start_new_session=True)
            workers.append(process)
            assert process.stdout is not None  # stdout=PIPE
            output.follow(slot.name, process.stdout)
            output.line("launch", f"started worker {slot.name} (pid {process.pid}, {slot.device})")
        if stopping.is_set():
            _stop_all(workers)  # one started while the signal was handled
        codes = [_wait(process, stopping, stop_seconds, output) for process in workers]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        output.join()
    return codes, stopped_by[0] if stopped_by else None


def _stop_all(workers: Sequence[subprocess.Popen]) -> None:
    for process in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)


def _wait(process: subprocess.Popen, stopping: threading.Event, stop_seconds: float,
          output: _Output) -> int:
    while process.poll() is None:
        if stopping.wait(0.2):
            try:
                return process.wait(timeout=stop_seconds)
            except subprocess.TimeoutExpired:
                output.line("launch", f"worker pid {process.pid} did not stop; killing it")
                process.kill()
                return process.wait()
    return process.returncode


class _Output:
    """Prefixed, whole-line, password-masked output of all workers on one stream."""

    def __init__(self, storage: str, stream: IO[str] | None = None) -> None:
        self.storage = storage
        self.stream = stream or sys.stdout
        # Re-entrant: the stop signal's handler says its line in the main thread, which the
        # signal may have interrupted in the middle of a line of its own.
        self.lock = threading.RLock()
        self.readers: list[threading.Thread] = []

    def follow(self, name: str, source: IO[str]) -> None:
        """Copy a worker's output line by line, in a thread of its own."""
        reader = threading.Thread(target=self._copy, args=(name, source), daemon=True)
        reader.start()
        self.readers.append(reader)

    def _copy(self, name: str, source: IO[str]) -> None:
        for text in source:
            self.line(name, text.rstrip("\n"))

    def line(self, name: str, text: str) -> None:
        with self.lock:
            self.stream.write(f"[{name}] {mask_text(text, self.storage)}\n")
            self.stream.flush()

    def join(self) -> None:
        deadline = time.monotonic() + 5.0
        for reader in self.readers:
            reader.join(timeout=max(0.0, deadline - time.monotonic()))
