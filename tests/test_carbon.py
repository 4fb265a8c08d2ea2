"""Energy in grams of CO2e: the units, the setting, the budget in grams and the report's lines."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import optuna_energy
from optuna_energy.carbon import (
    JOULES_PER_KWH,
    MAX_INTENSITY_G_PER_KWH,
    co2e_grams,
    format_co2e,
    joules_of_co2e,
)
from optuna_energy.config import CarbonSection, ConfigError, StudyConfig, StudySection, load_config
from optuna_energy.reading.report import build_report, payback_text
from optuna_energy.reading.savings import Savings, savings, savings_text
from optuna_energy.store.budget import counts
from optuna_energy.store.record import TrialRecord, carbon_intensity
from optuna_energy.store.training_budget import spent
from optuna_energy.trial import early_stopping
from tests.helpers import tiny_config

INTENSITY = 400.0


def test_a_kilowatt_hour_emits_the_intensity_and_a_budget_in_grams_is_its_joules() -> None:
    assert co2e_grams(JOULES_PER_KWH, intensity_g_per_kwh=INTENSITY) == pytest.approx(INTENSITY)
    assert joules_of_co2e(INTENSITY / 2, intensity_g_per_kwh=INTENSITY) == pytest.approx(JOULES_PER_KWH / 2)
    for joules in (1e-3, 2.5, 7e6):
        grams = co2e_grams(joules, intensity_g_per_kwh=INTENSITY)
        assert joules_of_co2e(grams, intensity_g_per_kwh=INTENSITY) == pytest.approx(joules)


@pytest.mark.parametrize(("grams", "shown"), [
    (4.2e-3, "4.2 mg CO2e"), (8.21e-7, "0.821 µg CO2e"), (1e-9, "0.001 µg CO2e"), (0.5, "500 mg CO2e"),
    (12.34, "12.3 g CO2e"), (1234.0, "1.23 kg CO2e"), (2.5e6, "2.5 t CO2e"), (0.0, "0 g CO2e")])
def test_grams_are_shown_in_the_largest_unit_they_reach(grams: float, shown: str) -> None:
    assert format_co2e(grams) == shown


def test_no_intensity_no_carbon() -> None:
    config = load_config(None)
    assert config.carbon.intensity_g_per_kwh is None and config.study.max_train_energy is None
    found = savings(optuna_energy.create_study(objectives=["accuracy", "energy"]))
    assert found.carbon_intensity is None and "CO2e" not in savings_text(found)


def test_the_savings_line_shows_the_grams_of_what_was_trained_and_saved() -> None:
    found = Savings(evaluated=3, stopped={1: 2}, epochs=5, epochs_if_full=9, joules=3600.0,
                    joules_if_full=10800.0, carbon_intensity=INTENSITY)  # 1 Wh is 0.4 g at 400 g/kWh
    assert savings_text(found).endswith(
        "they trained 5 epochs (3600 J, 400 mg CO2e) where training every one fully would have taken 9 "
        "(1.08e+04 J, 1.2 g CO2e), saving 4 epochs (44 %) and 7200 J (800 mg CO2e).")


@pytest.mark.parametrize(("raw", "message"), [
    ({"study": {"max_train_co2e_g": 5}},
     "[study] max_train_co2e_g must come with [carbon] intensity_g_per_kwh (grams of CO2e per kWh "
     "of your electricity) to be a budget in joules"),
    ({"study": {"max_train_co2e_g": 5, "max_train_energy": 100}, "carbon": {"intensity_g_per_kwh": 300}},
     "[study] max_train_energy and max_train_co2e_g are one budget in joules or in grams of CO2e: "
     "give one of them"),
    ({"carbon": {"intensity_g_per_kwh": 380_000}},
     f"[carbon] intensity_g_per_kwh must be grams of CO2e per kWh, > 0 and <= "
     f"{MAX_INTENSITY_G_PER_KWH:g}, got 380000.0"),
    ({"carbon": {"intensity_g_per_kwh": "380"}}, "[carbon] intensity_g_per_kwh must be float, got '380'"),
    ({"carbon": {"intensity": 380}}, "unknown key 'intensity' in [carbon]; allowed: intensity_g_per_kwh"),
])
def test_bad_carbon_settings_are_one_line_errors(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(raw)
    assert str(error.value) == message


def test_the_carbon_budget_is_the_joule_budget_at_the_intensity_through_every_way_in() -> None:
    expected = joules_of_co2e(2.0, intensity_g_per_kwh=INTENSITY)
    from_file = load_config({"study": {"max_train_co2e_g": 2.0}, "carbon": {"intensity_g_per_kwh": INTENSITY}})
    by_api = StudyConfig(study=StudySection(max_train_co2e_g=2.0), carbon=CarbonSection(INTENSITY))
    for config in (from_file, by_api):
        assert early_stopping.training_budget(config).max_joules == pytest.approx(expected)
    with pytest.raises(ConfigError, match=r"^\[study\] max_train_co2e_g must come with"):
        StudyConfig(study=StudySection(max_train_co2e_g=2.0))
    # The stored config keeps the budget in grams, and a changed budget converts afresh.
    assert from_file.to_dict()["study"]["max_train_energy"] is None
    assert load_config(from_file.to_dict()).study.max_train_energy == pytest.approx(expected)
    assert from_file.with_study(max_train_co2e_g=6.0).study.max_train_energy == pytest.approx(3 * expected)
    assert from_file.with_study(n_trials=7).study.max_train_energy == pytest.approx(expected)


def test_your_own_study_reports_its_training_in_grams_too() -> None:
    with pytest.raises(ValueError, match=r"^intensity_g_per_kwh must be grams of CO2e per kWh"):
        optuna_energy.create_study(objectives=["accuracy", "energy"], carbon_intensity_g_per_kwh=0)
    study = optuna_energy.create_study(objectives=["accuracy", "energy"], carbon_intensity_g_per_kwh=INTENSITY)
    for joules, accuracy, energy in ((900.0, 0.9, 2e-6), (2700.0, 0.8, 1e-6)):
        study.add_trial(create_trial(
            state=TrialState.COMPLETE, values=[accuracy, energy], params={"x": 0.5},
            distributions={"x": FloatDistribution(0, 1)},
            user_attrs={"train_energy_j": joules, "epochs_trained": 3, "accuracy": accuracy,
                        "energy_per_inference_j": energy, "energy_source": "estimate"}))
    report = build_report(study)
    # 3600 J is 1 Wh: 0.4 g at 400 g/kWh.
    assert payback_text(report).startswith(
        "The search spent 3600 J training (400 mg CO2e at 400 g CO2e/kWh; energy source: estimate).")
    assert savings_text(report.savings).endswith("trained 6 epochs (3600 J, 400 mg CO2e).")


def test_a_budget_in_grams_stops_a_digits_study_and_its_savings_line_says_what_it_emitted(
        tmp_path: Path) -> None:
    # About a tenth of a trial's joules on the estimate (one small epoch): the budget runs out
    # within a few trials.
    budget_g = co2e_grams(0.01, intensity_g_per_kwh=INTENSITY)
    raw = tiny_config(tmp_path, n_trials=4, max_train_co2e_g=budget_g)
    raw["training"] = {"epochs": 3, "batch_sizes": [32]}
    raw["carbon"] = {"intensity_g_per_kwh": INTENSITY}
    optuna_energy.run_study(raw, show_progress_bar=False)

    study = optuna.load_study(study_name="tiny", storage=raw["study"]["storage"])  # the database alone
    counted = [t for t in study.trials if counts(t)]
    records = [TrialRecord.of(t) for t in study.trials]
    emitted = co2e_grams(spent(counted).joules, intensity_g_per_kwh=INTENSITY)
    most = max(co2e_grams(r.train_energy_j or 0.0, intensity_g_per_kwh=INTENSITY) for r in records)
    assert 0 < emitted <= budget_g + most  # one worker overshoots by at most the stretch in flight
    assert any(r.stop_reason == "training energy budget used" or r.over_budget for r in records)
    # The joules left pay no trial's epoch: the run ends instead of measuring trials it cannot train.
    assert len(records) < 4 and all(r.epochs_trained for r in records)

    assert carbon_intensity(study) == INTENSITY
    shown = format_co2e(emitted)
    assert re.search(rf"trained \d+ epochs \([\d.e+-]+ J, {re.escape(shown)}\)", savings_text(savings(study)))
