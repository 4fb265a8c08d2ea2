"""The inference protocol: time and energy per inference, measured fairly.

The paper times one pass over the evaluation set at batch size 100, host-to-device transfer
included. Energy counters update only every ~100 ms (and NVML's plain power reading is a
one-second average), so one pass is too short to meter: after warm-up batches, passes are
repeated inside one window until it lasts at least ``min_window_seconds``, with the device
synchronised at both edges, and the energy is divided by the images actually inferred.

This is also where torch meets the meters: :func:`open_meter` tells a meter which physical
device a torch device is (``optuna_energy.host.devices.identity``), so ``optuna_energy.host.meters`` stays
free of torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
from torch import nn

from optuna_energy.data import DeviceData
from optuna_energy.host import gpu_share
from optuna_energy.host.devices import backend, identity, synchronize
from optuna_energy.host.meters import EnergyMeter, EnergyWindow, Work, select_meter
from optuna_energy.model.arch import ArchProfile

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class InferenceMeasurement:
    seconds_per_pass: float
    """One pass over the evaluation set: the ``inference_time`` objective."""
    passes: int
    images: int
    window_seconds: float
    """The energy window, edge to edge: at least the minimum, and whole counter steps."""
    window_joules: float
    """Energy the meter counted (or, for the estimate, computed) in the window."""


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
                      autocast: contextlib.AbstractContextManager | None = None) -> InferenceMeasurement:
    """Time and meter repeated passes over the evaluation set, each batch copied from the host
    (:func:`data_workload`, then :func:`measure_passes`)."""
    model.eval()
    workload = data_workload(model, data, batch_size=batch_size, costs=costs, autocast=autocast)
    return measure_passes(workload, warmup_batches=warmup_batches,
                          min_window_seconds=min_window_seconds, meter=meter)


def measure_passes(workload: Workload, *, warmup_batches: int, min_window_seconds: float,
                   meter: EnergyMeter) -> InferenceMeasurement:
    """The protocol behind every inference measurement: ``warmup_batches`` batches, then whole
    passes over the workload's batches repeated inside one energy window until it lasts
    ``min_window_seconds``, the device synchronised after each pass and at the window's edges.

    The workload's ``costs`` describe one input's work for a meter that estimates. On a shared
    GPU, warm-up and window run alone (``optuna_energy.host.gpu_share``).
    """
    batches, device = workload.batches, workload.device

    def passes_for_the_minimum_window() -> tuple[int, float]:
        start = time.perf_counter()
        passes = 0
        while True:
            for index in range(batches):
                workload.run_batch(index)
            synchronize(device)
            passes += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_window_seconds:
                return passes, elapsed

    costs, inputs = workload.costs, workload.inputs_per_pass
    with gpu_share.alone():
        for index in range(warmup_batches):
            workload.run_batch(index % batches)
        (passes, elapsed), window = metered(
            meter, "inference", device, passes_for_the_minimum_window,
            work=lambda done: Work(macs=costs.macs, params=costs.params, activations=costs.activations,
                                   batch_size=workload.batch_size, images=done[0] * inputs))
    return InferenceMeasurement(seconds_per_pass=elapsed / passes, passes=passes,
                                images=passes * inputs, window_seconds=window.seconds,
                                window_joules=window.joules)


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
