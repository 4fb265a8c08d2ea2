"""Measuring your own model: time and energy per input, and energy windows, on any device.

:class:`EnergyMonitor` is the built-in objective's measuring protocol for any ``torch.nn.Module``
on any inputs: the same choice of meter (``select_meter``: hardware counter, sampled power,
RAPL, else the analytical estimate, each step down warned), the same repeated passes inside
``windows`` windows of at least ``min_window_seconds`` each, several models' windows taking
turns (``optuna_energy.measuring.measure``), the same idle power subtracted for the net
energy. The meter is opened and idle power measured once, when the monitor is made: make one
per process and use it in every trial.

For anything else (training), ``begin_window`` and ``end_window`` meter a named window, after
Zeus's ``ZeusMonitor``. Where no spec tells the model's work (for the analytical estimate),
:func:`profile_module` counts it with torch's ``FlopCounterMode``.

Nothing here knows about Optuna: :func:`optuna_energy.record_measurement` writes a result onto
a trial.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from optuna_energy.host.devices import resolve_device, synchronize
from optuna_energy.host.meters import (
    EnergyEstimateWarning,
    EnergyWindow,
    EstimateMeter,
    Work,
    settings_from_keywords,
)
from optuna_energy.measuring.costs import ENERGY_KINDS, measure_costs_interleaved
from optuna_energy.measuring.measure import (
    DEFAULT_WINDOWS,
    Workload,
    measure_idle_watts,
    open_meter,
    resolve_clock,
)
from optuna_energy.model.arch import ArchProfile

__all__ = ["EnergyMonitor", "InferenceResult", "WindowResult", "profile_module"]


@dataclasses.dataclass(frozen=True)
class InferenceResult:
    """What :meth:`EnergyMonitor.measure_inference` measured, in SI units."""

    source: str
    """The meter that measured (``energy_source``): ``nvml-counter``, ``nvml-power``, ``rapl``
    or ``estimate``. Compare results only within one source and one device."""
    device: str
    seconds_per_pass: float
    """One pass over all the inputs given: the ``inference_time`` objective, on :attr:`clock`."""
    clock: str
    """What :attr:`seconds_per_pass` counts: ``wall`` (seconds, the device synchronised) or
    ``cpu`` (CPU seconds of the measuring thread, torch on one intra-op thread)."""
    inputs_per_pass: int
    energy_per_input_j: float
    """Net or gross joules per input, as ``energy`` asked: the ``energy`` objective."""
    energy_gross_j: float
    """Joules per input the device drew."""
    energy_net_j: float
    """Joules per input above idle power (never below 0)."""
    window_seconds: float
    window_inputs: int
    """Inputs inferred in the energy window (whole passes)."""
    idle_watts: float
    params: int
    macs: int
    """Multiply-accumulates of one input's forward pass."""
    memory_bytes: float
    """Peak memory of one forward pass of the first batch (see ``peak_inference_memory``)."""
    measure_seconds: float
    meter: dict[str, Any]
    """What the meter says of itself (device name, power limit, the estimate's constants)."""
    fields: dict[str, Any]
    """The trial record fields measured (``optuna_energy.measuring.costs.measure_costs``): every
    registered metric's, plug-ins' included, and the energy window's; what
    ``optuna_energy.record_measurement`` stores."""


