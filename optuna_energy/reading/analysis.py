"""Reading a study: Pareto fronts, the paper's highlighted models, trade-off, payback, hypervolume.

Pure computation on finished trials, no plotting and no files. Metric values come from a
trial's objective values where the metric was optimised, and otherwise from the user attribute
the objective records for every trial, so that a study optimising only accuracy and parameters
still has energy and inference time to show.

The best trade-off (after the paper) is the trial with the lowest weighted Euclidean distance to
the unattainable ideal of 100 % accuracy and zero cost. Both axes are losses normalised over
the study: the accuracy shortfall ``1 - accuracy`` and the cost, each divided by its largest
value among the study's usable trials, so the ideal is the origin and the worst trial is 1 on
each axis. The default weights are equal (1 and 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_energy.measuring.measure import CLOCK_UNITS
from optuna_energy.metrics import ACCURACY, METRICS, cost_names, metric
from optuna_energy.model.arch import summarize
from optuna_energy.reading.study_trials import StudyTrials, read_study
from optuna_energy.samplers import REFERENCE, hypervolume, noisy_pareto_mask
from optuna_energy.samplers import (
    normalised_losses as normalised_losses_for_hypervolume,
)
from optuna_energy.store.record import TrialRecord


class AnalysisError(ValueError):
    """A study cannot be analysed (no metric names, no usable trials); the message says why."""


@dataclasses.dataclass(frozen=True)
class TradeOffWeights:
    """Weights of the two axes in the best trade-off's distance; equal by default."""

    accuracy: float = 1.0
    cost: float = 1.0

    def __post_init__(self) -> None:
        if not (self.accuracy >= 0 and self.cost >= 0 and self.accuracy + self.cost > 0):
            raise AnalysisError(
                f"trade-off weights must be >= 0 and not both 0, got accuracy={self.accuracy}, "
                f"cost={self.cost}")


@dataclasses.dataclass(frozen=True)
class Highlight:
    """The paper's three highlighted models for one cost metric."""

    cost: str
    lowest_cost: FrozenTrial
    most_accurate: FrozenTrial
    best_trade_off: FrozenTrial


@dataclasses.dataclass(frozen=True)
class Payback:
    """When the search's training energy is repaid by deploying the best trade-off model."""

    search_energy_j: float
    """Training energy of every trial that recorded it."""
    most_accurate: FrozenTrial
    best_trade_off: FrozenTrial
    saved_per_inference_j: float
    """Energy per inference of the most accurate model minus that of the best trade-off."""
    energy_sources: tuple[str, ...]

    @property
    def inferences(self) -> float | None:
        """Inferences after which the search has paid for itself; ``None`` if nothing is saved."""
        if self.saved_per_inference_j <= 0:
            return None
        return self.search_energy_j / self.saved_per_inference_j


def metric_names(source: optuna.Study | StudyTrials) -> list[str]:
    """The study's objective names, as optuna-energy stores them.

    Raises:
        AnalysisError: The study has no metric names (it was not made by optuna-energy).
    """
    study = source.study if isinstance(source, StudyTrials) else source
    names = study.metric_names
    if not names:
        raise AnalysisError(
            f"study {study.study_name!r} has no metric names; analysis needs objectives named "
            f"from: {', '.join(METRICS)}")
    return list(names)


def usable_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Completed, feasible trials by number: the ones a user could deploy."""
    read = StudyTrials(study)
    return [read.full(trial) for trial in read.usable]


def require_usable(read: StudyTrials) -> list[FrozenTrial]:
    """The read's usable trials (light), or an error saying the study has none yet."""
    if not read.usable:
        raise AnalysisError(
            f"study {read.study.study_name!r} has no completed, feasible trials yet "
            f"({len(read.trials)} trials in all)")
    return read.usable


def metric_values(trials: Sequence[FrozenTrial], name: str, names: Sequence[str]) -> np.ndarray:
    """One metric for each trial: its objective value, else its trial record's, else NaN."""
    try:
        metric(name)
    except ValueError as error:
        raise AnalysisError(str(error)) from None
    index = names.index(name) if name in names else None
    values = [trial.values[index] if index is not None else TrialRecord.of(trial).value(name)
              for trial in trials]
    return np.asarray(values, dtype=float)


def metric_spreads(trials: Sequence[FrozenTrial], name: str) -> np.ndarray:
    """Each trial's relative spread of one metric (``TrialRecord.value_with_spread``): 0 for an
    exact metric, NaN (counted as exact) where the trial recorded none."""
    return np.asarray([TrialRecord.of(trial).value_with_spread(name)[1] for trial in trials], dtype=float)


def losses(values: np.ndarray, name: str) -> np.ndarray:
    """A metric as a loss to minimise: the accuracy shortfall ``1 - accuracy``, or the cost."""
    return metric(name).loss(values)


