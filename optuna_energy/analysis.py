"""Reading a finished study: the Pareto front and its table."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial

_COLUMNS = {  # objective -> (header, format)
    "accuracy": ("accuracy %", lambda v: f"{100 * v:.2f}"),
    "inference_time": ("inference s", lambda v: f"{v:.4f}"),
    "params": ("params", lambda v: f"{int(v):,}"),
    "energy": ("energy/inference J", lambda v: f"{v:.3e}"),
}


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Completed, feasible trials that no other trial beats on every objective, by number."""
    return sorted(study.best_trials, key=lambda trial: trial.number)


def format_table(study: optuna.Study, trials: list[FrozenTrial]) -> str:
    """A plain-text table of trials with their objective values and topology."""
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    headers = ["trial", *(_COLUMNS.get(name, (name, None))[0] for name in names), "architecture"]
    rows = []
    for trial in trials:
        values = [_COLUMNS.get(name, (name, lambda v: f"{v:.4g}"))[1](value)
                  for name, value in zip(names, trial.values)]
        rows.append([str(trial.number), *values, trial.user_attrs.get("architecture_summary", "")])
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers) - 1)]
    lines = []
    for row in [headers, *rows]:
        cells = [cell.rjust(width) for cell, width in zip(row, widths)]
        lines.append("  ".join([*cells, row[-1]]))
    lines.insert(1, "  ".join("-" * width for width in widths) + "  " + "-" * 12)
    return "\n".join(lines)