@dataclasses.dataclass(frozen=True)
class WindowResult:
    """One closed window of :meth:`EnergyMonitor.end_window` (Zeus's ``Measurement``)."""

    name: str
    source: str
    seconds: float
    joules: float
    """Joules the device drew in the window (for the estimate: computed from the work)."""
    idle_watts: float

    @property
    def net_joules(self) -> float:
        """Joules above idle power, never below 0."""
        return max(self.joules - self.idle_watts * self.seconds, 0.0)

    @property
    def watts(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else 0.0


def _batches(inputs: torch.Tensor | Iterable[Any], batch_size: int | None) -> list[torch.Tensor]:
    """The inputs as a list of batch tensors: a tensor split along its first dimension, or each
    item of an iterable (of a ``(inputs, labels, ...)`` tuple or list, the first element)."""
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() == 0 or len(inputs) == 0:
            raise ValueError(f"inputs must hold at least one input along dimension 0, got shape "
                             f"{tuple(inputs.shape)}")
        return list(inputs.split(batch_size or 100))
    batches = [item[0] if isinstance(item, (tuple, list)) else item for item in inputs]
    if not batches or not all(isinstance(batch, torch.Tensor) and batch.dim() > 0 and len(batch)
                              for batch in batches):
        raise ValueError("inputs must be a tensor or an iterable of non-empty batch tensors "
                         "(or of (inputs, labels) pairs)")
    return batches


@torch.no_grad()
def profile_module(model: nn.Module, example: torch.Tensor) -> ArchProfile:
    """Parameters, multiply-accumulates and activation elements of one input, counted on a
    forward pass of ``example`` (a batch) with torch's ``FlopCounterMode`` and forward hooks.

    What ``optuna_energy.profile`` computes from a spec, for any module: the work the analytical
    estimate turns into joules. Operations without a FLOP formula in torch (elementwise ones,
    pooling) count no MACs; activations are the elements every leaf module writes.

    Example:
        >>> from torch import nn
        >>> profile_module(nn.Linear(8, 4), torch.zeros(2, 8))
        ArchProfile(params=36, macs=32, activations=4)
    """
    if not isinstance(example, torch.Tensor) or example.dim() == 0 or len(example) == 0:
        raise ValueError("example must be a batch tensor with at least one input")
    written = [0]

    def count(module: nn.Module, args: Any, output: Any) -> None:
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        written[0] += sum(item.numel() for item in outputs if isinstance(item, torch.Tensor))

    leaves = [module for module in model.modules() if not list(module.children())]
    hooks = [leaf.register_forward_hook(count) for leaf in leaves]
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            output = model(example)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    if not written[0] and isinstance(output, torch.Tensor):
        written[0] = output.numel()
    batch = len(example)
    return ArchProfile(params=sum(parameter.numel() for parameter in model.parameters()),
                       macs=int(counter.get_total_flops()) // 2 // batch,
                       activations=written[0] // batch)


def _same_device(first: torch.device, second: torch.device) -> bool:
    """One device, where ``cuda`` (no index) is the current one: ``cuda:0`` for a fresh process."""
    if first.type != second.type:
        return False
    return first.index is None or second.index is None or first.index == second.index


def _positive(value: float, name: str, *, zero_allowed: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            value >= 0 if zero_allowed else value > 0):
        raise ValueError(f"{name} must be a number {'>= 0' if zero_allowed else '> 0'}, got {value!r}")


class EnergyMonitor:
    """Time and energy of your own models on one device, with the built-in objective's protocol.

    The meter is the best one that works on the device (see ``optuna_energy.host.meters.select_meter``:
    a warning says why at every step down, ``EnergyEstimateWarning`` when it is the analytical
    estimate), and idle power is measured once, here: make one monitor per process, before the
    study, and use it in every trial.

    Args:
        device: Where the models run: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a ``torch.device``.
        meter: ``auto`` (the best that works) or one energy source by name, e.g. ``estimate``.
        idle_seconds: How long idle power is measured (0: not at all, the net equals the gross).
        **meter_settings: The meters' settings by name, as in the config's ``[measure.<meter>]``
            tables: ``power_interval_s`` (seconds between power samples where a GPU has no
            energy counter), ``powercap_root`` (the RAPL tree), and those of plug-in meters.

    Raises:
        ValueError: A bad argument, naming it (``DeviceError`` for a device this machine lacks).
        EnergyMeterError: A meter named by ``meter`` cannot be opened.

    Example:
        >>> monitor = optuna_energy.EnergyMonitor(device="cpu")
        >>> result = monitor.measure_inference(model, test_images)
        >>> result.seconds_per_pass, result.energy_per_input_j, result.source
        >>> monitor.begin_window("training")
        >>> train(model)
        >>> monitor.end_window("training", model=model, example=batch, n_inputs=60000).joules
    """

    def __init__(self, *, device: str | torch.device = "auto", meter: str = "auto",
                 idle_seconds: float = 2.0, **meter_settings: Any) -> None:
        if not isinstance(device, (str, torch.device)):
            raise ValueError(f"device must be a name such as 'cpu' or 'cuda:0' or a torch.device, "
                             f"got {device!r}")
        _positive(idle_seconds, "idle_seconds", zero_allowed=True)
        settings = settings_from_keywords(meter_settings)
        self.device = resolve_device(str(device))
        self.meter = open_meter(self.device, settings=settings, meter=meter)
        self.idle_watts = measure_idle_watts(self.meter, idle_seconds) if self.meter.counts_hardware else 0.0

    @property
    def source(self) -> str:
        """The meter's ``energy_source``."""
        return self.meter.source

    @torch.inference_mode()
    def measure_inference(self, model: nn.Module, inputs: torch.Tensor | Iterable[Any], *,
                          batch_size: int | None = None, warmup_batches: int = 2,
                          min_window_seconds: float = 1.0, windows: int = DEFAULT_WINDOWS,
                          clock: str = "auto", energy: str = "net",
                          costs: ArchProfile | None = None) -> InferenceResult:
        """Inference time per pass over ``inputs`` and energy per input of ``model``.

        Each timed pass runs ``model`` on every batch, copied to the monitor's device (the
        host-to-device copy is part of the time, as in the paper, unless the inputs are on the
        device already); after ``warmup_batches`` batches, passes repeat inside ``windows``
        energy windows of at least ``min_window_seconds`` each. The inference time is a low
        quantile of all the timed passes on ``clock``, its spread how far the windows disagree;
        the energy is what the meter counted over all the windows, whatever the clock. The model
        is put in eval mode for the measurement and back in the mode it was in.

        Args:
            model: The module, on the monitor's device.
            inputs: A tensor of inputs (split into batches of ``batch_size``) or an iterable of
                batches (a ``DataLoader``; of ``(inputs, labels)`` pairs the inputs), held in a
                list for the repeated passes.
            batch_size: Inputs per batch when ``inputs`` is a tensor (default 100, the paper's).
            warmup_batches: Batches run before the first window opens.
            min_window_seconds: Each window's least length: energy counters step every ~100 ms.
            windows: Measuring windows (1 or more; a spread needs two).
            clock: What times a pass: ``auto`` (on a CPU ``cpu``, on a GPU ``wall``), ``wall``
                (seconds on the wall clock, the device synchronised, torch's threads as you set
                them) or ``cpu`` (a CPU only: the CPU seconds of the measuring thread with torch
                on one intra-op thread for the windows, your thread count restored after; the
                model's work, which other load on the machine barely changes).
            energy: ``net`` (idle power subtracted, the built-in default) or ``gross``: which is
                ``energy_per_input_j``.
            costs: The model's work per input for the analytical estimate (``optuna_energy.profile``
                of a spec); counted with :func:`profile_module` when not given.

        Raises:
            ValueError: A bad argument, naming it; a model with parameters on another device.
        """
        return self.measure_models([model], inputs, batch_size=batch_size, warmup_batches=warmup_batches,
                                   min_window_seconds=min_window_seconds, windows=windows, clock=clock,
                                   energy=energy, costs=None if costs is None else [costs])[0]

    @torch.inference_mode()
    def measure_models(self, models: Sequence[nn.Module], inputs: torch.Tensor | Iterable[Any], *,
                       batch_size: int | None = None, warmup_batches: int = 2,
                       min_window_seconds: float = 1.0, windows: int = DEFAULT_WINDOWS,
                       clock: str = "auto", energy: str = "net",
                       costs: Sequence[ArchProfile] | None = None) -> list[InferenceResult]:
        """:meth:`measure_inference` of several models on the same inputs, their windows taking
        turns (model 1, model 2, ..., then model 1 again), so a burst of load on the machine
        slows each of them alike instead of the one measured at the time.

        Args:
            models: The modules, on the monitor's device.
            costs: Each model's work per input, in order (see :meth:`measure_inference`).
            inputs, batch_size, warmup_batches, min_window_seconds, windows, clock, energy: As
                for :meth:`measure_inference`.

        Returns:
            One result per model, in order; ``measure_seconds`` is the whole call's.

        Raises:
            ValueError: A bad argument, naming it; a model with parameters on another device.
        """
        models = list(models)
        if not models or not all(isinstance(model, nn.Module) for model in models):
            raise ValueError("models must be one or more torch.nn.Module, got "
                             f"{[type(model).__name__ for model in models]}")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(warmup_batches, bool) or not isinstance(warmup_batches, int) or warmup_batches < 0:
            raise ValueError(f"warmup_batches must be an integer >= 0, got {warmup_batches!r}")
        if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
            raise ValueError(f"windows must be an integer >= 1, got {windows!r}")
        _positive(min_window_seconds, "min_window_seconds", zero_allowed=True)
        resolve_clock(clock, self.device)
        if energy not in ENERGY_KINDS:
            raise ValueError(f"energy must be one of {', '.join(ENERGY_KINDS)}, got {energy!r}")
        if costs is not None and len(costs) != len(models):
            raise ValueError(f"costs must give one ArchProfile per model ({len(models)}), got {len(costs)}")
        for model in models:
            devices = {parameter.device for parameter in model.parameters()}
            if not all(_same_device(device, self.device) for device in devices):
                raise ValueError(f"model has parameters on {', '.join(sorted(map(str, devices)))}, the "
                                 f"monitor measures on {self.device}: move it with model.to(...)")
        batches = _batches(inputs, batch_size)
        start = time.perf_counter()
        was_training = [model.training for model in models]
        first = batches[0]
        try:
            profiles = list(costs) if costs is not None else [
                profile_module(model, first.to(self.device)) for model in models]
            workloads = [Workload(
                model=model, device=self.device, run_batch=self._batch_runner(model, batches),
                batches=len(batches), inputs_per_pass=sum(len(batch) for batch in batches),
                batch_size=len(first), costs=profile,
                activation_bytes=first.element_size() if first.is_floating_point() else 4)
                for model, profile in zip(models, profiles)]
            measured = measure_costs_interleaved(
                workloads, meter=self.meter, idle_watts=self.idle_watts, energy=energy,
                warmup_batches=warmup_batches, windows=windows, min_window_seconds=min_window_seconds,
                clock=clock)
        finally:
            for model, training in zip(models, was_training):
                model.train(training)
        seconds = time.perf_counter() - start
        results = []
        for workload, fields in zip(workloads, measured):
            fields["measure_seconds"] = seconds
            results.append(InferenceResult(
                source=self.meter.source, device=str(self.device),
                seconds_per_pass=fields["inference_time_s"], clock=fields["inference_clock"],
                inputs_per_pass=workload.inputs_per_pass,
                energy_per_input_j=fields["energy_per_inference_j"],
                energy_gross_j=fields["energy_gross_j"], energy_net_j=fields["energy_net_j"],
                window_seconds=fields["energy_window_s"], window_inputs=fields["energy_window_images"],
                idle_watts=self.idle_watts, params=workload.costs.params, macs=workload.costs.macs,
                memory_bytes=fields["memory_bytes"], measure_seconds=seconds,
                meter=fields["meter"], fields=fields))
        return results

    def _batch_runner(self, model: nn.Module, batches: list[torch.Tensor]) -> Callable[[int], object]:
        """Runs ``model`` on batch ``index``, copied to the monitor's device."""
        return lambda index: model(batches[index].to(self.device, non_blocking=True))

    def begin_window(self, name: str) -> None:
        """Open the energy window ``name`` (the device synchronised first), as ``ZeusMonitor`` does.

        Raises:
            ValueError: A window of that name is open already.
        """
        synchronize(self.device)
        self.meter.begin_window(name)

    def end_window(self, name: str, *, model: nn.Module | None = None,
                   example: torch.Tensor | None = None, n_inputs: int | None = None,
                   training: bool = True) -> WindowResult:
        """Close the window ``name`` (the device synchronised first) and return what it measured.

        Hardware meters count the energy themselves. The analytical estimate computes it from
        the work done in the window: pass the ``model``, an ``example`` batch of its inputs and
        ``n_inputs``, the inputs processed in the window (epochs times training-set size), with
        ``training`` for forward and backward passes. Without them its joules are 0, with an
        ``EnergyEstimateWarning``.

        Raises:
            ValueError: No window of that name is open.
            EnergyMeterError: A hardware meter counted no energy (its counter is stuck).
        """
        synchronize(self.device)
        window: EnergyWindow = self.meter.end_window(name)  # the estimate: seconds, 0 J
        if not self.meter.counts_hardware:
            window = EnergyWindow(seconds=window.seconds, joules=self._estimate(
                name, model=model, example=example, n_inputs=n_inputs, training=training))
        return WindowResult(name=name, source=self.meter.source, seconds=window.seconds,
                            joules=window.joules, idle_watts=self.idle_watts)

    def _estimate(self, name: str, *, model: nn.Module | None, example: torch.Tensor | None,
                  n_inputs: int | None, training: bool) -> float:
        """The estimate's joules for the window's work (after its edge, so counting is not timed)."""
        if model is None or example is None or n_inputs is None:
            warnings.warn(f"energy window {name!r} is metered by the analytical estimate, which needs "
                          "model=, example= and n_inputs= to know the work done: its joules are 0",
                          EnergyEstimateWarning, stacklevel=3)
            return 0.0
        costs = profile_module(model, example.to(self.device))
        work = Work(macs=costs.macs, params=costs.params, activations=costs.activations,
                    batch_size=len(example), images=n_inputs, training=training)
        estimator = EstimateMeter()  # computes a window's joules from its work, as in the objective
        estimator.begin_window(name)
        return estimator.end_window(name, work=work).joules

    def close(self) -> None:
        """Release the meter (a GPU handle, a sampling thread)."""
        self.meter.close()

    def __enter__(self) -> EnergyMonitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

