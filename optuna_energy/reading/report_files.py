"""The report as files: Table I (Markdown, CSV), ``report.md`` and the figures in one folder."""

from __future__ import annotations

import os
from pathlib import Path

import optuna

from optuna_energy.host.files import check_target, write_text
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
from optuna_energy.store.storage import storage_files

COST_FIGURE = "fig1_costs_vs_accuracy.png"
TOPOLOGY_FIGURE = "fig2_topologies.png"
HYPERVOLUME_FIGURE = "hypervolume.png"
REPORT_FILES = ("report.md", "table.md", "table.csv", COST_FIGURE, TOPOLOGY_FIGURE, HYPERVOLUME_FIGURE)
"""Every name the report may write in its folder."""


def write_report(study: optuna.Study | StudyTrials, out_dir: str | Path, *,
                 weights: TradeOffWeights = TradeOffWeights()) -> list[Path]:
    """Write ``table.md``, ``table.csv``, ``report.md`` and the figures into ``out_dir`` (Fig. 2,
    the topologies, only when a highlighted model comes from the built-in space).

    Each file is replaced whole or not at all (``host.files``): an interrupted or failed report
    leaves the files of the previous one as they were.

    Returns:
        The paths written, report first.

    Raises:
        AnalysisError: ``out_dir`` is a file, or cannot be created or written into.
        OutputError: A file of the report is the study's storage under another name (checked
            before anything is written), or cannot be written (a full disk).
    """
    stored = study.study if isinstance(study, StudyTrials) else study
    out = prepare_out_dir(out_dir, study=stored)
    protect = storage_files(stored)
    report = build_report(study, weights=weights)
    figures = [plots.save(plots.cost_figure(report.trials.study, report), out / COST_FIGURE, protect=protect)]
    # Fig. 2 draws specs of the built-in space; models of your own (record_measurement) have none.
    if any(TrialRecord.of(row.trial).architecture is not None for row in report.rows):
        figures.append(plots.save(plots.topology_figure(report), out / TOPOLOGY_FIGURE, protect=protect))
    figures.append(plots.save(plots.hypervolume_figure(report.trials), out / HYPERVOLUME_FIGURE, protect=protect))
    write_text(out / "table.md", table_markdown(report) + "\n", protect=protect)
    write_text(out / "table.csv", table_csv(report), protect=protect)
    write_text(out / "report.md", report_markdown(report, figures=[path.name for path in figures]),
               protect=protect)
    return [out / "report.md", out / "table.md", out / "table.csv", *figures]


def prepare_out_dir(out_dir: str | Path, *, study: optuna.Study) -> Path:
    """The report folder, created if needed and checked writable, before anything is computed;
    none of the names the report writes there may be the study's storage under another name.

    Raises:
        AnalysisError: A file is in the way, or the folder cannot be created or written into.
        OutputError: A report file's name there is the study's storage file (a link, ``..``).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise AnalysisError(f"--out {out} is a file; the report is a folder (report.md, table.md, "
                            "table.csv and figures): give a folder's path")
    protect = storage_files(study)
    for name in REPORT_FILES:  # before mkdir: a refused report creates no folder
        check_target(out / name, protect=protect)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AnalysisError(f"cannot create the report folder {out}: {error.strerror or error}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise AnalysisError(f"cannot write into the report folder {out}: permission denied")
    return out
