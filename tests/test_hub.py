"""The OptunaHub packages in ``hub/``: laid out as the registry wants them, loaded as it loads
them (``optunahub.load_local_module``), re-exporting optuna-energy's one copy of the code, and
their README and ``example.py`` code runs."""

from __future__ import annotations

import importlib.abc
import re
import runpy
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import optuna
import optunahub
import pytest
import yaml
from optuna.trial import TrialState
from packaging.requirements import Requirement

import optuna_energy

REPO = Path(__file__).resolve().parents[1]
HUB = REPO / "hub"
PACKAGES = sorted(init.parent.relative_to(HUB).as_posix() for init in HUB.glob("*/*/__init__.py"))
FRONT_MATTER = ("author", "title", "description", "tags", "optuna_versions", "license")
CATEGORY_TAG = {"samplers": "sampler", "pruners": "pruner"}
"""The tag the registry requires of a package in each category."""


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``optunahub.load_module`` reads ``hub/`` instead of the published registry; the packages
    loaded are listed."""
    loaded: list[str] = []

    def load_module(package: str, **_: object) -> ModuleType:
        loaded.append(package)
        return optunahub.load_local_module(package=package, registry_root=str(HUB))

    monkeypatch.setattr(optunahub, "load_module", load_module)
    return loaded


class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, *_: object) -> None:
        if name == "optuna_energy":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def _readme(package: str) -> tuple[dict[str, object], str]:
    """The README's front matter and its Markdown body."""
    text = (HUB / package / "README.md").read_text()
    match = re.match(r"---\n(.*?)\n---\n(.*)", text, re.S)
    assert match is not None, f"{package}/README.md does not start with the registry's front matter"
    return yaml.safe_load(match.group(1)), match.group(2)


def test_both_packages_are_found() -> None:
    assert {"samplers/conditional_evolution", "pruners/multi_objective_early_stopping"} <= set(PACKAGES)
    assert {package.split("/")[0] for package in PACKAGES} <= set(CATEGORY_TAG)


@pytest.mark.parametrize("package", PACKAGES)
def test_the_package_loads_and_is_optuna_energys_own(package: str) -> None:
    module = optunahub.load_local_module(package=package, registry_root=str(HUB))
    assert module.__name__ == f"optunahub_registry.package.{package.replace('/', '.')}"
    assert module.__all__
    for name in module.__all__:
        assert getattr(module, name) is getattr(optuna_energy, name)


@pytest.mark.parametrize("package", PACKAGES)
def test_without_optuna_energy_the_package_says_what_to_install(package: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # As if it were not installed: none of it imported, and importing it fails as Python does.
    for name in [name for name in sys.modules if name.split(".")[0] == "optuna_energy"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NotInstalled(), *sys.meta_path])
    with pytest.raises(ModuleNotFoundError, match=r"needs optuna-energy: pip install optuna-energy$"):
        optunahub.load_local_module(package=package, registry_root=str(HUB))


@pytest.mark.parametrize("package", PACKAGES)
def test_the_registry_files_are_there_and_filled_in(package: str) -> None:
    front, body = _readme(package)
    empty = [key for key in FRONT_MATTER if front.get(key) in (None, "", [])]
    assert not empty, f"{package}/README.md front matter lacks {empty}"
    assert CATEGORY_TAG[package.split("/")[0]] in front["tags"]  # type: ignore[operator]
    assert front["license"] == "MIT License"
    # The registry strips HTML from a README; Markdown only.
    assert not re.findall(r"<[A-Za-z/!][^>]*>", body)
    licence = (HUB / package / "LICENSE").read_text()
    assert licence.startswith("MIT License\n") and "optuna-energy contributors" in licence
    # The requirement names this package, in a range its current version is in.
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    requirements = [Requirement(line) for line in (HUB / package / "requirements.txt").read_text().splitlines()]
    assert [requirement.name for requirement in requirements] == ["optuna-energy"]
    assert requirements[0].specifier.contains(version)


@pytest.mark.parametrize("package", PACKAGES)
def test_the_readme_example_runs(package: str, hub: list[str]) -> None:
    _, body = _readme(package)
    example = body.split("## Example", 1)[1]
    code = re.search(r"```python\n(.*?)```", example, re.S)
    assert code is not None
    exec(compile(code.group(1), f"{package}/README.md", "exec"), {"__name__": "__main__"})
    assert hub == [package]


def _run_example(package: str) -> dict[str, object]:
    return runpy.run_path(str(HUB / package / "example.py"), run_name="__main__")


def test_the_sampler_example_breeds_within_the_limit(hub: list[str]) -> None:
    example = _run_example("samplers/conditional_evolution")
    assert hub == ["samplers/conditional_evolution"]
    study = example["study"]
    assert isinstance(study, optuna.Study)
    # Every trial after the random first population (16) is bred from two earlier ones.
    assert [trial.number for trial in study.trials if trial.user_attrs["parents"]] == list(range(16, 100))
    assert all(max(trial.user_attrs["parents"]) < trial.number for trial in study.trials[16:])
    assert any(trial.constraints["cost"] > 0 for trial in study.trials)  # the limit does bind
    assert study.best_trials and all(trial.values[1] <= example["MAX_COST"] for trial in study.best_trials)


def test_the_stopper_example_stops_diverging_trials_in_a_multi_objective_study(hub: list[str]) -> None:
    example = _run_example("pruners/multi_objective_early_stopping")
    assert hub == ["pruners/multi_objective_early_stopping"]
    study = example["study"]
    assert isinstance(study, optuna.Study) and len(study.directions) == 2
    diverging = [trial for trial in study.trials if trial.params["learning_rate"] > 0.3]
    assert diverging and all(trial.state == TrialState.PRUNED for trial in diverging)
    complete = study.get_trials(states=[TrialState.COMPLETE])
    assert complete and all(trial.values[0] > 1 / example["CLASSES"] for trial in complete)


def test_the_projects_readme_names_a_package_that_loads(hub: list[str]) -> None:
    section = (REPO / "README.md").read_text().split("## On OptunaHub", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    scope: dict[str, object] = {"optunahub": optunahub}
    exec(compile(code.group(1), "README.md", "exec"), scope)
    assert hub == ["samplers/conditional_evolution"]
    assert isinstance(scope["sampler"], optuna_energy.EvolutionSampler)
