"""Costs first: what a trial's architecture costs, measured on the freshly built model.

Parameters, MACs, inference time, energy per inference, memory and every other registered cost
(``optuna_energy.measuring.costs.measure_costs``) depend on the architecture and the measuring protocol, not on the
weights' values: the same layers run the same dense kernels on the same shapes whatever numbers
the weights hold. So they are measured once, before the first training step, and the trial
keeps them after training (``docs/energy.md`` says why and ``bench/early_stopping.py`` checks it).
Limits in ``[constraints]`` are checked here (``metrics.limit_violations``, which the objective also
applies to accuracy's floor after training): an architecture over one is never trained.

The same model can be measured again after training (:func:`measure_again`), its new windows
pooled with the first ones, when a network would enter the Pareto front only within its spread
(``optuna_energy.trial.front_entry``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from torch import nn

from optuna_energy.config import StudyConfig
from optuna_energy.data import DeviceData
from optuna_energy.host.meters import EnergyMeter
from optuna_energy.measuring.costs import measure_workload_costs
from optuna_energy.measuring.measure import InferenceMeasurement, Workload, data_workload
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
    workload: Workload
    """The model on the evaluation set, as it was measured (and is measured again)."""
    inference: InferenceMeasurement
    """The protocol's windows the fields come from."""

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
    precision = config.training.precision
    workload = data_workload(model, data, batch_size=config.measure.batch_size, costs=profile,
                             autocast=precision_context(data.device, precision),
                             activation_bytes=2 if precision == "bf16" else 4)
    return _measured(workload, None, config=config, meter=meter, idle_watts=idle_watts,
                     windows=config.measure.windows)


def measure_again(architecture: ArchitectureCosts, *, config: StudyConfig, meter: EnergyMeter,
                  idle_watts: float) -> ArchitectureCosts:
    """Measure the same model in ``[measure] remeasure_windows`` more windows and pool them with
    the first ones (``measuring.costs.measure_workload_costs``): every cost and spread over all
    the windows, ``remeasured_windows`` recorded, ``measure_seconds`` the time of both runs.

    Raises:
        TrialFailure: Memory ran out while measuring.
    """
    windows = config.measure.remeasure_windows
    again = _measured(architecture.workload, architecture.inference, config=config, meter=meter,
                      idle_watts=idle_watts, windows=windows)
    again.fields["measure_seconds"] += architecture.fields["measure_seconds"]
    again.fields["remeasured_windows"] = windows
    return again


def _measured(workload: Workload, earlier: InferenceMeasurement | None, *, config: StudyConfig,
              meter: EnergyMeter, idle_watts: float, windows: int) -> ArchitectureCosts:
    measure = config.measure
    start = time.perf_counter()
    with trial_failures():
        inference, fields = measure_workload_costs(
            workload, earlier, meter=meter, idle_watts=idle_watts, energy=measure.energy,
            warmup_batches=measure.warmup_batches, windows=windows,
            min_window_seconds=measure.min_window_seconds, clock=measure.clock)
    fields["measure_seconds"] = time.perf_counter() - start
    return ArchitectureCosts(fields=fields, violations=limit_violations(
        fields, dataclasses.asdict(config.constraints)), workload=workload, inference=inference)
