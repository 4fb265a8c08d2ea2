"""Every built-in meter and metric passes the conformance suites a plug-in author runs on theirs
(``optuna_energy.testing``): the NVML meters on the NVML stand-in, RAPL on a powercap tree in a
temporary directory, the estimate as it is."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from optuna_energy.host.meters import (
    EnergyMeter,
    EstimateMeter,
    NvmlCounterMeter,
    NvmlPowerMeter,
    NvmlSettings,
    RaplMeter,
    RaplSettings,
)
from optuna_energy.metrics import METRICS, Metric
from optuna_energy.testing import MeterSettingsSuite, MeterSuite, MetricSuite
from tests.nvml_standin import FakeNvml
from tests.powercap_standin import TWO_SOCKETS, PowercapTree
from tests.test_energy_nvml import SECOND_GPU


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


class TestNvmlCounterMeter(MeterSuite, MeterSettingsSuite):
    @pytest.fixture
    def meter(self, nvml: FakeNvml) -> EnergyMeter:
        return NvmlCounterMeter(SECOND_GPU)

    @pytest.fixture
    def settings(self) -> NvmlSettings:
        return NvmlSettings(power_interval_s=0.05)


class TestNvmlPowerMeter(MeterSuite, MeterSettingsSuite):
    @pytest.fixture
    def meter(self, nvml: FakeNvml) -> EnergyMeter:
        return NvmlPowerMeter(SECOND_GPU, interval_s=0.02)

    @pytest.fixture
    def settings(self) -> NvmlSettings:
        return NvmlSettings(power_interval_s=0.05)


class TestRaplMeter(MeterSuite, MeterSettingsSuite):
    @pytest.fixture
    def meter(self, tmp_path: Path) -> Iterator[EnergyMeter]:
        tree = PowercapTree(tmp_path / "powercap", TWO_SOCKETS)
        with tree.advancing():
            yield RaplMeter(tree.root)

    @pytest.fixture
    def settings(self, tmp_path: Path) -> RaplSettings:
        return RaplSettings(powercap_root=str(tmp_path))


class TestEstimateMeter(MeterSuite):
    @pytest.fixture
    def meter(self) -> EnergyMeter:
        return EstimateMeter()


class TestBuiltInMetrics(MetricSuite):
    @pytest.fixture(params=list(METRICS))
    def metric(self, request: pytest.FixtureRequest) -> Metric:
        return METRICS[request.param]
