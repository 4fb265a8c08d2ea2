"""A study's report: the paper's Table I for the highlighted models, as text, Markdown and CSV,
with the payback sentence. ``report_files.write_report`` writes it with the figures."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import textwrap
from collections.abc import Sequence

import optuna

from optuna_energy.carbon import co2e_grams, format_co2e
from optuna_energy.metrics import ACCURACY, METRICS, cost_names
from optuna_energy.reading.analysis import (
    Highlight,
    Payback,
    TradeOffWeights,
    clock_notes,
    clock_units,
    highlights,
    metric_names,
    metric_values,
    model_labels,
    payback,
    render_text,
    roles,
)
from optuna_energy.reading.savings import Savings, savings, savings_text
from optuna_energy.reading.study_trials import StudyTrials, read_study
from optuna_energy.store.record import TrialRecord


def table_metrics() -> tuple[str, ...]:
    """Table I's columns in the paper's order (costs, then accuracy), every registered cost
    included; every trial records them all."""
    return (*cost_names(), ACCURACY)


@dataclasses.dataclass(frozen=True)
class ModelRow:
    label: str
    trial: optuna.trial.FrozenTrial
    roles: str
    metrics: dict[str, float]
    """Table I's metrics (:func:`table_metrics`, in order) in SI units; accuracy as a fraction."""


@dataclasses.dataclass(frozen=True)
class Report:
    """Everything the table, the figures and the dashboard note show."""

    study_name: str
    objectives: list[str]
    n_trials: int
    n_usable: int
    weights: TradeOffWeights
    highlights: list[Highlight]
    labels: dict[int, str]
    rows: list[ModelRow]
    payback: Payback
    savings: Savings
    """What costs first and early stopping saved against training every trial fully."""
    trials: StudyTrials
    """The study's trials as read for the report; the figures draw from the same read."""
    columns: tuple[str, ...]
    """Table I's metric columns: the registered ones when the report was built."""
    carbon_intensity: float | None = None
    """Grams of CO2e per kWh the study's energy is also shown in; ``None``: joules only."""
    units: dict[str, str] = dataclasses.field(default_factory=dict)
    """Metric name -> what its values count where that is not the registry's plain unit: a time
    measured in CPU seconds (``CPU s, 1 thread``, :func:`clock_units`)."""


def metric_header(report: Report, name: str) -> str:
    """A metric's column header, with what its values count where :attr:`Report.units` says."""
    header = METRICS[name].header
    return f"{header} ({report.units[name]})" if name in report.units else header


def metric_label(report: Report, name: str) -> str:
    """A metric's axis label (``Metric.label``), its unit the one :attr:`Report.units` gives."""
    return metric_header(report, name) if name in report.units else METRICS[name].label


def build_report(study: optuna.Study | StudyTrials, *,
                 weights: TradeOffWeights = TradeOffWeights()) -> Report:
    """Analyse a study: highlighted models per cost, their table rows and the energy payback.

    The study's trials are read once (``StudyTrials``); pass a read to reuse it.

    Raises:
        AnalysisError: The study has no metric names or no completed, feasible trial.
    """
    read = read_study(study)
    names = metric_names(read)
    selected = highlights(read, weights=weights)
    labels = model_labels(selected)
    found = roles(selected)
    trials = {item.number: item for h in selected
              for item in (h.best_trade_off, h.most_accurate, h.lowest_cost)}
    rows, columns = [], table_metrics()
    for number, label in labels.items():
        trial = trials[number]
        metrics = {name: float(metric_values([trial], name, names)[0]) for name in columns}
        rows.append(ModelRow(label=label, trial=trial, roles=found[number], metrics=metrics))
    return Report(study_name=read.study.study_name, objectives=names, n_trials=len(read.trials),
                  n_usable=len(read.usable), weights=weights, highlights=selected,
                  labels=labels, rows=rows, payback=payback(read, weights=weights),
                  savings=savings(read), trials=read, columns=columns,
                  carbon_intensity=read.carbon_intensity, units=clock_units(read.usable))


def _headers(report: Report, *, units: bool = True) -> list[str]:
    return ["model", "trial", *(metric_header(report, name) if units else METRICS[name].header
                                for name in report.columns), "highlighted as"]


def _cells(row: ModelRow) -> list[str]:
    return [row.label, str(row.trial.number),
            *(METRICS[name].format(value) for name, value in row.metrics.items()), row.roles]


