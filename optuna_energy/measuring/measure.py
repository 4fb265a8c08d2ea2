"""The inference protocol: time and energy per inference, measured fairly.

The paper times one pass over the evaluation set at batch size 100, host-to-device transfer
included. Energy counters update only every ~100 ms (and NVML's plain power reading is a
one-second average), so one pass is too short to meter: after warm-up batches, passes are
repeated inside one window until it lasts at least ``min_window_seconds``, with the device
synchronised at both edges, and the energy is divided by the images actually inferred.

Which clock times a pass is ``[measure] clock`` (:data:`CLOCKS`, :func:`resolve_clock`): on a
CPU the CPU time of the measuring thread with one torch intra-op thread, which the machine's
other load barely moves (docs/BENCHMARKS.md, "Measurement noise"); on a GPU the wall clock, the
device synchronised, since the GPU's time is the cost there.

This is also where torch meets the meters: :func:`open_meter` tells a meter which physical
device a torch device is (``optuna_energy.host.devices.identity``), so ``optuna_energy.host.meters`` stays
free of torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from optuna_energy.data import DeviceData
from optuna_energy.host import gpu_share, load
from optuna_energy.host.devices import backend, identity, synchronize
from optuna_energy.host.meters import EnergyMeter, EnergyWindow, Work, select_meter
from optuna_energy.measuring.statistic import quantile, relative_spread
from optuna_energy.model.arch import ArchProfile

T = TypeVar("T")

DEFAULT_WINDOWS = 3
"""Measuring windows per model unless ``[measure] windows`` says otherwise (the benchmark that
chose it: docs/BENCHMARKS.md, "Measurement noise")."""
DEFAULT_REMEASURE_WINDOWS = 2 * DEFAULT_WINDOWS
"""Windows a network that enters the Pareto front only within its spread is measured again in
unless ``[measure] remeasure_windows`` says otherwise: pooled with the first ones, twice as many
new windows outweigh a lucky first run two to one."""
PASS_QUANTILE = 0.25
"""Which quantile of the timed passes is the stored inference time (``bench/measure_noise.py``
chose it: see docs/BENCHMARKS.md, "Measurement noise")."""
CLOCKS = ("auto", "wall", "cpu")
"""``[measure] clock`` and ``EnergyMonitor.measure_inference(clock=)``: ``wall`` times each pass
on the wall clock, the device synchronised, with torch's thread count as the caller set it;
``cpu`` times the CPU seconds of the measuring thread with torch set to one intra-op thread for
the windows (a CPU device only); ``auto`` is ``cpu`` on a CPU and ``wall`` on any accelerator."""
CLOCK_UNITS = {"wall": "s", "cpu": "CPU s, 1 thread"}
"""What a stored inference time counts, by the clock that measured it (the record's
``inference_clock``): what a report says next to the value."""
CPU_CLOCK_THREADS = 1
"""Torch's intra-op threads while the ``cpu`` clock measures: with one, all of torch's work runs
in the measuring thread, so that thread's CPU time is the whole pass's work."""


def resolve_clock(clock: str, device: torch.device) -> str:
    """The clock (``wall`` or ``cpu``) that ``clock`` (one of :data:`CLOCKS`) times passes with on
    ``device``.

    Raises:
        ValueError: An unknown clock, or ``cpu`` on an accelerator (whose work the host thread's
            CPU time does not see); the message says what is allowed.
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock is {clock!r}; allowed: {', '.join(CLOCKS)}")
    if clock == "auto":
        return "cpu" if device.type == "cpu" else "wall"
    if clock == "cpu" and device.type != "cpu":
        raise ValueError(f"clock 'cpu' counts the host thread's CPU time, not the work of {device}; "
                         f"allowed on {device.type}: auto, wall")
    return clock


