"""The objective registry: every metric a trial measures, in one place.

One entry per metric says what the objective optimises (name, direction), where the trial record
keeps it (``field``), how people read it (label, unit, format), and which ``[constraints]`` key
limits it. The objective, the constraints, the analysis, the report, the figures and the CLI
all iterate over :data:`METRICS`; none of them names a metric on its own.

Adding a metric is one entry here plus, for a quantity the trial pipeline does not already
measure, one measurement function (``measure``), which the objective calls on the trained model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna_energy.measuring.measure import ModelUnderTest


def _si(unit: str, digits: int = 3) -> Callable[[float], str]:
    """Engineering notation (``12.3 µJ``, ``4.56 ms``): the prefix people read at a glance."""
    prefixes = ((1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "G"))

    def render(value: float) -> str:
        if math.isnan(value):
            return "n/a"
        if value == 0:
            return f"0 {unit}"
        scale, prefix = prefixes[0]
        for candidate, name in prefixes:
            if abs(value) >= candidate:
                scale, prefix = candidate, name
        return f"{value / scale:.{digits}g} {prefix}{unit}"

    return render


def _count(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{int(round(value)):,}"


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.2f} %"


@dataclasses.dataclass(frozen=True)
class Metric:
    """One objective a study can optimise and every trial records."""

    name: str
    """The objective's name in configs, ``--objectives`` and ``study.metric_names``."""
    direction: str
    """``maximize`` or ``minimize``, as Optuna takes it."""
    field: str
    """The trial record's field (and user attribute) holding the value, in SI units."""
    header: str
    """Short column header; the formatted values carry their unit."""
    label: str
    """Axis label: what it is, with the unit the axis shows."""
    format: Callable[[float], str]
    """The value for people: integers as integers, engineering prefixes where they help."""
    limit: str | None = None
    """The ``[constraints]`` key that caps it, if it can be capped."""
    measure: Callable[[ModelUnderTest], float] | None = None
    """For metrics the trial pipeline does not measure itself: measures the trained model."""

    @property
    def is_cost(self) -> bool:
        return self.direction == "minimize"

    def loss(self, value: Any) -> Any:
        """The metric as a loss to minimise (``1 - accuracy`` for a maximised fraction)."""
        return value if self.is_cost else 1.0 - value


def _peak_inference_memory(model: ModelUnderTest) -> float:
    from optuna_energy.measuring.measure import (
        peak_inference_memory,  # torch only when a trial measures
    )

    return peak_inference_memory(model)


METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("accuracy", "maximize", "accuracy", "accuracy", "accuracy (%)", _percent),
    Metric("inference_time", "minimize", "inference_time_s", "inference time",
           "inference time (s)", _si("s"), limit="max_inference_time"),
    Metric("params", "minimize", "params", "parameters", "parameters", _count, limit="max_params"),
    Metric("energy", "minimize", "energy_per_inference_j", "energy/inference",
           "energy per inference (J)", _si("J"), limit="max_energy"),
    Metric("memory", "minimize", "memory_bytes", "peak memory", "peak inference memory (B)",
           _si("B"), limit="max_memory", measure=lambda model: _peak_inference_memory(model)),
)}
"""Every metric, in the paper's order (accuracy first, then the costs), then the later ones."""

ACCURACY = "accuracy"
"""The one maximised metric, against which every cost is traded off."""
COSTS = tuple(name for name, metric in METRICS.items() if metric.is_cost)
DEFAULT_OBJECTIVES = ("accuracy", "inference_time", "params", "energy")
"""The paper's four objectives, optimised unless a study names others."""


def metric(name: str) -> Metric:
    """The registry entry of ``name``.

    Raises:
        ValueError: Unknown name; the message lists the allowed ones.
    """
    if name not in METRICS:
        raise ValueError(f"unknown objective {name!r}; allowed: {', '.join(METRICS)}")
    return METRICS[name]
