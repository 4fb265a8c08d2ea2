"""Config loading: shipped studies load, overrides apply, values are typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from optuna_energy.config import ConfigError, StudyConfig, load_config

STUDIES = sorted((Path(__file__).parents[1] / "studies").glob("*.toml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.name for p in STUDIES])
def test_shipped_studies_load(path):
    config = load_config(path)
    assert len(config.study.objectives) >= 2


def test_default_is_the_embedded_digits_study_in_sqlite():
    config = load_config()
    assert config.dataset.name == "digits"
    assert config.study.storage == "sqlite:///optuna_energy.db"
    assert config.directions == ["maximize", "minimize", "minimize", "minimize"]
    assert load_config(config) is config


def test_lists_become_tuples_and_ints_widen_to_floats():
    config = load_config({"training": {"learning_rate": [1, 2], "batch_sizes": [16]},
                          "study": {"timeout": 60}})
    assert config.training.learning_rate == (1.0, 2.0)
    assert config.training.batch_sizes == (16,)
    assert config.study.timeout == 60.0


def test_overrides_replace_study_keys_and_ignore_none():
    config = load_config().with_study(n_trials=7, seed=None, objectives=("accuracy", "params"))
    assert (config.study.n_trials, config.study.seed) == (7, 0)
    assert config.directions == ["maximize", "minimize"]
    with pytest.raises(ConfigError, match=r"\[study\] n_trials must be > 0, got -1"):
        config.with_study(n_trials=-1)


def test_a_section_must_be_a_table():
    with pytest.raises(ConfigError, match=r"\[space\] must be a table of keys"):
        load_config({"space": 3})
    with pytest.raises(ConfigError, match="unknown key 'sapce' in the config's top level"):
        load_config({"sapce": {}})


def test_booleans_are_not_numbers():
    with pytest.raises(ConfigError, match=r"\[training\] epochs must be int, got True"):
        load_config({"training": {"epochs": True}})
    assert isinstance(load_config({}), StudyConfig)
