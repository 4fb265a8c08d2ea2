"""Registries open to plug-ins (datasets, layer kinds by entry point) and the name lists with one
owner (optimizers, samplers): the config accepts what the registry holds, when it is read."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from optuna_energy.cli import build_parser
from optuna_energy.config import SAMPLERS, ConfigError, load_config
from optuna_energy.data import DATASETS, DatasetSource, from_tensors, load_dataset, register_dataset
from optuna_energy.host.plugins import Registry
from optuna_energy.model.optimizers import OPTIMIZERS, make_optimizer
from optuna_energy.samplers import EvolutionSampler, HandoverSampler
from optuna_energy.study import create_sampler
from tests.helpers import tiny_config
from tests.test_first_run import toml_text

REPO = Path(__file__).resolve().parents[1]


def _noise_splits(section, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (40, 1, 6, 6), dtype=np.uint8)
    labels = np.arange(40) % 4
    return from_tensors(images[:30], labels[:30], images[30:], labels[30:], name=section.name)


@pytest.fixture
def noise_dataset() -> Iterator[DatasetSource]:
    source = register_dataset("noise", DatasetSource(_noise_splits, ("validation",)))
    yield source
    DATASETS.unregister("noise")


def test_a_registered_dataset_is_a_config_name_and_loads(noise_dataset):
    config = load_config({"dataset": {"name": "noise"}})
    splits = load_dataset(config.dataset, seed=3)
    assert (splits.name, splits.n_classes, splits.input_shape, len(splits.eval_y)) == ("noise", 4, (1, 6, 6), 10)
    with pytest.raises(ConfigError, match=r"^\[dataset\] eval_split is 'test' for noise; allowed: validation$"):
        load_config({"dataset": {"name": "noise", "eval_split": "test"}})


def test_unknown_and_duplicate_datasets_are_one_line_errors_naming_the_registered(noise_dataset):
    with pytest.raises(ConfigError, match=r"^\[dataset\] name is 'nois'; allowed: digits, .*imagefolder, noise$"):
        load_config({"dataset": {"name": "nois"}})
    with pytest.raises(ValueError, match=r"^dataset 'digits' is already registered; registered: digits, cifar10"):
        register_dataset("digits", noise_dataset)
    with pytest.raises(TypeError, match=r"^dataset 'raw' must be a DatasetSource, got function$"):
        register_dataset("raw", _noise_splits)  # type: ignore[arg-type]
    assert "nois" not in DATASETS and "raw" not in DATASETS


def test_every_optimizer_name_builds_its_optimizer_and_others_are_refused():
    model = torch.nn.Linear(3, 2)
    built = {name: make_optimizer(name, model.parameters(), learning_rate=0.1, weight_decay=0.0)
             for name in OPTIMIZERS}
    assert {name: type(optimizer) for name, optimizer in built.items()} == {
        "sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    with pytest.raises(ValueError, match=r"^unknown optimizer 'rmsprop'; allowed: sgd, adam, adamw$"):
        make_optimizer("rmsprop", model.parameters(), learning_rate=0.1, weight_decay=0.0)
    with pytest.raises(ConfigError, match=r"^\[training\] optimizers entry is 'rmsprop'; allowed: sgd, adam, adamw$"):
        load_config({"training": {"optimizers": ["adam", "rmsprop"]}})


def test_every_sampler_name_of_the_config_and_the_cli_builds_its_sampler():
    kinds = {name: type(create_sampler(name, seed=0)) for name in SAMPLERS}
    assert kinds == {"tpe": optuna.samplers.TPESampler, "auto": HandoverSampler, "nsga2": optuna.samplers.NSGAIISampler,
                     "random": optuna.samplers.RandomSampler, "evolution": EvolutionSampler,
                     "gp": optuna.samplers.GPSampler}
    assert build_parser().parse_args(["run", "--sampler", "gp"]).sampler == "gp"
    allowed = "tpe, auto, nsga2, random, evolution, gp"
    with pytest.raises(ConfigError, match=rf"^\[study\] sampler is 'cmaes'; allowed: {allowed}$"):
        load_config({"study": {"sampler": "cmaes"}})
    with pytest.raises(ConfigError, match=rf"^unknown sampler 'cmaes'; allowed: {allowed}$"):
        create_sampler("cmaes")


def _feasible_share(name: str, *, constrained: bool, trials: int) -> float:
    """The share of feasible trials (x and y >= 0.5) in the second half of a study minimising x and y,
    where the unconstrained optimum (0, 0) is infeasible."""
    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        if constrained:
            trial.set_constraint("corner", max(0.5 - x, 0.5 - y))
        return x, y

    study = optuna.create_study(directions=["minimize", "minimize"], sampler=create_sampler(
        name, seed=0, evolution=load_config({"evolution": {"population_size": 4}}).evolution))
    study.optimize(objective, n_trials=trials)
    late = study.trials[trials // 2:]
    return sum(min(t.params["x"], t.params["y"]) >= 0.5 for t in late) / len(late)


@pytest.mark.parametrize("name", [name for name in SAMPLERS if name != "random"])
def test_every_ranking_sampler_honours_the_trials_constraints(name: str) -> None:
    """The objective's ``set_constraint`` values reach every sampler that ranks trials, with no
    ``constraints_func``: it keeps to the feasible region, which it leaves without them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        constrained = _feasible_share(name, constrained=True, trials=22)
        free = _feasible_share(name, constrained=False, trials=22)
    assert constrained > free + 0.2, (constrained, free)


