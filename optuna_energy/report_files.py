"""The report as files: Table I (Markdown, CSV), ``report.md`` and the figures in one folder."""

from __future__ import annotations

from pathlib import Path

import optuna

from optuna_energy import plots
from optuna_energy.analysis import TradeOffWeights
from optuna_energy.record import TrialRecord
from optuna_energy.report import (
    build_report,
    report_markdown,
    table_csv,
    table_markdown,
)


def write_report(study: optuna.Study, out_dir: str | Path, *,
                 weights: TradeOffWeights = TradeOffWeights()) -> list[Path]:
    """Write ``table.md``, ``table.csv``, ``report.md`` and the figures into ``out_dir`` (Fig. 2,
    the topologies, only when a highlighted model comes from the built-in space).

    Returns:
        The paths written, report first.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(study, weights=weights)
    figures = [plots.save(plots.cost_figure(study, report), out / "fig1_costs_vs_accuracy.png")]
    # Fig. 2 draws specs of the built-in space; models of your own (record_measurement) have none.
    if any(TrialRecord.of(row.trial).architecture is not None for row in report.rows):
        figures.append(plots.save(plots.topology_figure(report), out / "fig2_topologies.png"))
    figures.append(plots.save(plots.hypervolume_figure(study), out / "hypervolume.png"))
    (out / "table.md").write_text(table_markdown(report) + "\n")
    (out / "table.csv").write_text(table_csv(report))
    (out / "report.md").write_text(report_markdown(report, figures=[path.name for path in figures]))
    return [out / "report.md", out / "table.md", out / "table.csv", *figures]