def normalised_losses(matrix: np.ndarray) -> np.ndarray:
    """Losses (one column per metric) divided by each column's largest value: ideal 0, worst 1."""
    largest = np.nanmax(matrix, axis=0)
    return matrix / np.where(largest > 0, largest, 1.0)


def pareto_mask(matrix: np.ndarray, spreads: np.ndarray | None = None) -> np.ndarray:
    """Rows of a loss matrix that no other row dominates beyond the noise (ties kept): with
    ``spreads`` (each value's relative spread), values within the larger spread of two rows count
    as equal (``optuna_energy.samplers.noisy_pareto_mask``); without, Pareto dominance."""
    matrix = np.asarray(matrix, dtype=float)
    return noisy_pareto_mask(matrix, np.zeros_like(matrix) if spreads is None else spreads)


def _complete_rows(trials: Sequence[FrozenTrial],
                   matrix: np.ndarray) -> tuple[list[FrozenTrial], np.ndarray]:
    """Trials (and their rows) that have every metric; a missing attribute leaves a trial out."""
    present = ~np.isnan(matrix).any(axis=1)
    return [trial for trial, keep in zip(trials, present) if keep], matrix[present]


def _signed(values: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Values as losses by sign alone (maximised ones negated), so a value's relative spread
    stays relative to its loss; dominance is the same as on ``losses``."""
    maximize = np.array([METRICS[name].direction == "maximize" for name in names], dtype=bool)
    return np.where(maximize, -values, values)


def _front_mask(trials: Sequence[FrozenTrial], values: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The noise-aware front of ``trials``, whose ``values`` are the metrics ``names`` in order."""
    spreads = (np.column_stack([metric_spreads(trials, name) for name in names]) if names
               else np.zeros_like(values))
    return pareto_mask(_signed(values, names), spreads)


def pareto_front(study: optuna.Study | StudyTrials, metrics: Sequence[str] | None = None) -> list[FrozenTrial]:
    """Completed, feasible trials on the Pareto front of ``metrics``, by number.

    Args:
        study: A study made by optuna-energy (or its read, ``StudyTrials``).
        metrics: Two or more of ``accuracy``, ``inference_time``, ``params``, ``energy``;
            the study's own objectives when ``None``. A pair such as ``("accuracy", "energy")``
            gives the front a Fig. 1 panel draws.

    Example:
        >>> front = pareto_front(study, ["accuracy", "energy"])
    """
    read = read_study(study)
    return [read.full(trial) for trial in front_of(read, metrics)]


def front_of(read: StudyTrials, metrics: Sequence[str] | None = None) -> list[FrozenTrial]:
    """``pareto_front`` as the read's light trials: their values and analysed record fields."""
    names = metric_names(read)
    metrics = list(metrics or names)
    columns = [metric_values(read.usable, name, names) for name in metrics]
    trials, matrix = _complete_rows(read.usable, np.column_stack(columns) if columns
                                    else np.empty((len(read.usable), 0)))
    return [trial for trial, keep in zip(trials, _front_mask(trials, matrix, metrics)) if keep]


def pareto_trials(study: optuna.Study | StudyTrials) -> list[FrozenTrial]:
    """Completed, feasible trials that no other trial beats on every objective, by number
    (``study.best_trials``, without building every trial's parameters)."""
    read = read_study(study)
    return [read.full(trial) for trial in best_of(read)]


def best_of(read: StudyTrials, *, feasible_only: bool = True) -> list[FrozenTrial]:
    """Light completed trials no other dominates beyond the noise on the objective values, by
    number; with ``feasible_only=False`` infeasible ones compete too (optuna-dashboard's "Best
    Trial")."""
    complete = read.usable if feasible_only else read.in_states(TrialState.COMPLETE)
    if not complete:
        return []
    values = np.array([trial.values for trial in complete], dtype=float)
    names = read.study.metric_names
    if names and all(name in METRICS for name in names):
        front = _front_mask(complete, values, names)
    else:  # not a study of this package: Optuna's best trials
        signs = np.array([-1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
                          for direction in read.study.directions])
        front = pareto_mask(signs * values)
    return [trial for trial, keep in zip(complete, front) if keep]


def trade_off_distances(accuracy: np.ndarray, cost: np.ndarray, *,
                        weights: TradeOffWeights = TradeOffWeights()) -> np.ndarray:
    """Weighted Euclidean distance of each point to the ideal (accuracy 1, cost 0).

    Both axes are normalised over the points given (see the module docstring).
    """
    normal = normalised_losses(np.column_stack([losses(accuracy, ACCURACY), cost]))
    return np.sqrt(weights.accuracy * normal[:, 0] ** 2 + weights.cost * normal[:, 1] ** 2)


def highlight(trials: Sequence[FrozenTrial], cost: str, names: Sequence[str], *,
              weights: TradeOffWeights = TradeOffWeights()) -> Highlight:
    """The lowest-cost, the most accurate and the best trade-off trial for one cost metric.

    Ties go to the lower trial number; trials missing either metric are left out.
    """
    matrix = np.column_stack([metric_values(trials, ACCURACY, names), metric_values(trials, cost, names)])
    trials, matrix = _complete_rows(trials, matrix)
    if not trials:
        raise AnalysisError(f"no usable trial has both accuracy and {cost} recorded")
    accuracy, costs = matrix[:, 0], matrix[:, 1]
    # lexsort: the last key is primary, so ties fall to the other metric, then to the trial number.
    order = np.arange(len(trials))
    lowest = np.lexsort((order, -accuracy, costs))[0]
    best = np.lexsort((order, costs, -accuracy))[0]
    trade_off = np.lexsort((order, trade_off_distances(accuracy, costs, weights=weights)))[0]
    return Highlight(cost=cost, lowest_cost=trials[lowest], most_accurate=trials[best],
                     best_trade_off=trials[trade_off])


def highlights(study: optuna.Study | StudyTrials, *,
               weights: TradeOffWeights = TradeOffWeights()) -> list[Highlight]:
    """``highlight`` for every cost the study optimises, in the paper's order."""
    read = read_study(study)
    names = metric_names(read)
    trials = require_usable(read)
    return [_full_highlight(read, highlight(trials, cost, names, weights=weights))
            for cost in cost_names() if cost in names]


def _full_highlight(read: StudyTrials, light: Highlight) -> Highlight:
    """A highlight of the read's light trials with each trial read in full."""
    full = {trial.number: read.full(trial)
            for trial in (light.lowest_cost, light.most_accurate, light.best_trade_off)}
    return Highlight(cost=light.cost, lowest_cost=full[light.lowest_cost.number],
                     most_accurate=full[light.most_accurate.number],
                     best_trade_off=full[light.best_trade_off.number])


def model_labels(selected: Sequence[Highlight]) -> dict[int, str]:
    """Letters for the distinct highlighted trials, in order of appearance (as in the paper)."""
    labels: dict[int, str] = {}
    for item in selected:
        for trial in (item.best_trade_off, item.most_accurate, item.lowest_cost):
            if trial.number not in labels:
                labels[trial.number] = _letter(len(labels))
    return labels


def _letter(index: int) -> str:
    """A, B, ..., Z, AA, AB, ...: enough labels for any number of models."""
    text = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        text = chr(ord("A") + rest) + text
    return text


def roles(selected: Sequence[Highlight]) -> dict[int, str]:
    """For each highlighted trial, what it is highlighted as, e.g. ``best trade-off: params, energy``."""
    found: dict[int, dict[str, list[str]]] = {}
    for item in selected:
        for role, trial in (("best trade-off", item.best_trade_off),
                            ("most accurate", item.most_accurate),
                            ("lowest", item.lowest_cost)):
            found.setdefault(trial.number, {}).setdefault(role, []).append(item.cost)
    return {number: "; ".join(f"{role}: {', '.join(costs)}" for role, costs in by_role.items())
            for number, by_role in found.items()}


def payback(study: optuna.Study | StudyTrials, *,
            weights: TradeOffWeights = TradeOffWeights()) -> Payback:
    """The search's training energy against the energy the best trade-off model saves.

    The trade-off is taken on accuracy against energy per inference, measured for every trial
    whether or not energy was an objective.
    """
    read = read_study(study)
    names = metric_names(read)
    chosen = _full_highlight(read, highlight(require_usable(read), "energy", names, weights=weights))
    trained = [record for record in map(read.record, read.trials) if record.train_energy_j is not None]
    spent = [record.train_energy_j or 0.0 for record in trained]
    energy = {trial.number: value for trial, value in zip(
        (chosen.most_accurate, chosen.best_trade_off),
        metric_values([chosen.most_accurate, chosen.best_trade_off], "energy", names))}
    sources = sorted({record.energy_source or "unknown" for record in trained})
    return Payback(
        search_energy_j=float(sum(spent)), most_accurate=chosen.most_accurate,
        best_trade_off=chosen.best_trade_off,
        saved_per_inference_j=float(energy[chosen.most_accurate.number] - energy[chosen.best_trade_off.number]),
        energy_sources=tuple(sources))


def hypervolume_history(study: optuna.Study | StudyTrials) -> list[tuple[int, float]]:
    """The hypervolume of the front after each usable trial, as ``(trial number, volume)``.

    The objectives are normalised over the study's usable trials exactly as the evolution
    sampler normalises them (``optuna_energy.samplers.normalised_losses``: error, log10 of the
    costs, min-max to [0, 1]) and the reference point is the sampler's too
    (``samplers.REFERENCE`` on every axis), so the volume lies in ``[0, REFERENCE ** k]`` and
    grows as the front improves; it is comparable between runs only through the same study.
    """
    read = read_study(study)
    names = metric_names(read)
    usable = require_usable(read)
    trials, matrix = _complete_rows(usable, np.column_stack(
        [metric_values(usable, name, names) for name in names]))
    maximize = np.array([METRICS[name].direction == "maximize" for name in names])
    normal = normalised_losses_for_hypervolume(matrix, maximize=maximize)
    reference = np.full(normal.shape[1], REFERENCE)
    history: list[tuple[int, float]] = []
    volume = 0.0
    front = np.empty((0, normal.shape[1]))
    for point, trial in zip(normal, trials):
        if not np.any(np.all(front <= point, axis=1)):
            # The new point adds its box less the part the front already covers, which is the
            # volume of the front clipped to that box: far cheaper than recomputing the union.
            clipped = np.maximum(front, point)
            covered = hypervolume(clipped, reference) if len(clipped) else 0.0
            volume += float(np.prod(reference - point)) - covered
            front = np.vstack([front[~np.all(point <= front, axis=1)], point])
        history.append((trial.number, volume))
    return history


TABLE_WIDTH = 100
"""Columns a terminal table fits in: architectures are shortened to fit (``summarize``'s
``max_layers``); the full one is the trial's ``architecture_summary`` and the report's."""


def clock_units(trials: Sequence[optuna.trial.FrozenTrial]) -> dict[str, str]:
    """Metric name -> what the trials' values of it count, for each time (``Metric.clock_field``)
    that some trial measured on another clock than the wall clock (a trial that names none was
    measured on the wall clock): ``CPU s, 1 thread``, or both units where the trials mix them."""
    units = {}
    for name, entry in METRICS.items():
        if entry.clock_field is None:
            continue
        clocks = {TrialRecord.of(trial).get(entry.clock_field) or "wall" for trial in trials}
        if clocks - {"wall"}:
            units[name] = " or ".join(unit for clock, unit in CLOCK_UNITS.items() if clock in clocks)
    return units


def format_table(study: optuna.Study, trials: list[FrozenTrial], *, width: int | None = TABLE_WIDTH) -> str:
    """A plain-text table of trials with their objective values and topology.

    With ``width``, each architecture is shortened to as many leading layers as fit the line
    (``conv3x2/35 > dropout0.07 > ... (+9)``); ``None`` shows every layer.
    """
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    units = clock_units(trials)
    headers = ["trial", *(METRICS[name].header if name in METRICS else name for name in names),
               "architecture"]
    rows = []
    for trial in trials:
        values = [METRICS[name].format(value) if name in METRICS else f"{value:.4g}"
                  for name, value in zip(names, trial.values)]
        rows.append([str(trial.number), *values])
    fixed = sum(max(len(row[i]) for row in [headers, *rows]) + 2 for i in range(len(headers) - 1))
    room = None if width is None else max(width - fixed, len("architecture"))
    for row, trial in zip(rows, trials):
        stored = TrialRecord.of(trial)
        text = stored.architecture_summary or ""
        if room is not None and len(text) > room and stored.architecture:
            text = _fitting_summary(stored.architecture, room)
        row.append(text)
    return "\n".join([render_text(headers, rows, free_last=True), *clock_notes(units, names)])


def clock_notes(units: dict[str, str], names: Sequence[str]) -> list[str]:
    """A line under a terminal table for each of ``names`` whose values :func:`clock_units`
    counts in other units than seconds (the header stays short enough for 100 columns)."""
    return [f"{METRICS[name].header}: {unit}, per pass over the evaluation set ([measure] clock)"
            for name, unit in units.items() if name in names]


def _fitting_summary(spec: list, room: int) -> str:
    """The architecture's summary with as many leading layers as fit in ``room`` characters."""
    for layers in range(len(spec) - 1, 0, -1):
        text = summarize(spec, max_layers=layers)
        if len(text) <= room:
            return text
    text = summarize(spec, max_layers=1)
    return text if len(text) <= room else text[:room - 3] + "..."


def render_text(headers: Sequence[str], rows: Sequence[Sequence[str]], *, free_last: bool = False) -> str:
    """Right-aligned columns under a rule; with ``free_last`` the last column is not padded."""
    fixed = len(headers) - 1 if free_last else len(headers)
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(fixed)]
    lines = []
    for row in [headers, *rows]:
        cells = [cell.rjust(width) for cell, width in zip(row, widths)]
        lines.append("  ".join([*cells, *row[fixed:]]))
    rule = ["-" * width for width in widths] + (["-" * 12] if free_last else [])
    lines.insert(1, "  ".join(rule))
    return "\n".join(lines)
