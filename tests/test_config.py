"""Config loading: shipped studies load, overrides apply, values are typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from optuna_energy.config import ConfigError, StudyConfig, load_config
from optuna_energy.host.meters import NvmlSettings, RaplSettings

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


def test_meter_settings_come_from_their_tables_and_round_trip():
    config = load_config({"measure": {"nvml": {"power_interval_s": 0.05}, "rapl": {"powercap_root": "/pc"}}})
    assert config.measure.meters == {"nvml": NvmlSettings(power_interval_s=0.05),
                                     "rapl": RaplSettings(powercap_root="/pc")}
    assert config.to_dict()["measure"]["nvml"] == {"power_interval_s": 0.05}
    assert load_config(config.to_dict()) == config
    assert load_config({}).measure.meters == {"nvml": NvmlSettings(), "rapl": RaplSettings()}


def test_the_old_power_interval_key_is_the_nvml_tables():
    assert load_config({"measure": {"power_interval_s": 0.5}}).measure.meters["nvml"] == NvmlSettings(0.5)
    with pytest.raises(ConfigError, match=r"^\[measure\] power_interval_s is \[measure.nvml\] power_interval_s "
                                          "now: give it once, there$"):
        load_config({"measure": {"power_interval_s": 0.5, "nvml": {"power_interval_s": 0.2}}})


@pytest.mark.parametrize(("measure", "message"), [
    ({"nvml": {"power_interval_s": 0}}, r"\[measure.nvml\] power_interval_s must be a number of seconds > 0, got 0.0"),
    ({"power_interval_s": -1}, r"\[measure.nvml\] power_interval_s must be a number of seconds > 0, got -1.0"),
    ({"nvml": {"interval": 1}}, r"unknown key 'interval' in \[measure.nvml\]; allowed: power_interval_s"),
    ({"nvml": 0.1}, r"\[measure.nvml\] must be a table of keys, got 0.1"),
    ({"rapl": {"powercap_root": 3}}, r"\[measure.rapl\] powercap_root must be str, got 3"),
    ({"nvlm": {}}, r"unknown key 'nvlm' in \[measure\]; allowed: .*meter, min_window_seconds, nvml, "
                   "power_interval_s, rapl, warmup_batches"),
    ({"meter": "joulemeter"}, r"\[measure\] meter is 'joulemeter'; allowed: auto, nvml-counter, nvml-power, "
                              "rapl, estimate"),
])
def test_a_bad_meter_setting_is_one_line_naming_its_table(measure, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        load_config({"measure": measure})
