"""Export round trips: each format is loaded back and predicts as the rebuilt in-memory model."""

from __future__ import annotations

import logging
import shutil
import warnings

import numpy as np
import onnx
import optuna
import pytest
import torch
from optuna.trial import TrialState

import optuna_energy
from optuna_energy.cli import main
from optuna_energy.export import (
    FORMATS,
    ExportError,
    ExportWarning,
    export_formats,
    export_trial,
    output_paths,
    predict_file,
    rebuild,
)
from optuna_energy.model.arch import build_model
from optuna_energy.store.weights import DEFAULT_FOLDER, load_weights
from tests.helpers import tiny_config


def _run(folder, **study):
    optuna_energy.run_study(tiny_config(folder, n_trials=2, **study), show_progress_bar=False)
    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{folder / 'study.db'}")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def study(folder):
    return _run(folder)


def _best(study):
    return max(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.user_attrs["accuracy"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_round_trip(study, tmp_path, fmt):
    trial = _best(study)
    result = export_trial(study, trial.number, fmt=fmt, path=tmp_path / f"model.{fmt}")
    assert result.weights == "kept"
    assert result.accuracy == pytest.approx(trial.user_attrs["accuracy"])
    model, data, _ = rebuild(study, trial.number)
    images = data.eval_x_host[:64]
    with torch.inference_mode():
        expected = model(images).numpy()
    actual = predict_file(result.path, fmt, images)
    assert actual.shape == (64, data.n_classes)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
    assert (actual.argmax(axis=1) == expected.argmax(axis=1)).all()
    if fmt == "onnx":
        onnx.checker.check_model(onnx.load(str(result.path)))


def test_exported_model_takes_raw_images_and_normalises_them(study):
    model, data, _ = rebuild(study, _best(study).number)
    images = data.eval_x_host[:8]
    with torch.inference_mode():
        np.testing.assert_allclose(model(images), model.network(data.normalize(images)), atol=1e-5)


class _TrainingCalls:
    """Counts calls of the training function, under both names export could reach it by."""

    def __init__(self, monkeypatch):
        import optuna_energy.trial.train as training

        self.count, real = 0, training.train

        def counted(*args, **kwargs):
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(training, "train", counted)
        monkeypatch.setattr("optuna_energy.export.train", counted)


def _no_torch_warnings(caplog, recwarn, capfd):
    """Nothing but the export's own lines: no Python warning, no log record, nothing on stderr."""
    assert [str(w.message) for w in recwarn] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert capfd.readouterr().err == ""


def test_the_search_keeps_each_completed_trials_weights_beside_the_database(study, folder):
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    files = list((folder / DEFAULT_FOLDER).iterdir())
    assert complete and len(files) == len(complete)
    for trial in complete:
        weights = load_weights(study, trial, folder / DEFAULT_FOLDER)
        assert all(tensor.device.type == "cpu" for tensor in weights.values())


def test_export_of_a_front_trial_loads_the_kept_weights_without_training(
        study, folder, tmp_path, monkeypatch, caplog, recwarn, capfd):
    trial = study.best_trials[0]
    calls = _TrainingCalls(monkeypatch)
    result = export_trial(study, trial.number, path=tmp_path / "front.pt2")
    assert calls.count == 0 and result.weights == "kept"
    assert result.accuracy == pytest.approx(trial.user_attrs["accuracy"])  # the search's model
    _no_torch_warnings(caplog, recwarn, capfd)
    stored = build_model(trial.user_attrs["architecture"], (1, 8, 8), 10)
    stored.load_state_dict(load_weights(study, trial, folder / DEFAULT_FOLDER))
    model, data, _ = rebuild(study, trial.number)
    images = data.eval_x_host[:64]
    with torch.inference_mode():
        np.testing.assert_array_equal(model.network(data.normalize(images)).numpy(),
                                      stored.eval()(data.normalize(images)).numpy())
        np.testing.assert_allclose(predict_file(result.path, "pt2", images), model(images).numpy(), atol=1e-5)


def test_several_formats_in_one_call_train_nothing_and_warn_nothing(
        study, folder, tmp_path, monkeypatch, caplog, recwarn, capfd):
    calls = _TrainingCalls(monkeypatch)
    assert main(["export", "--storage", f"sqlite:///{folder / 'study.db'}", "--trial", str(_best(study).number),
                 "--format", "pt2,onnx", "--format", "state_dict", "-o", str(tmp_path / "model.pt2")]) == 0
    assert calls.count == 0
    out = capfd.readouterr()
    assert out.err == "" and out.out.count("weights kept") == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.onnx", "model.pt", "model.pt2"]
    images = rebuild(study, _best(study).number)[1].eval_x_host[:8]
    outputs = [predict_file(tmp_path / name, fmt, images)
               for name, fmt in (("model.pt2", "pt2"), ("model.onnx", "onnx"), ("model.pt", "state_dict"))]
    for other in outputs[1:]:
        np.testing.assert_allclose(other, outputs[0], atol=1e-4)
    _no_torch_warnings(caplog, recwarn, capfd)


def test_a_pt2_file_under_any_name_loads_back_without_a_torch_warning(study, tmp_path, caplog, recwarn, capfd):
    export_trial(study, _best(study).number, fmt="pt2", path=tmp_path / "model.bin")
    _no_torch_warnings(caplog, recwarn, capfd)


@pytest.mark.parametrize(("output", "formats", "names"), [
    ("m.onnx", ["onnx"], ["m.onnx"]),  # one format: the name as given
    ("out/m", ["pt2", "torchscript"], ["out/m.pt2", "out/m.torchscript.pt"]),
    ("m.torchscript.pt", ["state_dict", "onnx", "state_dict"], ["m.pt", "m.onnx"]),
    ("m.v2.pt2", ["pt2", "onnx"], ["m.v2.pt2", "m.v2.onnx"]),
])
def test_output_paths_give_each_format_its_suffix(output, formats, names):
    assert [str(path) for path in output_paths(output, formats).values()] == names


def test_gone_weights_are_retrained_saying_so_in_one_line(study, folder, tmp_path, monkeypatch, capsys):
    shutil.copy(folder / "study.db", tmp_path / "study.db")  # the weights stay behind
    trial = _best(study)
    calls = _TrainingCalls(monkeypatch)
    assert main(["export", "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--trial", str(trial.number),
                 "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"trial {trial.number}'s kept weights are gone from {tmp_path / DEFAULT_FOLDER}: "
                      "retraining it (1 epoch on cpu)")
    assert err[1:] == [line for line in err[1:] if line.startswith("  epoch 1/1 (")] and len(err) == 2
    assert calls.count == 1
    # Same seed rule and data as the search: retraining on the CPU reproduces the trial.
    study_copy = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'study.db'}")
    result = export_formats(study_copy, trial.number, formats=["state_dict"], output=tmp_path / "m.pt")[0]
    assert result.weights == "retrained"
    assert result.accuracy == pytest.approx(trial.user_attrs["accuracy"])


def test_a_study_that_keeps_no_weights_is_retrained_saying_why(tmp_path):
    study = _run(tmp_path, keep_weights=False)
    assert not (tmp_path / DEFAULT_FOLDER).exists()
    lines = []
    result = export_trial(study, _best(study).number, fmt="state_dict", path=tmp_path / "m.pt", notify=lines.append)
    assert result.weights == "retrained"
    assert lines[0] == (f"the search kept no weights for trial {_best(study).number} ([study] keep_weights = "
                        "false, or a server storage without artifact_dir): retraining it (1 epoch on cpu)")


def test_export_command_writes_the_file(study, folder, tmp_path, capsys):
    number = _best(study).number
    with pytest.warns(ExportWarning, match="^TorchScript is deprecated in PyTorch [^\n]*prefer --format pt2$"):
        assert main(["export", "--storage", f"sqlite:///{folder / 'study.db'}", "--study-name", "tiny",
                     "--trial", str(number),
                     "--format", "torchscript", "-o", str(tmp_path / "m.pt")]) == 0
    assert "file and model agree" in capsys.readouterr().out
    assert (tmp_path / "m.pt").stat().st_size > 0


def test_pt2_is_the_default_format_and_loads_with_torch_export(study, folder, tmp_path, capsys):
    trial = _best(study)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExportWarning)  # a feasible trial, a current format: no remark
        assert main(["export", "--storage", f"sqlite:///{folder / 'study.db'}", "--trial", str(trial.number),
                     "-o", str(tmp_path / "model.pt2")]) == 0
    assert "(pt2)" in capsys.readouterr().out
    model, data, _ = rebuild(study, trial.number)
    images = data.eval_x_host[:5]  # another batch size than the export's example
    with torch.inference_mode():
        loaded = torch.export.load(str(tmp_path / "model.pt2")).module()
        np.testing.assert_allclose(loaded(images).numpy(), model(images).numpy(), rtol=1e-4, atol=1e-4)


def test_exporting_an_infeasible_trial_warns_in_one_line(tmp_path):
    config = tiny_config(tmp_path, n_trials=3)
    config["early_stopping"] = {"enabled": False}  # the paper's mode: trials at chance complete
    optuna_energy.run_study(config, show_progress_bar=False)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'study.db'}")
    infeasible = next(t for t in study.get_trials(states=(TrialState.COMPLETE,)) if not t.user_attrs["feasible"])
    with pytest.warns(ExportWarning) as warned:
        assert main(["export", "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--trial", str(infeasible.number),
                     "--format", "state_dict", "-o", str(tmp_path / "m.pt")]) == 0
    assert [str(w.message) for w in warned] == [
        f"trial {infeasible.number} is infeasible (violates learned): not one of the study's best trials; "
        "`optuna-energy report` lists the models worth deploying"]


