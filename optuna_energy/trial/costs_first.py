"""Costs first: what a trial's architecture costs, measured on the freshly built model.

Parameters, MACs, inference time, energy per inference and every registry metric with a
``measure`` function (memory) depend on the architecture and the measuring protocol, not on the
weights' values: the same layers run the same dense kernels on the same shapes whatever numbers
the weights hold. So they are measured once, before the first training step, and the trial
keeps them after training (``docs/energy.md`` says why and ``bench/early_stopping.py`` checks it).
Limits in ``[constraints]`` are checked here: an architecture over one is never trained.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from torch import nn

from optuna_energy.config import StudyConfig
from optuna_energy.data import DeviceData
from optuna_energy.host.meters import EnergyMeter
from optuna_energy.measuring.measure import (
    ModelUnderTest,
    energy_per_inference,
    measure_inference,
)
from optuna_energy.metrics import ACCURACY, METRICS
from optuna_energy.model.arch import ArchProfile
from optuna_energy.trial.train import precision_context, trial_failures


@dataclasses.dataclass(frozen=True)
class ArchitectureCosts:
    """The architecture's measured costs as trial record fields, and its limit violations."""

    fields: dict[str, Any]
    """Record fields: ``inference_time_s``, ``energy_per_inference_j``, ``memory_bytes``..."""
    violations: dict[str, float]
    """Constraint key -> violation (> 0: over the limit), for every metric with a limit set."""

    @property
    def over_limit(self) -> list[str]:
        """The ``[constraints]`` keys the architecture exceeds."""
        return [str(METRICS[name].limit) for name, value in self.violations.items() if value > 0]

    def cost(self, name: str) -> float:
        """A cost metric's value, by registry name."""
        return float(self.fields[METRICS[name].field])


def measure_architecture(model: nn.Module, *, config: StudyConfig, data: DeviceData,
                         profile: ArchProfile, meter: EnergyMeter,
                         idle_watts: float) -> ArchitectureCosts:
    """Measure every cost of ``model`` (trained or not) with the study's inference protocol.

    Raises:
        TrialFailure: Memory ran out while measuring.
    """
    measure, precision = config.measure, config.training.precision
    start = time.perf_counter()
    with trial_failures():
        inference = measure_inference(
            model, data, batch_size=measure.batch_size, warmup_batches=measure.warmup_batches,
            min_window_seconds=measure.min_window_seconds, meter=meter, costs=profile,
            autocast=precision_context(data.device, precision))
    gross, net = energy_per_inference(inference, idle_watts=idle_watts)
    fields: dict[str, Any] = {
        "params": profile.params,
        "inference_time_s": inference.seconds_per_pass,
        "energy_source": meter.source,
        "energy_per_inference_j": net if measure.energy == "net" else gross,
        "energy_gross_j": gross,
        "energy_net_j": net,
        "energy_window_s": inference.window_seconds,
        "energy_window_images": inference.images,
        "idle_watts": idle_watts,
    }
    under_test = ModelUnderTest(model=model, data=data, batch_size=measure.batch_size,
                                costs=profile, precision=precision)
    with trial_failures():
        fields |= {entry.field: entry.measure(under_test)
                   for entry in METRICS.values() if entry.measure is not None}
    fields["measure_seconds"] = time.perf_counter() - start
    fields["meter"] = meter.info()
    violations = {}
    for name, entry in METRICS.items():
        limit = getattr(config.constraints, entry.limit) if entry.limit else None
        if limit is not None and name != ACCURACY:
            violations[name] = float(fields[entry.field] - limit)
    return ArchitectureCosts(fields=fields, violations=violations)
