"""A trial's model, rebuilt and written as a torch.export program (``.pt2``, the default), ONNX,
a state_dict checkpoint or TorchScript (deprecated by PyTorch; kept while torch still loads it).

The model is rebuilt from the trial's ``architecture`` user attribute and loaded with the weights
the search kept (``store.weights``); only where those are gone is it retrained with the trial's
stored hyperparameters and seed (``seed + trial.number``, as in the search) on the study's
dataset. One call writes several formats from the one model.
The exported module includes the input normalisation: it takes uint8 images ``(N, C, H, W)``,
as the dataset stores them, and returns class logits. After writing, the file is loaded back
and its predictions on an evaluation batch are compared with the in-memory model's.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from torch import nn

from optuna_energy.choices import DEFAULT_EXPORT_FORMAT, EXPORT_FORMATS
from optuna_energy.config import StudyConfig, load_config
from optuna_energy.data import DeviceData
from optuna_energy.host.devices import resolve_device
from optuna_energy.host.files import check_target, replacing
from optuna_energy.model.arch import build_model
from optuna_energy.model.space import TrainingParams
from optuna_energy.reading.study_trials import feasible_in
from optuna_energy.samplers._optuna_compat import storage_of, study_id
from optuna_energy.store.record import TrialRecord, stored_config
from optuna_energy.store.storage import storage_files
from optuna_energy.store.weights import WeightsUnavailable, load_weights, weights_folder
from optuna_energy.study import load_device_data
from optuna_energy.trial.objective import trial_seed
from optuna_energy.trial.stopping import LEARNED
from optuna_energy.trial.train import TrainingSession, evaluate, train

FORMATS = EXPORT_FORMATS
DEFAULT_FORMAT = DEFAULT_EXPORT_FORMAT
SUFFIXES = {"pt2": ".pt2", "onnx": ".onnx", "state_dict": ".pt", "torchscript": ".torchscript.pt"}
"""Each format's file suffix, when one export call writes several formats."""
DEPRECATED_FORMATS = {"torchscript": "TorchScript is deprecated in PyTorch (torch.jit.load warns); "
                                     "torch.export's pt2 format replaces it"}


class ExportWarning(UserWarning):
    """An export that works but is probably not what the user wants (one line)."""


class ExportError(ValueError):
    """A trial cannot be exported; the message says what is missing and what is allowed."""


class Deployable(nn.Module):
    """A searched network behind the dataset's normalisation: uint8 images in, logits out."""

    def __init__(self, network: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.network = network
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).float())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).float())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network((images.float() / 255 - self.mean) / self.std)


@dataclasses.dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    weights: str
    """``kept`` (loaded from the search's artifact) or ``retrained``."""
    accuracy: float
    """The rebuilt model's accuracy on the evaluation split."""
    search_accuracy: float | None
    max_abs_difference: float
    """Largest logit difference between the file and the in-memory model on a batch."""


def study_config(study: optuna.Study, config: StudyConfig | str | Path | None = None) -> StudyConfig:
    """The config a study was run with: the one given, else the copy stored on the study."""
    if config is not None:
        return load_config(config)
    stored = stored_config(study)
    if stored is None:
        raise ExportError(f"study {study.study_name!r} stores no config; pass the study's CONFIG file")
    return load_config(stored)


Notify = Callable[[str], None]
"""Takes one line: that export retrains, then its progress (the CLI prints them to stderr)."""


