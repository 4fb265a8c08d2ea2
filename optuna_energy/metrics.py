"""The objective registry: every metric a trial measures, in one place.

One entry per metric says what the objective optimises (name, direction), where the trial record
keeps it (``field``), how people read it (label, unit, format), and which ``[constraints]`` key
limits it. The objective, the constraints, the analysis, the report, the figures and the CLI
all iterate over :data:`METRICS` when they run (never a copy made at import); none of them names
a metric on its own.

Adding a metric is one :class:`Metric` with its ``measure`` function, registered with
:func:`register` (at run time, or by a plug-in through the entry point group
``optuna_energy.metrics``): ``optuna_energy.measuring.costs.measure_costs`` then measures it in
the built-in objective and in ``EnergyMonitor.measure_inference`` alike, the trial record stores
it under its ``field``, and the report shows it. ``optuna_energy.testing.metric_suite`` checks an
entry.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna_energy.measuring.costs import ModelUnderTest


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
    """The ``[constraints]`` key that bounds it, if it can be bounded: a cost's ceiling
    (``max_params``), checked on the untrained model, or accuracy's floor (``min_accuracy``),
    checked after full training."""
    measure: Callable[[ModelUnderTest], float] | None = None
    """Measures the model (a cost: every minimised metric has one); ``None`` for accuracy, which
    training measures. It reads what the inference protocol measured (``under_test.inference``)
    or runs the model itself (``under_test.forward()``)."""
    spread: Callable[[ModelUnderTest], float | None] | None = None
    """How far the protocol's repeated windows disagree on the value, relative to it
    (``optuna_energy.measuring.statistic.relative_spread``), stored as :attr:`spread_field`;
    ``None`` for a value that is exact (a count) or measured once."""
    clock_field: str | None = None
    """For a time, the record field naming the clock that measured it (``inference_clock``:
    ``wall`` or ``cpu``, ``optuna_energy.measuring.measure.CLOCK_UNITS``), so a report says what
    the values count; ``None`` for anything else."""

    @property
    def spread_field(self) -> str | None:
        """The record field of the value's spread (``<name>_spread``), if it has one."""
        return f"{self.name}_spread" if self.spread is not None else None

    @property
    def is_cost(self) -> bool:
        return self.direction == "minimize"

    def violation(self, value: float, limit: float) -> float:
        """How far ``value`` lies outside ``limit`` (Optuna's constraint value: > 0 violated):
        above a cost's ceiling, below accuracy's floor."""
        return float(value - limit if self.is_cost else limit - value)

    def loss(self, value: Any) -> Any:
        """The metric as a loss to minimise (``1 - accuracy`` for a maximised fraction)."""
        return value if self.is_cost else 1.0 - value


METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("accuracy", "maximize", "accuracy", "accuracy", "accuracy (%)", _percent, limit="min_accuracy"),
    Metric("inference_time", "minimize", "inference_time_s", "inference time",
           "inference time (s)", _si("s"), limit="max_inference_time",
           measure=lambda under_test: under_test.inference.seconds_per_pass,
           spread=lambda under_test: under_test.inference.seconds_per_pass_spread,
           clock_field="inference_clock"),
    Metric("params", "minimize", "params", "parameters", "parameters", _count, limit="max_params",
           measure=lambda under_test: under_test.workload.costs.params),
    Metric("energy", "minimize", "energy_per_inference_j", "energy/inference",
           "energy per inference (J)", _si("J"), limit="max_energy",
           measure=lambda under_test: under_test.energy_per_inference_j,
           spread=lambda under_test: under_test.inference.energy_spread),
    Metric("memory", "minimize", "memory_bytes", "peak memory", "peak inference memory (B)",
           _si("B"), limit="max_memory", measure=lambda under_test: under_test.peak_memory()),
)}
"""Every metric, in the paper's order (accuracy first, then the costs), then the later ones; read
it when needed, since :func:`register` adds to it."""

ACCURACY = "accuracy"
"""The one maximised metric, against which every cost is traded off."""
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


def cost_names() -> tuple[str, ...]:
    """The registered costs (minimised metrics), in registry order."""
    return tuple(name for name, entry in METRICS.items() if entry.is_cost)