def table_text(report: Report, *, width: int | None = None) -> str:
    """Table I as aligned plain text, for the terminal; with ``width``, a row longer than that
    continues its last column ("highlighted as") on lines of its own, under that column (or
    indented, when the columns before it leave it too little room)."""
    rows = [_cells(row) for row in report.rows]
    table = render_text(_headers(report, units=width is None), rows, free_last=True).splitlines()
    if width is None:
        return "\n".join(table)
    notes = clock_notes(report.units, report.columns)  # under the table: the header would not fit
    lines = table[:2]
    for line, row in zip(table[2:], rows):
        start = len(line) - len(row[-1])
        room = width - start if width - start >= _MIN_ROLES_WIDTH else width - 2
        wrapped = textwrap.wrap(row[-1], width=room) or [""]
        if room == width - start:
            lines += [line[:start] + wrapped[0], *(" " * start + part for part in wrapped[1:])]
        else:
            lines += [line[:start].rstrip(), *("  " + part for part in wrapped)]
    return "\n".join([*lines, *notes])


_MIN_ROLES_WIDTH = 24
"""Narrowest "highlighted as" column worth continuing under itself ("lowest: inference_time")."""


def table_markdown(report: Report) -> str:
    """Table I as a Markdown table."""
    lines = ["| " + " | ".join(_headers(report)) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * len(report.columns) + ["---"]) + "|"]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in report.rows]
    return "\n".join(lines)


def table_csv(report: Report) -> str:
    """Table I as CSV for machines: full-precision numbers in SI units, accuracy as a fraction."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "trial", *(METRICS[name].field for name in report.columns),
                     "highlighted_as", "architecture"])
    for row in report.rows:
        writer.writerow([row.label, row.trial.number,
                         *(_csv_number(value) for value in row.metrics.values()), row.roles,
                         TrialRecord.of(row.trial).architecture_summary or ""])
    return buffer.getvalue()


def _csv_number(value: float) -> int | float | str:
    """Integers as integers (``18862``, not ``18862.0``); NaN as an empty cell."""
    if math.isnan(value):
        return ""
    return int(value) if float(value).is_integer() else value


def payback_text(report: Report) -> str:
    """One paragraph: what the search cost and after how many inferences it is repaid."""
    p = report.payback
    intensity = report.carbon_intensity
    emitted = "" if intensity is None else (
        f"{format_co2e(co2e_grams(p.search_energy_j, intensity_g_per_kwh=intensity))} at "
        f"{intensity:g} g CO2e/kWh; ")
    head = (f"The search spent {p.search_energy_j:.4g} J training ({emitted}energy source: "
            f"{', '.join(p.energy_sources) or 'none recorded'}). ")
    trade, most = _model_name(report, p.best_trade_off), _model_name(report, p.most_accurate)
    if p.inferences is None:
        if p.best_trade_off.number == p.most_accurate.number:
            which = f"The best energy trade-off is also the most accurate model, {most}"
        else:
            which = (f"The best energy trade-off, {trade}, uses no less energy per inference than "
                     f"the most accurate, {most}")
        return f"{head}{which}: nothing is saved per inference, so there is no payback point."
    return head + (f"Deploying the best energy trade-off, {trade}, instead of the most accurate, "
                   f"{most}, saves {p.saved_per_inference_j:.4g} J per inference: the search has "
                   f"paid for itself after {p.inferences:,.0f} inferences.")


def _model_name(report: Report, trial: optuna.trial.FrozenTrial) -> str:
    label = report.labels.get(trial.number)
    return f"model {label} (trial {trial.number})" if label else f"trial {trial.number}"


def report_markdown(report: Report, *, figures: Sequence[str] = ()) -> str:
    """The whole report as Markdown: counts, weights, Table I, payback, and figure links."""
    w = report.weights
    lines = [f"# Study {report.study_name}", "",
             f"{report.n_usable} completed, feasible trials of {report.n_trials}; objectives: "
             f"{', '.join(report.objectives)}. Best trade-off: lowest weighted Euclidean distance to "
             f"100 % accuracy and zero cost, both normalised over the study (weights: accuracy "
             f"{w.accuracy:g}, cost {w.cost:g}).", "", table_markdown(report), "", payback_text(report),
             "", savings_text(report.savings)]
    lines += ["", *(f"![{name}]({name})" for name in figures)] if figures else []
    return "\n".join(lines) + "\n"