def rebuild(study: optuna.Study, trial_number: int, *, config: StudyConfig | str | Path | None = None,
            device: str = "cpu", notify: Notify | None = None) -> tuple[Deployable, DeviceData, str]:
    """A trial's trained model, its data, and whether its weights were ``kept`` or ``retrained``.

    The weights are the ones the search kept (``store.weights``); only when they are gone is the
    model retrained, ``notify`` told why in one line and then each epoch.
    """
    trial = _trial(study, trial_number)
    config = study_config(study, config)
    data = load_device_data(config, resolve_device(device))
    seed = trial_seed(config, trial.number)
    torch.manual_seed(seed)
    stored = TrialRecord.of(trial)
    assert stored.architecture is not None and stored.training is not None  # _trial checked
    network = build_model(stored.architecture, data.input_shape, data.n_classes).to(
        data.device, memory_format=data.memory_format)  # type: ignore[call-overload]
    try:
        network.load_state_dict(load_weights(study, trial, weights_folder(study, config.study)))
        source = "kept"
    except WeightsUnavailable as missing:
        notify, epochs = notify or _ignore, config.training.epochs
        notify(f"{missing}: retraining it ({epochs} epoch{'s' * (epochs != 1)} on {data.device})")
        _retrain(network, data, TrainingParams(**stored.training), epochs=epochs, seed=seed,
                 precision=config.training.precision, notify=notify)
        source = "retrained"
    network.eval()
    return Deployable(network, data.mean, data.std).to(data.device).eval(), data, source


def _ignore(line: str) -> None:
    """The default :data:`Notify`: an API caller reads ``ExportResult.weights`` instead."""


def _retrain(network: nn.Module, data: DeviceData, params: TrainingParams, *, epochs: int, seed: int,
             precision: str, notify: Notify) -> None:
    """Train as the search did, an epoch per call (one session: the same model as one call)."""
    session = TrainingSession.start(network, data, params, seed=seed)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        train(network, data, params, epochs=1, seed=seed, precision=precision, session=session)
        notify(f"  epoch {epoch}/{epochs} ({time.perf_counter() - start:.0f} s)")


def _trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """The one trial, looked up by number: reading every trial costs minutes in a big study."""
    storage = storage_of(study)
    try:
        trial = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id(study), number))
    except KeyError:
        raise ExportError(f"study {study.study_name!r} has no trial {number}; it has trials "
                          f"0 to {storage.get_n_trials(study_id(study)) - 1}") from None
    if trial.state == optuna.trial.TrialState.COMPLETE and TrialRecord.of(trial).architecture is None:
        raise ExportError(f"trial {number} stores no architecture of the built-in space: export rebuilds "
                          "only specs of optuna-energy's 32-slot space (suggest_architecture); save a model "
                          "of your own with torch.save or torch.onnx.export in your objective")
    if trial.state != optuna.trial.TrialState.COMPLETE:
        raise ExportError(f"trial {number} is {trial.state.name}, not a completed optuna-energy "
                          "trial; export a completed one (see `optuna-energy report`)")
    return trial


def check_output_path(path: str | Path, *, fmt: str, study: optuna.Study, force: bool = False) -> Path:
    """The export's target, checked before any training: never the study's own storage file,
    never a folder, in a folder that exists and takes a new file, and never an existing file
    that is not an earlier export of this format unless ``force``.

    Raises:
        ExportError: One line naming the path and what is wrong with it.
        OutputError: The path is the study's storage file under another name (a link, ``..``).
    """
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"output {str(path)!r} is a folder; give a file name, e.g. {str(path / ('model.' + fmt))!r}")
    nearest = next(folder for folder in path.parents if folder.exists())
    if not nearest.is_dir():
        raise ExportError(f"{str(nearest)!r} in output {str(path)!r} is a file, not a folder; "
                          "give a path inside a folder")
    if not path.parent.is_dir():
        raise ExportError(f"output folder {str(path.parent)!r} does not exist; create it first")
    check_target(path, protect=storage_files(study))
    if path.exists() and not force and not _is_export(path, fmt):
        raise ExportError(f"output {str(path)!r} exists and is not a {fmt} export; "
                          "choose another name, or pass --force to replace it")
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=True):
            pass
    except OSError as error:
        raise ExportError(f"cannot write in {str(path.parent)!r}: {error.strerror}") from None
    return path


