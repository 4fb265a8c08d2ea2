"""optuna-dashboard wiring: per-trial artifacts, the study's report note, and the server.

With ``[study] artifact_dir`` set, every trial that completes uploads its topology drawing
(``topology.png``) and its architecture (``architecture.json``) to an Optuna
``FileSystemArtifactStore`` in that folder (where ``store.weights`` keeps its trained weights), and the
study's note is replaced by the current report table. ``serve`` starts optuna-dashboard on the
loopback interface with that store, so the drawings show on each trial's page.
"""

from __future__ import annotations

import functools
import json
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.artifacts import upload_artifact
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from optuna_energy.config import StudyConfig
from optuna_energy.host.files import write_text
from optuna_energy.reading.analysis import AnalysisError, TradeOffWeights, best_of
from optuna_energy.reading.report import build_report, payback_text, table_markdown
from optuna_energy.reading.study_trials import StudyTrials, read_study
from optuna_energy.store.record import TrialRecord, stored_config
from optuna_energy.store.weights import artifact_store

HOST = "127.0.0.1"
TOPOLOGY_FILE = "topology.png"
ARCHITECTURE_FILE = "architecture.json"


def dashboard_only_best(study: optuna.Study | StudyTrials) -> list[FrozenTrial]:
    """COMPLETE trials optuna-dashboard marks "Best Trial" although ``study.best_trials`` leaves
    them out, by number.

    optuna-dashboard (0.21) takes a multi-objective study's best trials to be the Pareto front of
    every COMPLETE trial by its values alone: it does not read Optuna 5's constraints
    (``set_constraint``), so an infeasible COMPLETE trial that no trial beats on every objective
    shows as best. With early stopping on, trials over a limit or at chance at a rung end PRUNED,
    so this is usually empty; without early stopping (``[early_stopping] enabled = false``)
    trials at chance complete, infeasible.
    """
    read = read_study(study)
    best = {trial.number for trial in best_of(read)}
    return [read.full(trial) for trial in best_of(read, feasible_only=False) if trial.number not in best]


def note_markdown(study: optuna.Study | StudyTrials, *,
                  weights: TradeOffWeights = TradeOffWeights()) -> str:
    """The study note: the highlighted models' table and the energy payback, in Markdown, and
    which trials optuna-dashboard marks best that are not (:func:`dashboard_only_best`)."""
    read = read_study(study)
    report = build_report(read, weights=weights)
    note = (f"## Highlighted models ({report.n_usable} completed, feasible trials)\n\n"
            f"{table_markdown(report)}\n\n{payback_text(report)}\n\n"
            f"`optuna-energy report` writes this table with Fig. 1 and Fig. 2.\n")
    extra = dashboard_only_best(read)
    if extra:
        best = ", ".join(str(trial.number) for trial in best_of(read))
        note += (f"\n**Not best trials: {', '.join(str(trial.number) for trial in extra)}.** "
                 "optuna-dashboard marks them \"Best Trial\" because it ranks completed trials by "
                 "their values alone and does not read Optuna 5's constraints; they are infeasible "
                 "(see their `feasible` and `constraints` attributes). The best trials, as in "
                 f"`study.best_trials` and the CLI: {best or 'none yet'}.\n")
    return note


class ReportNote:
    """A study callback: after each completed trial, the study note shows the current report.

    It keeps the study's trials as it read them and reads only the new and unfinished ones
    after each trial (``StudyTrials.refresh``), not the whole study again.
    """

    def __init__(self, *, weights: TradeOffWeights = TradeOffWeights()) -> None:
        self.weights = weights
        self._read: StudyTrials | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE:
            return
        if self._read is None or self._read.study is not study:
            self._read = StudyTrials(study)
        else:
            self._read.refresh()
        try:
            note = note_markdown(self._read, weights=self.weights)
        except AnalysisError:  # no feasible trial yet: nothing to tabulate
            return
        from optuna_dashboard import save_note

        save_note(study, note)


def upload_trial_artifacts(trial: optuna.Trial, model: nn.Module, artifact_dir: str | Path) -> None:
    """Upload a running trial's ``topology.png`` and ``architecture.json``.

    Called by the objective before the trial finishes: Optuna attaches artifacts to running
    trials only.
    """
    from optuna_energy.reading import plots

    stored = TrialRecord.of(trial)
    spec, accuracy = stored.architecture or [], stored.accuracy
    title = f"trial {trial.number}" + (f"\n{100 * accuracy:.1f} %" if accuracy is not None else "")
    store = artifact_store(artifact_dir)
    with tempfile.TemporaryDirectory() as folder:
        paths = [plots.save(plots.architecture_figure(spec, title), Path(folder) / TOPOLOGY_FILE)]
        paths.append(write_text(Path(folder) / ARCHITECTURE_FILE, json.dumps(spec, indent=1)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            for path in paths:
                upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)


def trained_model_hook(config: StudyConfig) -> Callable[[optuna.Trial, nn.Module], None] | None:
    """The objective's hook that uploads each trained model's artifacts, if ``artifact_dir`` is set."""
    if config.study.artifact_dir is None:
        return None
    return functools.partial(upload_trial_artifacts, artifact_dir=config.study.artifact_dir)


def study_callbacks(config: StudyConfig) -> list[ReportNote]:
    """The callbacks ``study.optimize`` needs for the dashboard: none without ``artifact_dir``."""
    return [ReportNote()] if config.study.artifact_dir is not None else []


def recorded_artifact_dir(storage: str) -> str | None:
    """The ``artifact_dir`` the storage's studies were run with (the first one, if several)."""
    from optuna_energy.store.storage import open_storage

    for summary in optuna.get_all_study_summaries(open_storage(storage, create=False),
                                                  include_best_trial=False):
        directory = (stored_config(summary) or {}).get("study", {}).get("artifact_dir")
        if directory:
            return directory
    return None


def serve(storage: str, *, port: int = 8080, artifact_dir: str | Path | None = None) -> None:
    """Run optuna-dashboard on ``127.0.0.1:port`` until interrupted.

    Args:
        storage: The study database's URL.
        port: TCP port on the loopback interface.
        artifact_dir: The ``[study] artifact_dir`` the studies uploaded to, if any.
    """
    from optuna_dashboard import run_server

    from optuna_energy.store.storage import open_storage

    store = artifact_store(artifact_dir) if artifact_dir is not None else None
    run_server(open_storage(storage, create=False), host=HOST, port=port, artifact_store=store)
