"""The report as files: Table I (Markdown, CSV), ``report.md`` and the figures in one folder."""

from __future__ import annotations

import os
from pathlib import Path

import optuna

from optuna_energy.reading import plots
from optuna_energy.reading.analysis import AnalysisError, TradeOffWeights
from optuna_energy.reading.report import (
    build_report,
    report_markdown,
    table_csv,
    table_markdown,
)
from optuna_energy.reading.study_trials import StudyTrials
from optuna_energy.store.record import TrialRecord


def write_report(study: optuna.Study | StudyTrials, out_dir: str | Path, *,
                 weights: TradeOffWeights = TradeOffWeights()) -> list[Path]:
    """Write ``table.md``, ``table.csv``, ``report.md`` and the figures into ``out_dir`` (Fig. 2,
    the topologies, only when a highlighted model comes from the built-in space).

    Returns:
        The paths written, report first.

    Raises:
        AnalysisError: ``out_dir`` is a file, or cannot be created or written into.
    """
    out = prepare_out_dir(out_dir)
    report = build_report(study, weights=weights)
    try:
        figures = [plots.save(plots.cost_figure(report.trials.study, report), out / "fig1_costs_vs_accuracy.png")]
        # Fig. 2 draws specs of the built-in space; models of your own (record_measurement) have none.
        if any(TrialRecord.of(row.trial).architecture is not None for row in report.rows):
            figures.append(plots.save(plots.topology_figure(report), out / "fig2_topologies.png"))
        figures.append(plots.save(plots.hypervolume_figure(report.trials), out / "hypervolume.png"))
        (out / "table.md").write_text(table_markdown(report) + "\n")
        (out / "table.csv").write_text(table_csv(report))
        (out / "report.md").write_text(report_markdown(report, figures=[path.name for path in figures]))
    except OSError as error:
        raise AnalysisError(f"cannot write the report into {out}: {error.strerror or error}") from None
    return [out / "report.md", out / "table.md", out / "table.csv", *figures]


def prepare_out_dir(out_dir: str | Path) -> Path:
    """The report folder, created if needed and checked writable, before anything is computed.

    Raises:
        AnalysisError: A file is in the way, or the folder cannot be created or written into.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise AnalysisError(f"--out {out} is a file; the report is a folder (report.md, table.md, "
                            "table.csv and figures): give a folder's path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AnalysisError(f"cannot create the report folder {out}: {error.strerror or error}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise AnalysisError(f"cannot write into the report folder {out}: permission denied")
    return out
