"""The conformance suite of an energy meter (``optuna_energy.host.meters.EnergyMeter``)."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest

from optuna_energy.config import load_config
from optuna_energy.host.meters import EnergyMeter, Work, settings_from_keywords, settings_tables

_WORK = Work(macs=1000, params=100, activations=10, batch_size=1, images=10)
"""What a window says ran, for a meter that estimates; counting meters ignore it."""


class MeterSuite:
    """Checks every meter must pass. Subclass it as ``Test<YourMeter>`` and give it fixtures:

    - ``meter``: a fresh, open meter for each check (the suite closes it).

    A meter with settings also derives :class:`MeterSettingsSuite`.
    """

    sleep_s = 0.15
    """How long a window runs: longer than a counter step, short enough for a test."""

    def test_counter_never_decreases_or_windows_follow_their_work(self, meter: EnergyMeter) -> None:
        """A hardware counter only grows; a meter that counts nothing computes a window's joules
        from the work it says ran, so twice the work costs more."""
        if not meter.counts_hardware:
            with meter:
                joules = []
                for scale in (1, 2):
                    meter.begin_window("conformance")
                    joules.append(meter.end_window("conformance", work=dataclasses.replace(
                        _WORK, macs=_WORK.macs * scale, images=_WORK.images * scale)).joules)
            assert 0 < joules[0] < joules[1], joules
            return
        with meter:
            readings = []
            for _ in range(5):
                readings.append(meter.total_joules())
                time.sleep(self.sleep_s / 5)
        assert all(later >= earlier for earlier, later in zip(readings, readings[1:])), readings

    def test_a_window_has_joules_and_the_seconds_the_clock_saw(self, meter: EnergyMeter) -> None:
        with meter:
            before = time.perf_counter()
            meter.begin_window("conformance")
            time.sleep(self.sleep_s)
            window = meter.end_window("conformance", work=_WORK)
            wall = time.perf_counter() - before
        assert window.joules >= 0
        assert self.sleep_s <= window.seconds <= wall, (window.seconds, wall)

    def test_a_window_name_is_used_once_at_a_time(self, meter: EnergyMeter) -> None:
        with meter:
            meter.begin_window("conformance")
            with pytest.raises(ValueError, match="already open"):
                meter.begin_window("conformance")
            meter.cancel_window("conformance")
            with pytest.raises(ValueError, match="never opened"):
                meter.end_window("conformance")

    def test_close_is_idempotent(self, meter: EnergyMeter) -> None:
        meter.close()
        meter.close()

    def test_info_is_json(self, meter: EnergyMeter) -> None:
        with meter:
            info = meter.info()
        assert isinstance(info, dict)
        assert json.loads(json.dumps(info)) == info


class MeterSettingsSuite:
    """Checks a meter with settings adds to :class:`MeterSuite`: give it a ``settings`` fixture,
    an instance of the meter's settings dataclass with values other than the defaults; the meter
    must be registered (``optuna_energy.host.meters.register``) for the config to read them."""

    def test_settings_round_trip_through_the_config_and_keywords(self, settings: Any) -> None:
        """``[measure.<table>]`` and the stored config give the settings back, and so do
        ``EnergyMonitor``'s keywords."""
        values = dataclasses.asdict(settings)  # a frozen dataclass, as register checks
        table = type(settings).table
        assert settings_tables().get(table) is type(settings), \
            f"settings table {table!r} is not registered: optuna_energy.host.meters.register the meter"
        config = load_config({"measure": {table: values}})
        assert config.measure.meters[table] == settings
        assert load_config(config.to_dict()).measure.meters[table] == settings
        assert settings in settings_from_keywords(values)
