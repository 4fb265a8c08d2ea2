"""Figures after the paper: costs against accuracy (Fig. 1), model topologies (Fig. 2), and
hypervolume over trials. Matplotlib with the Agg backend: no display is needed."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import optuna
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch
from optuna.trial import TrialState

from optuna_energy.host.files import replacing
from optuna_energy.metrics import ACCURACY, METRICS
from optuna_energy.model.arch import describe
from optuna_energy.model.layers import LAYER_KINDS, layer_kind
from optuna_energy.reading.analysis import (
    front_of,
    hypervolume_history,
    metric_names,
    metric_values,
)
from optuna_energy.reading.report import Report, metric_label
from optuna_energy.reading.study_trials import StudyTrials, read_study
from optuna_energy.store.record import TrialRecord

_HEAD = "head"
"""The final classifier every model ends in: no layer kind of its own, drawn in its own colour."""
_HEAD_STYLE = ("#fdae6b", "fc (head): the final fully connected layer, one output per class")
# Sizes nest (star > diamond > square), drawn largest first: a trial in several roles shows all.
_ROLE_STYLE = {"best trade-off": ("#d62728", "*", 300), "most accurate": ("#2ca02c", "D", 90),
               "lowest": ("#1f77b4", "s", 34)}


def save(figure: Figure, path: str | Path, *, protect: Iterable[Path] = ()) -> Path:
    """Write a figure as PNG, whole or not at all and never over ``protect`` (the study's
    storage files, ``host.files``), and free it."""
    path = Path(path)
    try:
        with replacing(path, protect=protect) as draft:
            figure.savefig(draft, dpi=150, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path


def cost_figure(study: optuna.Study, report: Report) -> Figure:
    """Fig. 1: each cost against accuracy, every completed trial a point, the Pareto lower
    bound drawn and the highlighted models labelled with their letters."""
    read = report.trials
    names = metric_names(read)
    completed = read.in_states(TrialState.COMPLETE)
    infeasible = [trial for trial in completed if not read.feasible(trial)]
    not_drawn = len(read.trials) - len(completed)
    usable = read.usable
    panels = report.highlights
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.0), squeeze=False)
    for ax, chosen in zip(axes[0], panels):
        cost = chosen.cost
        points = functools.partial(_accuracy_and_cost, cost=cost, names=names)
        ax.scatter(*points(usable), s=14, color="#7f7f7f", alpha=0.6, label="trial")
        if infeasible:
            ax.scatter(*points(infeasible), s=16, marker="x", color="#bbbbbb", label="infeasible")
        front_x, front_y = points(front_of(read, [ACCURACY, cost]))
        order = np.argsort(front_x, kind="stable")
        ax.step(front_x[order], front_y[order], where="pre", color="black", linewidth=1.2,
                label="Pareto lower bound")
        _log_if_wide(ax, points(usable)[1])
        roles = (("best trade-off", chosen.best_trade_off), ("most accurate", chosen.most_accurate),
                 ("lowest", chosen.lowest_cost))
        for layer, (role, trial) in enumerate(roles):
            colour, marker, size = _ROLE_STYLE[role]
            ax.scatter(*points([trial]), s=size, marker=marker, color=colour, edgecolor="black",
                       linewidth=0.6, zorder=3 + layer,
                       label=f"{role} {cost.replace('_', ' ')}" if role == "lowest" else role)
        ax.autoscale_view()
        for trial in {trial.number: trial for _, trial in roles}.values():  # one letter per model
            _label_inside(ax, report.labels[trial.number], *(float(v[0]) for v in points([trial])))
        ax.set_xlabel(METRICS[ACCURACY].label)
        ax.set_ylabel(metric_label(report, cost))
        ax.set_title(f"{METRICS[cost].header} vs accuracy")
        ax.grid(alpha=0.3)
        # Under the axes: inside, it would hide trials or the front wherever it went.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    drawn = f"{len(usable)} feasible trials (dots)" + (f", {len(infeasible)} infeasible (x)" if infeasible else "")
    skipped = f"; {not_drawn} stopped early or failed, not drawn" if not_drawn else ""
    figure.suptitle(f"Study {study.study_name}, {len(read.trials)} trials: {drawn}{skipped}")
    figure.tight_layout()
    return figure


def _label_inside(ax: Any, text: str, x: float, y: float) -> None:
    """A model's letter beside its point, on the side towards the middle of the axes, so that it
    never sits on (or past) the plot's edge."""
    right, top = ax.transAxes.inverted().transform(ax.transData.transform((x, y)))
    dx, dy = (-8, "right") if right > 0.8 else (8, "left"), (-8, "top") if top > 0.8 else (8, "bottom")
    ax.annotate(text, (x, y), xytext=(dx[0], dy[0]), textcoords="offset points", ha=dx[1], va=dy[1],
                fontsize=11, fontweight="bold", zorder=6)