def test_export_errors_are_one_line(study, folder, tmp_path, capsys):
    with pytest.raises(ExportError, match="has no trial 99"):
        export_trial(study, 99, fmt="onnx", path=tmp_path / "x.onnx")
    with pytest.raises(ExportError, match="allowed: pt2, onnx, state_dict, torchscript"):
        export_trial(study, 0, fmt="tflite", path=tmp_path / "x")
    assert main(["export", "--storage", f"sqlite:///{folder / 'study.db'}", "--trial", "99", "--format", "onnx",
                 "-o", str(tmp_path / "x.onnx")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def _no_retraining(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the output path must be checked before retraining")

    monkeypatch.setattr("optuna_energy.export.rebuild", refuse)


def test_export_never_overwrites_the_study_database(study, folder, capsys, monkeypatch):
    _no_retraining(monkeypatch)
    database = folder / "study.db"
    before = database.read_bytes()
    for extra in ([], ["--force"]):
        assert main(["export", "--storage", f"sqlite:///{database}", "--study-name", "tiny",
                     "--trial", str(_best(study).number), "--format", "onnx", "-o", str(database),
                     *extra]) == 2
        assert "the study's own storage file" in capsys.readouterr().err
    assert database.read_bytes() == before
    assert len(optuna.load_study(study_name="tiny", storage=f"sqlite:///{database}").trials) == 2


@pytest.mark.parametrize(("make", "message"), [
    (lambda tmp: tmp, "is a folder"),
    (lambda tmp: tmp / "missing" / "m.onnx", "does not exist"),
    (lambda tmp: (tmp / "notes.txt", (tmp / "notes.txt").write_text("mine"))[0],
     "exists and is not a onnx export"),
])
def test_bad_output_paths_fail_before_retraining(study, tmp_path, monkeypatch, make, message):
    _no_retraining(monkeypatch)
    with pytest.raises(ExportError, match=message):
        export_trial(study, _best(study).number, fmt="onnx", path=make(tmp_path))
    assert [path.name for path in tmp_path.iterdir()] in ([], ["notes.txt"])


def test_force_replaces_a_foreign_file_and_a_previous_export_needs_no_force(study, tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("not a model")
    number = _best(study).number
    export_trial(study, number, fmt="onnx", path=target, force=True)
    export_trial(study, number, fmt="onnx", path=target)  # an earlier export: replaced freely
    onnx.checker.check_model(onnx.load(str(target)))
    # One self-contained file, loadable after being copied alone.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.onnx"]
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    (copy / "copy.onnx").write_bytes(target.read_bytes())
    assert predict_file(copy / "copy.onnx", "onnx", rebuild(study, number)[1].eval_x_host[:4]).shape[0] == 4


@pytest.mark.parametrize(("device", "message"), [
    ("tpu", "unknown device 'tpu'; allowed: auto, cpu, cuda, cuda:N"),
    ("cuda:7", "but this machine has"),
])
def test_export_on_a_device_this_machine_lacks_is_one_line(study, folder, tmp_path, capsys, device, message):
    assert main(["export", "--storage", f"sqlite:///{folder / 'study.db'}", "--study-name", "tiny",
                 "--trial", str(_best(study).number), "--format", "onnx", "-o", str(tmp_path / "m.onnx"),
                 "--device", device]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
