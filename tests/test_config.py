"""Config loading: shipped studies load, overrides apply, values are typed."""

from __future__ import annotations

import dataclasses
import math
import re
import threading
from pathlib import Path

import pytest

from optuna_energy.config import MAX_SECONDS, ConfigError, StudyConfig, load_config
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
    ({"nvml": {"power_interval_s": 0}},
     r"\[measure.nvml\] power_interval_s must be a number of seconds > 0 and <= 3600, got 0.0"),
    ({"power_interval_s": -1},
     r"\[measure.nvml\] power_interval_s must be a number of seconds > 0 and <= 3600, got -1.0"),
    ({"nvml": {"interval": 1}}, r"unknown key 'interval' in \[measure.nvml\]; allowed: power_interval_s"),
    ({"nvml": 0.1}, r"\[measure.nvml\] must be a table of keys, got 0.1"),
    ({"rapl": {"powercap_root": 3}}, r"\[measure.rapl\] powercap_root must be str, got 3"),
    ({"nvlm": {}}, r"unknown key 'nvlm' in \[measure\]; allowed: .*meter, min_window_seconds, nvml, "
                   "power_interval_s, rapl, remeasure_windows, warmup_batches, windows"),
    ({"meter": "joulemeter"}, r"\[measure\] meter is 'joulemeter'; allowed: auto, nvml-counter, nvml-power, "
                              "rapl, estimate"),
])
def test_a_bad_meter_setting_is_one_line_naming_its_table(measure, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        load_config({"measure": measure})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e308])
def test_a_meter_setting_must_be_finite_and_in_range(value):
    with pytest.raises(ConfigError, match=r"^\[measure.nvml\] power_interval_s must be (a finite number|"
                                          r"a number of seconds > 0 and <= 3600), got "):
        load_config({"measure": {"nvml": {"power_interval_s": value}}})


def _numeric_keys() -> list[tuple[str, str, type, int | None]]:
    """(section, key, number type, position in a list key or None) of every numeric key of
    every section, discovered from the sections' dataclasses."""
    found = []
    defaults = StudyConfig()
    for section in dataclasses.fields(StudyConfig):
        values = getattr(defaults, section.name)
        for field in dataclasses.fields(values):
            annotation = str(field.type)
            kind = float if "float" in annotation else int if re.search(r"\bint\b", annotation) else None
            if kind is None:
                continue
            default = getattr(values, field.name)
            positions = range(len(default)) if isinstance(default, tuple) else [None]
            found += [(section.name, field.name, kind, position) for position in positions]
    return found


NUMERIC_KEYS = _numeric_keys()
HUGE = {float: 1e308, int: 2**63 - 1}
"""The largest float and the largest integer TOML can write."""


def _load_with(section: str, key: str, position: int | None, value: object) -> tuple[StudyConfig, object]:
    """The config with one key (or one entry of a list key) replaced, and what the key became."""
    given: object = value
    if position is not None:
        entries = list(getattr(getattr(StudyConfig(), section), key))
        entries[position] = value
        given = entries
    loaded = getattr(getattr(load_config({section: {key: given}}), section), key)
    return loaded, loaded if position is None else loaded[position]


def test_numeric_keys_are_discovered_from_every_section():
    sections = {section for section, *_ in NUMERIC_KEYS}
    assert sections == {field.name for field in dataclasses.fields(StudyConfig)}
    assert {("study", "max_train_energy"), ("study", "timeout"), ("measure", "min_window_seconds"),
            ("measure", "idle_seconds"), ("constraints", "max_params"),
            ("storage", "reconnect_timeout")} <= {(section, key) for section, key, *_ in NUMERIC_KEYS}


@pytest.mark.parametrize(("section", "key", "kind", "position"), NUMERIC_KEYS,
                         ids=[f"{s}.{k}" + ("" if p is None else f"[{p}]") for s, k, _, p in NUMERIC_KEYS])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0, -1, "huge"])
def test_every_numeric_key_is_finite_and_in_its_range(section, key, kind, position, value):
    """Not-a-number and infinities are refused for every key; zero, negative and huge values are
    refused with a line naming the key and what is allowed, or stored as given."""
    value = HUGE[kind] if value == "huge" else kind(value) if math.isfinite(value) else value
    try:
        _, stored = _load_with(section, key, position, value)
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message
        assert message.startswith(f"[{section}] ") and key in message, message
        assert re.search(r"must|allowed|apply only", message), message
        if isinstance(value, float) and not math.isfinite(value):
            assert ("finite" if kind is float else "must be int") in message
        return
    assert math.isfinite(value), f"[{section}] {key} accepted {value}"
    assert stored == value and type(stored) is kind


SECONDS = re.compile(r"seconds|_s$|timeout|interval|grace_period")


@pytest.mark.parametrize(("section", "key"), [(s, k) for s, k, _, p in NUMERIC_KEYS if SECONDS.search(k)])
def test_every_key_in_seconds_stops_where_waits_overflow(section, key):
    with pytest.raises(ConfigError, match=rf"^\[{section}\] {key}.* <= \d+, got 10000000000") as refused:
        load_config({section: {key: 10**10}})
    longest = int(re.search(r"<= (\d+)", str(refused.value)).group(1))
    assert longest <= MAX_SECONDS < threading.TIMEOUT_MAX


def test_python_integers_beyond_any_float_are_refused_where_floats_go():
    with pytest.raises(ConfigError, match=r"\[study\] timeout must be a finite number, got inf"):
        load_config({"study": {"timeout": 10**400}})