def _accuracy_and_cost(trials: Sequence[optuna.trial.FrozenTrial], *, cost: str,
                       names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy in percent (x) and one cost (y) for each trial."""
    return 100 * metric_values(trials, ACCURACY, names), metric_values(trials, cost, names)


def _log_if_wide(ax: Any, values: np.ndarray) -> None:
    """Costs spanning orders of magnitude read better on a log axis."""
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) and values.max() / values.min() > 50:
        ax.set_yscale("log")


def _drawn(spec: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The layers Fig. 2 draws: those whose kind has a colour (activations have none, as in the paper)."""
    return [layer for layer in spec if layer_kind(layer).colour is not None]


def _style(kind: str) -> tuple[str, str]:
    """A box's colour and its legend line, from the layer registry (the head has its own)."""
    if kind == _HEAD:
        return _HEAD_STYLE
    entry = LAYER_KINDS[kind]
    return str(entry.colour), entry.notation


def _draw_topology(ax: Any, spec: Sequence[Mapping[str, Any]], title: str) -> None:
    """One model as a column of boxes, input at the top."""
    layers = [(layer["kind"], describe(layer)) for layer in _drawn(spec)]
    layers.append((_HEAD, "fc (head)"))
    for row, (kind, text) in enumerate(layers):
        box = FancyBboxPatch((0.05, -row - 0.8), 0.9, 0.7, boxstyle="round,pad=0.02",
                             facecolor=_style(kind)[0], edgecolor="black", linewidth=0.6)
        ax.add_patch(box)
        ax.text(0.5, -row - 0.45, text, ha="center", va="center", fontsize=8)
        if row:
            ax.annotate("", (0.5, -row - 0.1), (0.5, -row + 0.2),
                        arrowprops={"arrowstyle": "->", "linewidth": 0.6})
    ax.set_xlim(0, 1)
    ax.set_ylim(-max(len(layers), 1) - 0.2, 0.05)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def topology_figure(report: Report) -> Figure:
    """Fig. 2: the layer topology of every highlighted model, side by side."""
    specs = [TrialRecord.of(row.trial).architecture or [] for row in report.rows]
    depth = max(len(_drawn(spec)) for spec in specs) + 1
    figure, axes = plt.subplots(1, len(specs), figsize=(2.0 * len(specs), 0.5 * depth + 1.2), squeeze=False)
    for ax, row, spec in zip(axes[0], report.rows, specs):
        accuracy = 100 * row.metrics[ACCURACY]
        _draw_topology(ax, spec, f"{row.label}: trial {row.trial.number}\n{accuracy:.1f} %")
        ax.set_ylim(-depth - 0.2, 0.05)
    figure.suptitle(f"Highlighted models of {report.study_name} (activations left out)", fontsize=10)
    figure.tight_layout()
    _kind_legend(figure, specs)
    return figure


def _kind_legend(figure: Figure, specs: Sequence[Sequence[Mapping[str, Any]]]) -> None:
    """Under the panels: the colour of each kind drawn, with how to read its text (the registry's
    notation); the paper's kinds always, so that figures of different studies read alike."""
    drawn = {layer["kind"] for spec in specs for layer in _drawn(spec)}
    kinds = [name for name, kind in LAYER_KINDS.items()
             if kind.colour is not None and (kind.default_space or name in drawn)]
    handles = [Patch(facecolor=colour, edgecolor="black", linewidth=0.6, label=label)
               for colour, label in map(_style, [*kinds, _HEAD])]
    figure.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=1, fontsize=7,
                  frameon=False)


def architecture_figure(spec: Sequence[Mapping[str, Any]], title: str) -> Figure:
    """One trial's topology, as uploaded to the dashboard's artifact store."""
    depth = len(_drawn(spec)) + 1
    figure, ax = plt.subplots(figsize=(2.4, 0.5 * depth + 0.9))
    _draw_topology(ax, spec, title)
    return figure


def hypervolume_figure(study: optuna.Study | StudyTrials) -> Figure:
    """Hypervolume of the front after each completed, feasible trial."""
    read = read_study(study)
    history = hypervolume_history(read)
    numbers, volumes = zip(*history)
    figure, ax = plt.subplots(figsize=(6, 3.6))
    ax.step(numbers, volumes, where="post", color="#1f77b4")
    ax.plot(numbers, volumes, ".", color="#1f77b4", markersize=4)
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume (normalised losses, ref. 1.1)")
    ax.set_title(f"Study {read.study.study_name}: hypervolume over {', '.join(metric_names(read))}", fontsize=9)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure
