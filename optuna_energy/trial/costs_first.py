"""Costs first: what a trial's architecture costs, measured on the freshly built model.

Parameters, MACs, inference time, energy per inference, memory and every other registered cost
(``optuna_energy.measuring.costs.measure_costs``) depend on the architecture and the measuring protocol, not on the
weights' values: the same layers run the same dense kernels on the same shapes whatever numbers
the weights hold. So they are measured once, before the first training step, and the trial
keeps them after training (``docs/energy.md`` says why and ``bench/early_stopping.py`` checks it).
Limits in ``[constraints]`` are checked here (``metrics.limit_violations``, which the objective also
applies to accuracy's floor after training): an architecture over one is never trained.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from torch import nn

from optuna_energy.config import StudyConfig
from optuna_energy.data import DeviceData
from optuna_energy.host.meters import EnergyMeter
from optuna_energy.measuring.costs import measure_costs
from optuna_energy.measuring.measure import data_workload
from optuna_energy.metrics import METRICS, limit_violations
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


def measure_architecture(model: nn.Module, *, config: StudyConfig, data: DeviceData,
                         profile: ArchProfile, meter: EnergyMeter,
                         idle_watts: float) -> ArchitectureCosts:
    """Measure every cost of ``model`` (trained or not) with the study's inference protocol.

    Raises:
        TrialFailure: Memory ran out while measuring.
    """
    measure, precision = config.measure, config.training.precision
    start = time.perf_counter()
    workload = data_workload(model, data, batch_size=measure.batch_size, costs=profile,
                             autocast=precision_context(data.device, precision),
                             activation_bytes=2 if precision == "bf16" else 4)
    with trial_failures():
        fields = measure_costs(workload, meter=meter, idle_watts=idle_watts, energy=measure.energy,
                               warmup_batches=measure.warmup_batches, windows=measure.windows,
                               min_window_seconds=measure.min_window_seconds, clock=measure.clock)
    fields["measure_seconds"] = time.perf_counter() - start
    return ArchitectureCosts(fields=fields, violations=limit_violations(
        fields, dataclasses.asdict(config.constraints)))