def _install_plugin(root: Path, entry_points: dict[str, dict[str, str]], module: str) -> None:
    """A package in ``root`` as pip leaves one: its module and a dist-info naming its entry points."""
    (root / "energy_plugin.py").write_text(textwrap.dedent(module))
    info = root / "energy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: energy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in entries.items())
        for group, entries in entry_points.items()))


def test_a_plugin_that_does_not_import_is_named_in_one_line(tmp_path, monkeypatch):
    _install_plugin(tmp_path, {"optuna_energy.test_broken": {"bad": "energy_plugin:Missing"}}, "VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry[int] = Registry("number", group="optuna_energy.test_broken", builtins={"one": 1},
                                       accept=lambda name, given: given)
    with pytest.raises(ImportError, match=r"^number plug-in 'bad' = 'energy_plugin:Missing' of energy-plugin "
                                          r"\(entry points optuna_energy.test_broken\) does not load: AttributeError"):
        list(registry)


def test_plugins_by_entry_point_run_and_report_like_built_ins(tmp_path):
    """A package naming a layer kind and a dataset under the entry-point groups: ``run`` searches
    with both (the kind only where the config lists it), ``report`` draws the kind in Fig. 2."""
    plugins = tmp_path / "site"
    plugins.mkdir()
    _install_plugin(plugins, {"optuna_energy.layer_kinds": {"noisy": "energy_plugin:Noisy"},
                              "optuna_energy.datasets": {"blobs": "energy_plugin:SPLITS"}}, '''
        import numpy as np
        from optuna_energy.data import DatasetSource, from_tensors
        from optuna_energy.model.layers import Dropout

        class Noisy(Dropout):
            name, default_space, colour = "noisy", False, "#e5f5e0"
            notation = "noisy0.10: dropout of a plug-in, rate 0.10"

            def describe(self, layer):
                return f"noisy{layer['rate']:.2f}"

        def _splits(section, seed):  # four brightness levels: learnable at once, beyond chance
            rng = np.random.default_rng(seed)
            labels = np.arange(800) % 4
            images = (labels[:, None, None, None] * 80 + rng.integers(0, 16, (800, 1, 8, 8))).astype(np.uint8)
            return from_tensors(images[:600], labels[:600], images[600:], labels[600:], name=section.name)

        SPLITS = DatasetSource(_splits, ("validation",))
    ''')
    config = tiny_config(tmp_path, sampler="random", n_trials=4)
    config["dataset"] = {"name": "blobs"}
    config["space"] |= {"feature_types": ["noisy", "conv"], "feature_slots": 3, "classifier_slots": 1}
    config_path = tmp_path / "plugin.toml"
    config_path.write_text(toml_text(config))
    script = textwrap.dedent(f'''
        import optuna
        from optuna_energy.cli import main
        from optuna_energy.config import load_config
        assert "noisy" not in load_config(None).space.feature_types
        assert main(["run", {str(config_path)!r}]) == 0
        assert main(["report", {str(config_path)!r}, "--out", {str(tmp_path / "report")!r}]) == 0
        study = optuna.load_study(study_name="tiny", storage=load_config({str(config_path)!r}).study.storage)
        print("KINDS", sorted({{layer["kind"] for trial in study.trials
                                for layer in trial.user_attrs.get("architecture", [])}}))
    ''')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), str(REPO)])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'noisy'" in result.stdout.split("KINDS", 1)[1], result.stdout
    assert (tmp_path / "report" / "report.md").exists()