def _is_export(path: Path, fmt: str) -> bool:
    """Whether ``path`` looks like an earlier export in ``fmt`` (cheap signatures, no loading)."""
    if fmt == "onnx":
        import onnx

        try:
            graph = onnx.load(str(path), load_external_data=False).graph
        except Exception:
            return False
        return [i.name for i in graph.input] == ["images"] and [o.name for o in graph.output] == ["logits"]
    # torch.save and torch.jit.save both write a zip archive with a pickled data part;
    # torch.export.save one with an archive_format entry.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if fmt == "pt2":
        return any(name.endswith("/archive_format") for name in names)
    return any(name.endswith(("/data.pkl", "/constants.pkl")) for name in names)


def export_trial(study: optuna.Study, trial_number: int, *, fmt: str = DEFAULT_FORMAT, path: str | Path,
                 config: StudyConfig | str | Path | None = None, device: str = "cpu",
                 check_batch: int = 100, force: bool = False, notify: Notify | None = None) -> ExportResult:
    """Rebuild a trial's model, write it as ``fmt`` and check the file predicts as the model does.

    Args:
        study: A study made by optuna-energy.
        trial_number: The trial to export, e.g. the best trade-off from ``optuna-energy report``.
        fmt: One of :data:`FORMATS`: ``pt2`` (torch.export, the default), ``onnx``,
            ``state_dict`` (a checkpoint ``load_checkpoint`` reads) or ``torchscript`` (deprecated).
        path: The file to write.
        config: The study's config; by default the copy stored on the study.
        device: Where to retrain, if the search's weights are gone (``cpu``, ``cuda``,
            ``cuda:N``); the file is written from the CPU.
        check_batch: Evaluation images on which file and model must agree.
        force: Replace an existing file that is not an earlier export (never the storage file).
        notify: Told in one line when the weights are gone and export retrains, then each epoch.

    Raises:
        ExportError: Unknown format or trial, a bad output path (checked before retraining), no
            stored config, or the file's predictions differ.
        OutputError: The path is the study's storage file under another name, or the file
            cannot be written (a full disk); an existing file is then left as it was.

    Warns:
        ExportWarning: The trial is infeasible (violates a constraint), or the format is deprecated.

    Example:
        >>> export_trial(study, 12, fmt="onnx", path="model.onnx")
    """
    return export_formats(study, trial_number, formats=[fmt], output=path, config=config, device=device,
                          check_batch=check_batch, force=force, notify=notify)[0]