@contextlib.contextmanager
def clock_threads(clock: str) -> Iterator[None]:
    """Torch's intra-op thread count for measuring on ``clock`` (``wall`` or ``cpu``): one for
    ``cpu`` (:data:`CPU_CLOCK_THREADS`), the caller's count restored afterwards, even on error;
    unchanged for ``wall``. Torch's count is the process's: a thread training meanwhile in the
    same process runs on one intra-op thread too."""
    if clock != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(CPU_CLOCK_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclasses.dataclass(frozen=True)
class Window:
    """One metered window of the inference protocol."""

    pass_seconds: tuple[float, ...]
    """Each whole pass over the evaluation set on the wall clock, in order, the device
    synchronised after each."""
    pass_cpu_seconds: tuple[float, ...]
    """The CPU time the measuring thread used in each of those passes (``time.thread_time``):
    the pass's whole work with one intra-op thread (the ``cpu`` clock), only this thread's
    share of it with more."""
    seconds: float
    """The energy window, edge to edge: at least the minimum, and whole counter steps."""
    joules: float
    """Energy the meter counted (or, for the estimate, computed) in the window."""
    images: int
    conditions: dict[str, Any] = dataclasses.field(default_factory=dict)
    """What the meter's hardware said of itself at the window's end (``EnergyMeter.conditions``:
    a GPU's SM clock, temperature, throttle reasons)."""
    clock: str = "wall"
    """Which passes the stored inference time is taken from: ``wall`` (:attr:`pass_seconds`)
    or ``cpu`` (:attr:`pass_cpu_seconds`)."""

    @property
    def timed_seconds(self) -> tuple[float, ...]:
        """Each pass on the window's :attr:`clock`."""
        return self.pass_cpu_seconds if self.clock == "cpu" else self.pass_seconds

    @property
    def seconds_per_pass(self) -> float:
        """This window's own estimate of the ``inference_time`` objective (:data:`PASS_QUANTILE`
        of its passes on its clock)."""
        return quantile(self.timed_seconds, PASS_QUANTILE)

    @property
    def joules_per_image(self) -> float:
        return self.joules / self.images


@dataclasses.dataclass(frozen=True)
class InferenceMeasurement:
    """What the protocol measured of one workload: its windows and the machine's load meanwhile."""

    windows: tuple[Window, ...]
    load: dict[str, Any] = dataclasses.field(default_factory=dict)
    """``optuna_energy.host.load.disturbance`` over all the windows (of every workload measured
    with it): load average, CPU steal, other processes' share of the CPUs; with several
    :attr:`runs`, each value a list of every run's."""
    runs: int = 1
    """Measuring runs whose windows it holds (:meth:`pooled`)."""

    def pooled(self, later: InferenceMeasurement) -> InferenceMeasurement:
        """This measurement and ``later`` (the same workload measured again, on the same clock)
        as one: every statistic is then over the union of their windows and passes.

        Raises:
            ValueError: ``later`` timed its passes on another clock.
        """
        if later.clock != self.clock:
            raise ValueError(f"cannot pool passes timed on the {self.clock} clock with passes timed "
                             f"on the {later.clock} clock")
        return InferenceMeasurement(
            windows=self.windows + later.windows, runs=self.runs + later.runs,
            load={key: self._load_runs(key) + later._load_runs(key)
                  for key in dict.fromkeys([*self.load, *later.load])})

    def _load_runs(self, key: str) -> list[Any]:
        """Each run's value of a load reading (``None`` where a run has none)."""
        if self.runs == 1:
            return [self.load.get(key)]
        return list(self.load.get(key, [None] * self.runs))

    @property
    def clock(self) -> str:
        """The clock that timed the passes (``wall`` or ``cpu``): what :attr:`seconds_per_pass`
        counts (:data:`CLOCK_UNITS`)."""
        return self.windows[0].clock

    @property
    def seconds_per_pass(self) -> float:
        """One pass over the evaluation set, the ``inference_time`` objective: the
        :data:`PASS_QUANTILE` quantile of every timed pass of every window, on :attr:`clock`."""
        return quantile([seconds for window in self.windows for seconds in window.timed_seconds],
                        PASS_QUANTILE)

    @property
    def seconds_per_pass_spread(self) -> float | None:
        """Relative spread of the windows' own estimates (``statistic.relative_spread``);
        ``None`` with one window."""
        return relative_spread([window.seconds_per_pass for window in self.windows])

    @property
    def energy_spread(self) -> float | None:
        """Relative spread of the windows' joules per image; ``None`` with one window."""
        return relative_spread([window.joules_per_image for window in self.windows])

    @property
    def passes(self) -> int:
        return sum(len(window.pass_seconds) for window in self.windows)

    @property
    def images(self) -> int:
        return sum(window.images for window in self.windows)

    @property
    def window_seconds(self) -> float:
        """The windows' length, added up: what the energy was counted over."""
        return sum(window.seconds for window in self.windows)

    @property
    def window_joules(self) -> float:
        """Energy counted in all the windows: energy stays what the counter read, not a statistic."""
        return sum(window.joules for window in self.windows)

    def conditions(self) -> dict[str, Any]:
        """The load over the windows and, per hardware reading, its value at each window's end."""
        readings: dict[str, list[Any]] = {}
        for window in self.windows:
            for key, value in window.conditions.items():
                readings.setdefault(key, []).append(value)
        return {**self.load, **readings}


@dataclasses.dataclass(frozen=True)
class Workload:
    """A model on its inputs, as the inference protocol runs it."""

    model: nn.Module
    device: torch.device
    run_batch: Callable[[int], object]
    """Runs the model on batch ``index`` (0 .. ``batches`` - 1), its inputs copied to the device
    (the copy is part of the time, as in the paper)."""
    batches: int
    inputs_per_pass: int
    batch_size: int
    """Inputs per batch: the measuring batch size."""
    costs: ArchProfile
    """One input's work (for a meter that estimates, and the memory fallback)."""
    activation_bytes: int = 4
    """Bytes per activation element where the memory allocator cannot tell (bf16: 2)."""


def data_workload(model: nn.Module, data: DeviceData, *, batch_size: int, costs: ArchProfile,
                  autocast: contextlib.AbstractContextManager | None = None,
                  activation_bytes: int = 4) -> Workload:
    """The built-in objective's workload: ``model`` on the evaluation set, normalised on the device,
    each forward pass inside ``autocast`` (e.g. ``train.precision_context``), so a model trained in
    bf16 is measured in bf16."""
    host = data.eval_x_host

    def run_batch(index: int) -> object:
        images = host[index * batch_size:(index + 1) * batch_size].to(data.device, non_blocking=True)
        with autocast or contextlib.nullcontext():
            return model(data.normalize(images)).argmax(dim=1)

    return Workload(model=model, device=data.device, run_batch=run_batch,
                    batches=-(-len(host) // batch_size), inputs_per_pass=len(host),
                    batch_size=batch_size, costs=costs,
                    activation_bytes=activation_bytes)


def open_meter(device: torch.device, *, settings: Iterable[Any] = (), meter: str = "auto") -> EnergyMeter:
    """The energy meter for ``device`` (see ``select_meter``, which hands each meter its
    ``settings``): the estimate when no hardware meter can read it."""
    return select_meter(str(device), gpu=identity(device), settings=settings, meter=meter)


def metered(meter: EnergyMeter, name: str, device: torch.device, run: Callable[[], T], *,
            work: Callable[[T], Work] | None = None) -> tuple[T, EnergyWindow]:
    """Run ``run`` inside the energy window ``name``, the device synchronised at both edges.

    Returns ``run``'s result and the window. ``work`` says, from the result, what ran (for a
    meter that estimates rather than counts). If ``run`` raises, the window is cancelled, so
    the next trial can open it again.
    """
    synchronize(device)
    meter.begin_window(name)
    try:
        result = run()
        synchronize(device)
    except BaseException:
        meter.cancel_window(name)
        raise
    return result, meter.end_window(name, work=work(result) if work is not None else None)


@torch.inference_mode()
def measure_inference(model: nn.Module, data: DeviceData, *, batch_size: int, warmup_batches: int,
                      min_window_seconds: float, meter: EnergyMeter, costs: ArchProfile,
                      windows: int = 1, clock: str = "auto",
                      autocast: contextlib.AbstractContextManager | None = None) -> InferenceMeasurement:
    """Time and meter repeated passes over the evaluation set, each batch copied from the host
    (:func:`data_workload`, then :func:`measure_passes`)."""
    model.eval()
    workload = data_workload(model, data, batch_size=batch_size, costs=costs, autocast=autocast)
    return measure_passes(workload, warmup_batches=warmup_batches, windows=windows,
                          min_window_seconds=min_window_seconds, meter=meter, clock=clock)


def measure_passes(workload: Workload, *, warmup_batches: int, min_window_seconds: float,
                   meter: EnergyMeter, windows: int = 1, clock: str = "auto") -> InferenceMeasurement:
    """The protocol behind every inference measurement, on one workload (see
    :func:`measure_interleaved`)."""
    return measure_interleaved([workload], warmup_batches=warmup_batches, windows=windows,
                               min_window_seconds=min_window_seconds, meter=meter, clock=clock)[0]


def measure_interleaved(workloads: Sequence[Workload], *, warmup_batches: int, windows: int,
                        min_window_seconds: float, meter: EnergyMeter,
                        clock: str = "auto") -> list[InferenceMeasurement]:
    """The inference protocol: ``warmup_batches`` batches of each workload, then ``windows``
    rounds in which each workload, in turn, repeats whole passes over its batches inside one
    energy window until it lasts ``min_window_seconds`` on the wall clock, the device
    synchronised after each pass and at the window's edges. Every pass is timed on its own, on
    the wall clock and in the measuring thread's CPU time; ``clock`` (one of :data:`CLOCKS`,
    resolved for the workloads' device by :func:`resolve_clock`) says which the stored time
    reads, and with ``cpu`` torch runs on one intra-op thread from warm-up to the last window
    (:func:`clock_threads`).

    Taking turns, rather than one workload's windows back to back, spreads a burst of load
    over every workload alike. The machine's load over all the rounds
    (``optuna_energy.host.load``) and the meter's hardware conditions at each window's end are
    kept with the windows. The workloads' ``costs`` describe one input's work for a meter that
    estimates. On a shared GPU, warm-up and windows run alone (``optuna_energy.host.gpu_share``).

    Returns:
        One measurement per workload, in order.

    Raises:
        ValueError: ``clock`` is unknown or cannot time the workloads' device (:func:`resolve_clock`).
    """
    timing = {resolve_clock(clock, workload.device) for workload in workloads}
    if len(timing) > 1:
        raise ValueError(f"workloads on a CPU and on an accelerator cannot share clock {clock!r}: "
                         "measure them apart")
    timed_on = timing.pop()
    measured: list[list[Window]] = [[] for _ in workloads]
    with gpu_share.alone(), clock_threads(timed_on):
        for workload in workloads:
            for index in range(warmup_batches):
                workload.run_batch(index % workload.batches)
        before = load.snapshot()
        for _ in range(windows):
            for workload, kept in zip(workloads, measured):
                kept.append(_window(workload, meter, min_window_seconds, timed_on))
        machine = load.disturbance(before, load.snapshot())
    return [InferenceMeasurement(windows=tuple(kept), load=machine) for kept in measured]


def _window(workload: Workload, meter: EnergyMeter, min_window_seconds: float, clock: str) -> Window:
    """One metered window of whole, individually timed passes over the workload."""
    batches, device, costs = workload.batches, workload.device, workload.costs

    def passes_for_the_minimum_window() -> list[tuple[float, float]]:
        durations: list[tuple[float, float]] = []
        start = last = time.perf_counter()
        last_cpu = time.thread_time()
        while True:
            for index in range(batches):
                workload.run_batch(index)
            synchronize(device)
            now, now_cpu = time.perf_counter(), time.thread_time()
            durations.append((now - last, now_cpu - last_cpu))
            last, last_cpu = now, now_cpu
            if now - start >= min_window_seconds:
                return durations

    durations, window = metered(
        meter, "inference", device, passes_for_the_minimum_window,
        work=lambda done: Work(macs=costs.macs, params=costs.params, activations=costs.activations,
                               batch_size=workload.batch_size,
                               images=len(done) * workload.inputs_per_pass))
    return Window(pass_seconds=tuple(wall for wall, _ in durations),
                  pass_cpu_seconds=tuple(cpu for _, cpu in durations), seconds=window.seconds, joules=window.joules,
                  images=len(durations) * workload.inputs_per_pass, conditions=meter.conditions(),
                  clock=clock)


def energy_per_inference(inference: InferenceMeasurement, *, idle_watts: float) -> tuple[float, float]:
    """Gross and net (idle power subtracted, never below 0) joules per image of a window."""
    idle = idle_watts * inference.window_seconds
    return (inference.window_joules / inference.images,
            max(inference.window_joules - idle, 0.0) / inference.images)


@torch.inference_mode()
def peak_memory(model: nn.Module, device: torch.device, forward: Callable[[], object], *,
                batch_size: int, activations: int, activation_bytes: int = 4) -> float:
    """Peak bytes of one forward pass (``forward``, one batch of ``batch_size``): measured where
    the device's allocator can tell, else the parameters plus ``activations`` elements per input
    of ``activation_bytes`` each: the parameters in fp32 and every layer's output, an upper bound,
    since a framework frees activations it no longer needs.

    Where the allocator can tell (CUDA: ``max_memory_allocated``), what it really held at its
    peak above what was allocated before, plus the parameters."""
    params = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())
    measured = backend(device).peak_memory
    if measured is None:
        return float(params + batch_size * activations * activation_bytes)
    model.eval()
    return float(measured(device, forward) + params)


def measure_idle_watts(meter: EnergyMeter, seconds: float) -> float:
    """Average power while nothing runs: subtracted from inference windows for net energy.

    Measured once per worker, before its first trial, with the same meter as the trials; on a
    shared GPU the other workers' training pauses meanwhile (``optuna_energy.host.gpu_share``).
    """
    if seconds <= 0:
        return 0.0
    with gpu_share.alone():
        meter.begin_window("idle")
        time.sleep(seconds)
        return meter.end_window("idle").watts
