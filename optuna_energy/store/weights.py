"""The trained weights the search keeps, so that export loads them instead of retraining.

Every trial that completes (any trial a front may hold) stores its model's ``state_dict`` as an
Optuna artifact named ``weights.pt`` in an Optuna ``FileSystemArtifactStore``: the ``[study]
artifact_dir`` if set, else an ``artifacts`` folder beside a SQLite database or journal file.
A study on a server (PostgreSQL, MySQL) keeps weights only in a configured ``artifact_dir``.
Pruned and failed trials keep none. ``[study] keep_weights = false`` turns it off.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial
from torch import nn

from optuna_energy.config import StudySection
from optuna_energy.host.files import replacing
from optuna_energy.samplers._optuna_compat import storage_of
from optuna_energy.store.storage import storage_files

WEIGHTS_FILE = "weights.pt"
DEFAULT_FOLDER = "artifacts"
"""The artifact folder beside a file storage when ``[study] artifact_dir`` is not set."""


class WeightsUnavailable(LookupError):
    """A trial's kept weights cannot be loaded; the message says why, in one line."""


def artifact_store(directory: str | Path) -> FileSystemArtifactStore:
    """Optuna's file-system artifact store in ``directory``, created if missing."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


def weights_folder(study: optuna.Study, section: StudySection) -> Path | None:
    """Where ``study`` keeps its trials' weights: ``artifact_dir``, else ``artifacts`` beside its
    storage file; ``None`` for a server storage without ``artifact_dir``."""
    if section.artifact_dir:
        return Path(section.artifact_dir)
    files = storage_files(study)
    return files[0].parent / DEFAULT_FOLDER if files else None


def weights_keeper(study: optuna.Study, section: StudySection) -> Callable[[optuna.Trial, nn.Module], None] | None:
    """The objective's hook that keeps each trained model's weights, or ``None`` when the study
    keeps none (``keep_weights = false``, or a server storage without ``artifact_dir``)."""
    folder = weights_folder(study, section) if section.keep_weights else None
    if folder is None:
        return None
    store = artifact_store(folder)

    def keep(trial: optuna.Trial, model: nn.Module) -> None:
        keep_weights(trial, model, store)

    return keep


def keep_weights(trial: optuna.Trial, model: nn.Module, store: FileSystemArtifactStore) -> None:
    """Upload ``model``'s ``state_dict`` (on the CPU) as the running trial's ``weights.pt``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / WEIGHTS_FILE
        with replacing(path) as draft, draft.open("wb") as file:  # a file object: see host.files
            torch.save({key: value.cpu() for key, value in model.state_dict().items()}, file)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)


def load_weights(study: optuna.Study, trial: FrozenTrial, folder: Path | None) -> dict[str, torch.Tensor]:
    """The ``state_dict`` the search kept for ``trial``.

    Raises:
        WeightsUnavailable: The search kept none for it, or the file is gone from ``folder``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        metas = [meta for meta in get_all_artifact_meta(trial, storage=storage_of(study))
                 if meta.filename == WEIGHTS_FILE]
    if not metas:
        raise WeightsUnavailable(f"the search kept no weights for trial {trial.number} "
                                 "([study] keep_weights = false, or a server storage without artifact_dir)")
    if folder is None:
        raise WeightsUnavailable(f"trial {trial.number}'s weights were kept, but the study's config names "
                                 "no artifact_dir to read them from")
    try:
        with FileSystemArtifactStore(str(folder)).open_reader(metas[-1].artifact_id) as reader:
            return torch.load(io.BytesIO(reader.read()), weights_only=True)
    except ArtifactNotFound:
        raise WeightsUnavailable(f"trial {trial.number}'s kept weights are gone from {folder}") from None
