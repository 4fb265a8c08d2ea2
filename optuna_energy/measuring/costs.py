"""The one measuring path: every registered cost of a model on its inputs, as trial record fields.

The built-in objective (``optuna_energy.trial.costs_first``, through :func:`measure_workload_costs`,
which also pools a second run with the first) and ``EnergyMonitor.measure_inference`` (through
:func:`measure_costs`) share it: it runs the inference protocol once (``windows`` windows,
``optuna_energy.measuring.measure.measure_interleaved``) and then every registered metric's
``measure`` on the :class:`ModelUnderTest`, so a metric added with
``optuna_energy.metrics.register`` is measured wherever a model is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from optuna_energy.host.meters import EnergyMeter
from optuna_energy.measuring.measure import (
    InferenceMeasurement,
    Workload,
    energy_per_inference,
    measure_interleaved,
    peak_memory,
)
from optuna_energy.metrics import METRICS

ENERGY_KINDS = ("net", "gross")
"""Which joules per inference the ``energy`` objective is: above idle power, or all of them."""


@dataclasses.dataclass(frozen=True)
class ModelUnderTest:
    """A model on its inputs with what the inference protocol measured: what a metric's
    ``measure`` function reads."""

    workload: Workload
    inference: InferenceMeasurement
    idle_watts: float
    """Power while nothing runs, subtracted for the net energy."""
    energy: str = "net"
    """``net`` or ``gross``: which is :attr:`energy_per_inference_j`."""

    @property
    def model(self) -> nn.Module:
        return self.workload.model

    def forward(self) -> object:
        """One forward pass of the first batch (the measuring batch size), inputs copied to the
        device: for a metric that runs the model itself (count FLOPs, watch memory)."""
        return self.workload.run_batch(0)

    @property
    def energy_gross_j(self) -> float:
        return energy_per_inference(self.inference, idle_watts=self.idle_watts)[0]

    @property
    def energy_net_j(self) -> float:
        return energy_per_inference(self.inference, idle_watts=self.idle_watts)[1]

    @property
    def energy_per_inference_j(self) -> float:
        """The ``energy`` objective: net or gross joules per input, as :attr:`energy` says."""
        return self.energy_net_j if self.energy == "net" else self.energy_gross_j

    def peak_memory(self) -> float:
        """Peak memory of one forward pass at the measuring batch size, in bytes (see
        ``optuna_energy.measuring.measure.peak_memory``)."""
        workload = self.workload
        with torch.inference_mode():
            return peak_memory(workload.model, workload.device, self.forward,
                               batch_size=workload.batch_size, activations=workload.costs.activations,
                               activation_bytes=workload.activation_bytes)


def metric_fields(under_test: ModelUnderTest) -> dict[str, Any]:
    """Every registered metric with a ``measure`` function, measured: record field -> value, and
    the spread field -> its spread for a metric that has one (where the windows tell it).

    Raises:
        ValueError: A metric measured no finite number, naming it.
    """
    fields = {}
    for entry in METRICS.values():
        if entry.measure is None:
            continue
        value = entry.measure(under_test)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"metric {entry.name!r} measured {value!r}; its measure must return a "
                             "finite number")
        fields[entry.field] = value
        spread = entry.spread(under_test) if entry.spread is not None else None
        if spread is not None and entry.spread_field is not None:
            fields[entry.spread_field] = spread
    return fields


@torch.inference_mode()
def measure_costs(workload: Workload, *, meter: EnergyMeter, idle_watts: float, energy: str = "net",
                  warmup_batches: int, min_window_seconds: float, windows: int = 1,
                  clock: str = "auto") -> dict[str, Any]:
    """Run the inference protocol on ``workload``, then measure every registered cost
    (:func:`measure_costs_interleaved` of one workload)."""
    return measure_costs_interleaved([workload], meter=meter, idle_watts=idle_watts, energy=energy,
                                     warmup_batches=warmup_batches, windows=windows,
                                     min_window_seconds=min_window_seconds, clock=clock)[0]


@torch.inference_mode()
def measure_costs_interleaved(workloads: Sequence[Workload], *, meter: EnergyMeter, idle_watts: float,
                              energy: str = "net", warmup_batches: int, min_window_seconds: float,
                              windows: int, clock: str = "auto") -> list[dict[str, Any]]:
    """Run the inference protocol on the workloads, their ``windows`` windows taking turns and
    timed on ``clock`` (``measure.measure_interleaved``), then measure every registered cost
    of each (:func:`_cost_fields`). The models are put in eval mode."""
    measured = _measure(workloads, meter=meter, warmup_batches=warmup_batches, windows=windows,
                        min_window_seconds=min_window_seconds, clock=clock)
    return [_cost_fields(workload, inference, meter=meter, idle_watts=idle_watts, energy=energy)
            for workload, inference in zip(workloads, measured)]


@torch.inference_mode()
def measure_workload_costs(workload: Workload, earlier: InferenceMeasurement | None, *, meter: EnergyMeter,
                 idle_watts: float, energy: str = "net", warmup_batches: int,
                 min_window_seconds: float, windows: int,
                 clock: str = "auto") -> tuple[InferenceMeasurement, dict[str, Any]]:
    """:func:`measure_costs` that also returns what the protocol measured, and with ``earlier``
    (a measurement of the same workload) pools the new ``windows`` windows with its windows:
    every cost and spread is then over the union (``InferenceMeasurement.pooled``), as if all
    the windows had been measured in one run.

    Raises:
        ValueError: ``earlier`` was timed on another clock than ``clock`` resolves to.
    """
    measured = _measure([workload], meter=meter, warmup_batches=warmup_batches, windows=windows,
                        min_window_seconds=min_window_seconds, clock=clock)[0]
    if earlier is not None:
        measured = earlier.pooled(measured)
    return measured, _cost_fields(workload, measured, meter=meter, idle_watts=idle_watts, energy=energy)


def _measure(workloads: Sequence[Workload], *, meter: EnergyMeter, warmup_batches: int,
             min_window_seconds: float, windows: int, clock: str) -> list[InferenceMeasurement]:
    for workload in workloads:
        workload.model.eval()  # a model just trained is in training mode
    return measure_interleaved(workloads, warmup_batches=warmup_batches, windows=windows,
                               min_window_seconds=min_window_seconds, meter=meter, clock=clock)


def _cost_fields(workload: Workload, inference: InferenceMeasurement, *, meter: EnergyMeter,
                idle_watts: float, energy: str = "net") -> dict[str, Any]:
    """Trial record fields of what the protocol measured of ``workload``: each registered
    metric's (``inference_time_s``, ``energy_per_inference_j``, ``params``, ``memory_bytes`` and
    any a plug-in registered) and spread (``inference_time_spread``, ``energy_spread``, with
    two windows or more), with how it was measured (``inference_clock``: ``wall`` or ``cpu``,
    what the inference time counts; ``measure_windows``; ``measure_conditions``: the machine's
    load and the meter's hardware state; ``energy_source``, gross, net, the windows' length and
    images, idle power, the meter's ``info``).
    """
    under_test = ModelUnderTest(workload=workload, inference=inference, idle_watts=idle_watts,
                                energy=energy)
    return {"energy_source": meter.source, "energy_gross_j": under_test.energy_gross_j,
            "energy_net_j": under_test.energy_net_j, "energy_window_s": inference.window_seconds,
            "energy_window_images": inference.images, "idle_watts": idle_watts,
            "inference_clock": inference.clock, "measure_windows": len(inference.windows),
            "measure_conditions": inference.conditions(), **metric_fields(under_test),
            "meter": meter.info()}