def check_limits(limits: Mapping[str, Any], *, costs_only: bool = False) -> None:
    """Check limits by ``[constraints]`` key (``max_params``..., ``min_accuracy``; ``None``: no
    limit); ``costs_only``: the limits an untrained model can break (no accuracy floor).

    Raises:
        ValueError: A key that is no metric's limit, or a value that is no number, naming it.
    """
    allowed = [entry.limit for entry in METRICS.values() if entry.limit and (entry.is_cost or not costs_only)]
    unknown = sorted(set(limits) - set(allowed))
    if unknown:
        raise ValueError(f"unknown limits {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")
    for key, value in limits.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"limit {key} must be a number or None, got {value!r}")


def limit_violations(fields: Mapping[str, Any], limits: Mapping[str, float | None], *,
                     names: Iterable[str] | None = None) -> dict[str, float]:
    """Each limited metric's violation by name (> 0: outside its limit, see
    :meth:`Metric.violation`), from record ``fields`` against ``limits`` by ``[constraints]`` key
    (see :func:`check_limits`): for ``names``, by default every metric ``fields`` holds (the costs
    before training; accuracy's floor once it is known).

    Raises:
        ValueError: A bad limit, naming it.
    """
    check_limits(limits)
    chosen = [name for name, entry in METRICS.items() if entry.field in fields] if names is None else names
    violations = {}
    for name in chosen:
        entry = METRICS[name]
        limit = limits.get(entry.limit) if entry.limit else None
        if limit is not None:
            violations[name] = entry.violation(fields[entry.field], limit)
    return violations


def register(entry: Metric) -> None:
    """Add a metric to the registry, after the built-in ones.

    It becomes an objective a config, ``--objectives`` and ``create_study`` accept, a
    ``[constraints]`` key when it has a ``limit``, a trial record field measured in the built-in
    objective and by ``EnergyMonitor.measure_inference``, and a column of the report's table.
    ``optuna_energy.testing.metric_suite`` checks it.

    Raises:
        ValueError: The name, field or limit is taken, the direction is not ``maximize`` or
            ``minimize``, or a cost has no ``measure`` (a second maximised metric cannot be
            traded off against accuracy); the message says which.

    Example:
        >>> metrics.register(Metric("flops", "minimize", "flops", "FLOPs", "FLOPs per input",
        ...                         format=lambda value: f"{value:,.0f}", measure=count_flops))
    """
    if not isinstance(entry, Metric):
        raise ValueError(f"a metric must be an optuna_energy.metrics.Metric, got {type(entry).__name__}")
    if entry.direction != "minimize":
        raise ValueError(f"metric {entry.name!r}: direction must be 'minimize' (a cost; {ACCURACY!r} is "
                         f"the one maximised metric), got {entry.direction!r}")
    if entry.measure is None:
        raise ValueError(f"metric {entry.name!r} is a cost and needs measure=, a function of a "
                         "ModelUnderTest returning its value")
    fields = {field: m for m in METRICS.values() for field in (m.field, m.spread_field) if field}
    for taken, what in ((METRICS, "name"), (fields, "field"),
                        ({m.limit: m for m in METRICS.values() if m.limit}, "limit")):
        value = getattr(entry, what)
        if value in taken:
            raise ValueError(f"metric {entry.name!r}: {what} {value!r} is taken by metric "
                             f"{taken[value].name!r}")
    METRICS[entry.name] = entry


def unregister(name: str) -> Metric:
    """Remove a metric added with :func:`register`; the built-in ones stay.

    Raises:
        ValueError: ``name`` is built in or not registered.
    """
    if name in _BUILT_IN or name not in METRICS:
        raise ValueError(f"{name!r} is not a registered plug-in metric; registered: "
                         f"{', '.join(sorted(set(METRICS) - _BUILT_IN)) or 'none'}")
    return METRICS.pop(name)


ENTRY_POINT_GROUP = "optuna_energy.metrics"
"""Entry point group of plug-in metrics: each entry point names a :class:`Metric`, registered when
``optuna_energy.metrics`` is first imported."""

_BUILT_IN = frozenset(METRICS)


def register_entry_points() -> None:
    """Register the metric of every ``optuna_energy.metrics`` entry point of the installed packages.

    Raises:
        ValueError: An entry point's metric cannot be registered, naming the entry point.
    """
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            register(point.load())
        except ValueError as error:
            raise ValueError(f"entry point {point.name!r} ({point.value}): {error}") from None


register_entry_points()