def output_paths(output: str | Path, formats: Sequence[str]) -> dict[str, Path]:
    """Each format's file: ``output`` itself for one format; for several, ``output`` without a
    format's suffix, plus each format's :data:`SUFFIXES` (``model.pt2`` → ``model.onnx``, ...)."""
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown export format {(unknown or [''])[0]!r}; allowed: {', '.join(FORMATS)}")
    output = Path(output)
    if len(set(formats)) == 1:
        return {formats[0]: output}
    name = output.name
    for suffix in sorted(SUFFIXES.values(), key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[:-len(suffix)]
            break
    return {fmt: output.with_name(name + SUFFIXES[fmt]) for fmt in dict.fromkeys(formats)}


def export_formats(study: optuna.Study, trial_number: int, *, formats: Sequence[str], output: str | Path,
                   config: StudyConfig | str | Path | None = None, device: str = "cpu",
                   check_batch: int = 100, force: bool = False,
                   notify: Notify | None = None) -> list[ExportResult]:
    """:func:`export_trial` in several formats from one rebuilt model, named by :func:`output_paths`.

    Every output path is checked before the model is rebuilt; files already written stay when a
    later format fails.

    Example:
        >>> export_formats(study, 12, formats=["pt2", "onnx"], output="model")  # model.pt2, model.onnx
    """
    paths = output_paths(output, formats)
    trial = _trial(study, trial_number)
    for fmt in paths:
        if fmt in DEPRECATED_FORMATS:
            warnings.warn(f"{DEPRECATED_FORMATS[fmt]}: prefer --format {DEFAULT_FORMAT}", ExportWarning,
                          stacklevel=3)
    if not feasible_in(study, trial):
        violated = ", ".join(name for name, value in trial.constraints.items() if value > 0) or LEARNED
        warnings.warn(f"trial {trial.number} is infeasible (violates {violated}): not one of the study's "
                      "best trials; `optuna-energy report` lists the models worth deploying",
                      ExportWarning, stacklevel=3)
    resolve_device(device)
    paths = {fmt: check_output_path(path, fmt=fmt, study=study, force=force) for fmt, path in paths.items()}
    model, data, source = rebuild(study, trial_number, config=config, device=device, notify=notify)
    accuracy = evaluate(model.network, data)
    model = model.cpu()
    images = data.eval_x_host[:check_batch].cpu()
    with torch.inference_mode():
        expected = model(images).numpy()
    results = []
    for fmt, path in paths.items():
        # Moved over the target only once checked: a failed export leaves an existing file as it was.
        with replacing(path, protect=storage_files(study)) as draft:
            _write(model, draft, fmt, images, architecture=TrialRecord.of(trial).architecture or [],
                   n_classes=data.n_classes)
            actual = predict_file(draft, fmt, images)
            difference = float(np.abs(expected - actual).max())
            if not np.array_equal(expected.argmax(axis=1), actual.argmax(axis=1)):
                raise ExportError(f"the {fmt} file {path} predicts differently from the model "
                                  f"(largest logit difference {difference:.3g})")
        results.append(ExportResult(path=path, format=fmt, weights=source, accuracy=accuracy,
                                    search_accuracy=TrialRecord.of(trial).accuracy,
                                    max_abs_difference=difference))
    return results


def _write(model: Deployable, path: Path, fmt: str, example: torch.Tensor, *,
           architecture: list[dict[str, Any]], n_classes: int) -> None:
    if fmt == "onnx":
        batch = torch.export.Dim("batch")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter reports its passes as warnings
            torch.onnx.export(model, (example,), str(path), input_names=["images"],
                              output_names=["logits"], dynamic_shapes={"images": {0: batch}},
                              dynamo=True, verbose=False,
                              # One self-contained file: searched CNNs are far below ONNX's 2 GB
                              # protobuf limit, and a file that needs a sidecar breaks when copied.
                              external_data=False)
        return
    # torch's writers, given a file that fails (a full disk), raise a RuntimeError without the
    # cause and may abort the process later (torch.export.save): they write to memory instead,
    # and the file gets the bytes (a plain OSError, host.files).
    buffer = io.BytesIO()
    if fmt == "pt2":
        program = torch.export.export(model, (example,), dynamic_shapes={"images": {0: torch.export.Dim("batch")}})
        torch.export.save(program, buffer)
    elif fmt == "torchscript":
        with warnings.catch_warnings():
            # TorchScript is deprecated in favour of torch.export, but it is still the format
            # LibTorch and most serving stacks load.
            warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning))
            torch.jit.save(torch.jit.script(model), buffer)
    else:
        torch.save({"architecture": architecture, "input_shape": list(example.shape[1:]),
                    "n_classes": n_classes, "state_dict": model.state_dict()}, buffer)
    path.write_bytes(buffer.getbuffer())


def load_checkpoint(path: str | Path) -> Deployable:
    """The model of a ``state_dict`` export, rebuilt from the architecture it carries."""
    checkpoint = torch.load(path, weights_only=True)
    network = build_model(checkpoint["architecture"], tuple(checkpoint["input_shape"]), checkpoint["n_classes"])
    channels = checkpoint["input_shape"][0]
    model = Deployable(network, torch.zeros(channels), torch.ones(channels))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def predict_file(path: str | Path, fmt: str, images: torch.Tensor) -> np.ndarray:
    """Logits of an exported file on uint8 ``images``, loaded the way a user would load it."""
    if fmt == "pt2":
        with torch.inference_mode(), open(path, "rb") as file:
            # A file object: torch.export.load logs a warning for a path not ending in .pt2.
            return torch.export.load(file).module()(images).numpy()
    if fmt == "torchscript":
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning))
            return torch.jit.load(str(path), map_location="cpu")(images).numpy()
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {"images": images.numpy()})[0]
    with torch.inference_mode():
        return load_checkpoint(path)(images).numpy()
