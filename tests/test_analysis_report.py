"""The report on a real (tiny) study: Table I as text, Markdown and CSV, and the PNG figures."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

import optuna_energy
from optuna_energy.cli import main
from optuna_energy.metrics import METRICS
from optuna_energy.reading.report import (
    build_report,
    table_csv,
    table_markdown,
    table_text,
)
from optuna_energy.reading.report_files import write_report
from tests.helpers import tiny_config

FIGURES = ("fig1_costs_vs_accuracy.png", "fig2_topologies.png", "hypervolume.png")


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    optuna_energy.run_study(tiny_config(folder, n_trials=5), show_progress_bar=False)
    return folder


@pytest.fixture(scope="module")
def study(study_dir):
    import optuna

    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{study_dir / 'study.db'}")


def test_table_rows_are_the_highlighted_models(study):
    report = build_report(study)
    assert [item.cost for item in report.highlights] == ["inference_time", "params", "energy"]
    chosen = {t.number for h in report.highlights for t in (h.lowest_cost, h.most_accurate, h.best_trade_off)}
    assert {row.trial.number for row in report.rows} == chosen
    assert [row.label for row in report.rows] == [chr(ord("A") + i) for i in range(len(chosen))]
    for row in report.rows:
        attrs = row.trial.user_attrs
        assert row.metrics == pytest.approx({name: attrs[metric.field] for name, metric in METRICS.items()})


def test_table_formats_agree(study):
    report = build_report(study)
    rows = list(csv.DictReader(io.StringIO(table_csv(report))))
    assert [int(row["trial"]) for row in rows] == [row.trial.number for row in report.rows]
    for parsed, row in zip(rows, report.rows):
        assert float(parsed["accuracy"]) == pytest.approx(row.metrics["accuracy"])
        assert float(parsed["energy_per_inference_j"]) == pytest.approx(row.metrics["energy"])
        assert parsed["params"] == str(int(row.metrics["params"]))  # an integer, not 18862.0
        assert parsed["architecture"] == row.trial.user_attrs["architecture_summary"]
        assert f"| {row.label} | {row.trial.number} |" in table_markdown(report)
    assert len(table_text(report).splitlines()) == len(report.rows) + 2


def test_write_report_makes_readable_figures(study, tmp_path):
    paths = write_report(study, tmp_path / "out")
    assert {path.name for path in paths} == {"report.md", "table.md", "table.csv", *FIGURES}
    for name in FIGURES:
        with Image.open(tmp_path / "out" / name) as image:
            pixels = np.asarray(image.convert("L"))
        assert image.format == "PNG" and min(pixels.shape) > 200
        assert pixels.std() > 10  # drawn on, not a blank canvas
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "paid for itself" in markdown or "no payback point" in markdown
    assert all(f"![{name}]({name})" in markdown for name in FIGURES)


def test_report_command_prints_the_table_and_writes_files(study_dir, tmp_path, capsys):
    storage = f"sqlite:///{study_dir / 'study.db'}"
    assert main(["report", "--storage", storage, "--out", str(tmp_path / "r"), "--cost-weight", "2"]) == 0
    out = capsys.readouterr().out
    assert "Highlighted models of study 'tiny'" in out and "best trade-off" in out
    assert (tmp_path / "r" / "table.csv").exists()


def test_report_command_names_the_stored_studies_when_the_name_is_wrong(study_dir, tmp_path, capsys):
    storage = f"sqlite:///{study_dir / 'study.db'}"
    assert main(["report", "--storage", storage, "--study-name", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no study 'nope'" in err and "stored studies: tiny" in err
