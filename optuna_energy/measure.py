"""The inference protocol: time and energy per inference, measured fairly.

The paper times one pass over the evaluation set at batch size 100, host-to-device transfer
included. Energy counters update only every ~100 ms (and NVML's plain power reading is a
one-second average), so one pass is too short to meter: after warm-up batches, passes are
repeated inside one window until it lasts at least ``min_window_seconds``, with the device
synchronised at both edges, and the energy is divided by the images actually inferred.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

import torch
from torch import nn

from optuna_energy.data import DeviceData
from optuna_energy.energy import EnergyMeter


@dataclasses.dataclass(frozen=True)
class InferenceMeasurement:
    seconds_per_pass: float
    """One pass over the evaluation set: the ``inference_time`` objective."""
    passes: int
    images: int
    window_seconds: float
    window_joules: float | None
    """Energy the meter counted in the window, or ``None`` without a hardware meter."""


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def measure_inference(model: nn.Module, data: DeviceData, *, batch_size: int, warmup_batches: int,
                      min_window_seconds: float, meter: EnergyMeter | None,
                      autocast: contextlib.AbstractContextManager | None = None) -> InferenceMeasurement:
    """Time (and meter) repeated passes over the evaluation set, each batch copied from the host.

    ``autocast`` (e.g. ``train.precision_context``) wraps each forward pass, so a model trained
    in bf16 is measured in bf16.
    """
    model.eval()
    host = data.eval_x_host
    device = data.device

    def one_batch(start: int) -> None:
        images = host[start:start + batch_size].to(device, non_blocking=True)
        with autocast or contextlib.nullcontext():
            model(data.normalize(images)).argmax(dim=1)

    for index in range(warmup_batches):
        one_batch((index * batch_size) % len(host))
    _synchronize(device)
    if meter is not None:
        meter.begin_window("inference")
    start = time.perf_counter()
    passes = 0
    while True:
        for offset in range(0, len(host), batch_size):
            one_batch(offset)
        _synchronize(device)
        passes += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_window_seconds:
            break
    window = meter.end_window("inference") if meter is not None else None
    return InferenceMeasurement(
        seconds_per_pass=elapsed / passes, passes=passes, images=passes * len(host),
        window_seconds=elapsed, window_joules=window.joules if window else None,
    )


def measure_idle_watts(meter: EnergyMeter, seconds: float) -> float:
    """Average power while nothing runs: subtracted from inference windows for net energy."""
    if seconds <= 0:
        return 0.0
    meter.begin_window("idle")
    time.sleep(seconds)
    return meter.end_window("idle").watts
