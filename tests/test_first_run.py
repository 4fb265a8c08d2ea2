"""What a new user sees (issue 14): one default study, one answer per question, output that fits."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import optuna
import pytest

import optuna_energy
from optuna_energy.cli import build_parser, main
from optuna_energy.config import load_config
from tests.helpers import tiny_config

REPO = Path(__file__).resolve().parents[1]


def toml_text(config: dict) -> str:
    """A config dict as TOML (its values are strings, numbers, booleans and lists: JSON's syntax)."""
    return "\n".join(f"[{section}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
                     for section, keys in config.items())


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(argv))
    return int(exit_info.value.code or 0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished tiny study run by the CLI: (config path, storage URL)."""
    folder = tmp_path_factory.mktemp("first-run")
    config = tiny_config(folder)
    path = folder / "tiny.toml"
    path.write_text(toml_text(config))
    assert main(["run", str(path)]) == 0
    return path, config["study"]["storage"]


def test_run_without_a_config_is_the_shipped_digits_study():
    shipped = REPO / "studies" / "digits.toml"
    assert load_config(None) == load_config(shipped)
    assert load_config(None).study.name == "digits"
    # One file, in one place: studies/digits.toml is the package's own copy.
    assert shipped.resolve() == Path(optuna_energy.__file__).parent / "digits.toml"
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    assert "studies/digits.toml" in run.format_help()


def test_several_studies_and_no_name_asks_for_one(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'two.db'}"
    for name in ("alpha", "beta"):
        optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"])
    for argv in (["report", "--storage", storage, "--out", str(tmp_path / "report")],
                 ["export", "--storage", storage, "--trial", "0", "--format", "onnx", "-o",
                  str(tmp_path / "m.onnx")]):
        assert _exit_code(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"optuna-energy: error: 2 studies in {storage}: alpha, beta; "
                       "choose one with --study-name"]


def test_rerunning_a_finished_study_says_how_to_extend_it(tiny_run, capsys):
    path, _ = tiny_run
    capsys.readouterr()
    assert main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Study 'tiny' already has its budget: 3 finished trials, n_trials = 3" in out
    assert f"optuna-energy run {path} --n-trials 6" in out
    assert "Pareto front of study 'tiny'" in out


def test_the_python_api_is_quiet_while_its_progress_bar_shows(tiny_run, caplog):
    path, _ = tiny_run

    def optuna_says() -> str:
        said = " ".join(record.getMessage() for record in caplog.records if record.name.startswith("optuna."))
        caplog.clear()
        return said

    optuna.logging.set_verbosity(optuna.logging.INFO)  # Optuna's default
    caplog.set_level(logging.DEBUG)
    optuna_energy.run_study(path)  # resumes the finished study: Optuna would say "Using an existing study"
    assert "Using an existing study" not in optuna_says()
    assert optuna.logging.get_verbosity() == optuna.logging.INFO  # restored after the call
    # Without a progress bar, or with a verbosity the user chose, Optuna's lines are Optuna's to show.
    optuna_energy.run_study(path, show_progress_bar=False)
    assert "Using an existing study" in optuna_says()
    optuna.logging.set_verbosity(optuna.logging.DEBUG)
    try:
        optuna_energy.run_study(path)
        assert "Using an existing study" in optuna_says()
    finally:
        optuna.logging.set_verbosity(optuna.logging.INFO)


def _long_spec(layers: int) -> list[dict]:
    spec: list[dict] = [{"slot": 0, "kind": "conv", "out_channels": 35, "kernel": [3, 2], "stride": 1, "padding": 1}]
    spec += [{"slot": 1 + i, "kind": "dropout", "rate": 0.07} for i in range(layers - 2)]
    return [*spec, {"slot": 16, "kind": "linear", "out_features": 26}]


def test_the_pareto_table_fits_a_100_column_terminal():
    from optuna.trial import create_trial

    from optuna_energy.model.arch import summarize
    from optuna_energy.reading.analysis import format_table

    study = optuna.create_study(directions=["maximize", "minimize", "minimize", "minimize"])
    study.set_metric_names(["accuracy", "inference_time", "params", "energy"])
    for layers in (3, 30):
        spec = _long_spec(layers)
        study.add_trial(create_trial(values=[0.958333333, 0.00101, 18862, 7.959e-06],
                                     user_attrs={"architecture": spec, "architecture_summary": summarize(spec)}))
    table = format_table(study, study.trials)
    assert max(map(len, table.splitlines())) <= 100
    short, long = table.splitlines()[2:]
    assert short.endswith(summarize(_long_spec(3)))  # whole where it fits
    assert "conv3x2/35 > dropout0.07" in long and long.endswith("(+" + long.rsplit("(+", 1)[1])
    assert summarize(_long_spec(30)) in format_table(study, study.trials, width=None)


def test_fig1_counts_what_it_draws_shows_every_role_and_keeps_labels_inside():
    from optuna_energy.reading.plots import cost_figure
    from optuna_energy.reading.report import build_report
    from tests.test_analysis import make_study

    # Trial 0 is the most accurate and the best trade-off; trial 1 the lowest cost; 2 infeasible; 3 failed.
    study = make_study(points=[(0.95, 100, 2e-3, 1.0), (0.20, 50, 1e-3, 1.0)])
    report = build_report(study)
    chosen = report.highlights[0]
    assert chosen.most_accurate.number == chosen.best_trade_off.number == 0
    figure = cost_figure(study, report)
    assert figure.get_suptitle() == ("Study " + study.study_name + ", 4 trials: 2 feasible trials (dots), "
                                     "1 infeasible (x); 1 stopped early or failed, not drawn")
    ax = figure.axes[0]
    markers = {c.get_label(): c for c in ax.collections}
    star, diamond = markers["best trade-off"], markers["most accurate"]
    # The smaller diamond is drawn over the star: both show where they are the same trial.
    assert diamond.get_zorder() > star.get_zorder() and diamond.get_sizes()[0] < star.get_sizes()[0]
    figure.canvas.draw()
    frame = ax.get_window_extent()
    labels = [text for text in ax.texts if text.get_text() in report.labels.values()]
    assert sorted(text.get_text() for text in labels) == sorted(set(report.labels.values()))  # once each
    for text in labels:
        box = text.get_window_extent()
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


def test_fig2_has_a_colour_legend_that_explains_the_notation():
    from optuna_energy.model.layers import LAYER_KINDS
    from optuna_energy.reading.plots import topology_figure
    from optuna_energy.reading.report import build_report
    from tests.test_analysis import make_study

    figure = topology_figure(build_report(make_study()))
    texts = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert LAYER_KINDS["conv"].notation in texts
    assert any(text.startswith("conv3x2/35") and "output channels" in text for text in texts)
    assert {"inception", "pool", "dropout", "linear"} <= {kind for kind in LAYER_KINDS
                                                         if LAYER_KINDS[kind].notation in texts}


def test_the_readme_python_example_shows_the_highlighted_models(tiny_run, tmp_path, monkeypatch, capsys):
    readme = (REPO / "README.md").read_text()
    assert "best_trials[0]" not in readme  # the first of the front is no better than the others
    example = readme.split("From Python:\n\n```python\n", 1)[1].split("```", 1)[0]
    _, storage = tiny_run
    study = optuna.load_study(study_name="tiny", storage=storage)
    monkeypatch.setattr(optuna_energy, "run_study", lambda *args, **kwargs: study)  # the finished tiny study
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    exec(compile(example, "README.md", "exec"), {})
    report = optuna_energy.build_report(study)
    assert capsys.readouterr().out.splitlines() == [
        f"model {row.label}: trial {row.trial.number}, {row.metrics['accuracy']:.1%}, {row.roles}"
        for row in report.rows]
    assert (tmp_path / "model.pt2").is_file()
