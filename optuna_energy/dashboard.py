"""optuna-dashboard wiring: per-trial artifacts, the study's report note, and the server.

With ``[study] artifact_dir`` set, every completed trial uploads its topology drawing
(``topology.png``) and its architecture (``architecture.json``) to an Optuna
``FileSystemArtifactStore`` in that folder, and the study's note is replaced by the current
report table. ``serve`` starts optuna-dashboard on the loopback interface with that store, so
the drawings show on each trial's page.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import FrozenTrial, TrialState

from optuna_energy.analysis import AnalysisError, TradeOffWeights
from optuna_energy.config import StudyConfig
from optuna_energy.report import build_report, payback_text, table_markdown

HOST = "127.0.0.1"
TOPOLOGY_FILE = "topology.png"
ARCHITECTURE_FILE = "architecture.json"


def artifact_store(directory: str | Path) -> FileSystemArtifactStore:
    """Optuna's file-system artifact store in ``directory``, created if missing."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


def note_markdown(study: optuna.Study, *, weights: TradeOffWeights = TradeOffWeights()) -> str:
    """The study note: the highlighted models' table and the energy payback, in Markdown."""
    report = build_report(study, weights=weights)
    return (f"## Highlighted models ({report.n_usable} completed, feasible trials)\n\n"
            f"{table_markdown(report)}\n\n{payback_text(report)}\n\n"
            f"`optuna-energy report` writes this table with Fig. 1 and Fig. 2.\n")


class DashboardArtifacts:
    """A study callback: uploads each completed trial's drawing and architecture, renews the note."""

    def __init__(self, store: FileSystemArtifactStore, *,
                 weights: TradeOffWeights = TradeOffWeights()) -> None:
        self.store = store
        self.weights = weights

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE or "architecture" not in trial.user_attrs:
            return
        upload_trial_artifacts(study, trial, self.store)
        try:
            note = note_markdown(study, weights=self.weights)
        except AnalysisError:  # no feasible trial yet: nothing to tabulate
            return
        from optuna_dashboard import save_note

        save_note(study, note)


def upload_trial_artifacts(study: optuna.Study, trial: FrozenTrial, store: FileSystemArtifactStore) -> None:
    """Upload ``topology.png`` and ``architecture.json`` for one finished trial."""
    from optuna_energy import plots

    spec = trial.user_attrs["architecture"]
    accuracy = trial.user_attrs.get("accuracy")
    title = f"trial {trial.number}" + (f"\n{100 * accuracy:.1f} %" if accuracy is not None else "")
    with tempfile.TemporaryDirectory() as folder:
        drawing = plots.save(plots.architecture_figure(spec, title), Path(folder) / TOPOLOGY_FILE)
        architecture = Path(folder) / ARCHITECTURE_FILE
        architecture.write_text(json.dumps(spec, indent=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            for path in (drawing, architecture):
                # A FrozenTrial needs the storage named; Optuna keeps it on the study only.
                upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial,
                                storage=study._storage)


def study_callbacks(config: StudyConfig) -> list[DashboardArtifacts]:
    """The callbacks ``study.optimize`` needs for the dashboard: none without ``artifact_dir``."""
    if config.study.artifact_dir is None:
        return []
    return [DashboardArtifacts(artifact_store(config.study.artifact_dir))]


def serve(storage: str, *, port: int = 8080, artifact_dir: str | Path | None = None) -> None:
    """Run optuna-dashboard on ``127.0.0.1:port`` until interrupted.

    Args:
        storage: The study database's URL.
        port: TCP port on the loopback interface.
        artifact_dir: The ``[study] artifact_dir`` the studies uploaded to, if any.
    """
    from optuna_dashboard import run_server

    from optuna_energy.storage import open_storage

    store = artifact_store(artifact_dir) if artifact_dir is not None else None
    run_server(open_storage(storage), host=HOST, port=port, artifact_store=store)
