"""The RAPL meter and CPU meter selection, against powercap trees made in temporary directories."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from optuna_energy.host.meters import (
    EnergyEstimateWarning,
    EnergyMeterError,
    RaplMeter,
    select_meter,
)
from optuna_energy.host.meters.rapl import POWERCAP_ROOT_ENV
from tests.powercap_standin import TWO_SOCKETS, PowercapTree

REPO = Path(__file__).resolve().parent.parent
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2  # <linux/prctl.h>, <linux/capability.h>


@pytest.fixture
def tree(tmp_path: Path) -> PowercapTree:
    return PowercapTree(tmp_path / "powercap", TWO_SOCKETS)


def test_packages_and_dram_counted_at_the_known_rate_across_a_wrap(tree: PowercapTree) -> None:
    with RaplMeter(tree.root) as meter, tree.advancing():
        meter.begin_window("w")
        time.sleep(1.0)
        window = meter.end_window("w")
    expected = tree.watts("package-0", "package-1", "dram")
    assert window.watts == pytest.approx(expected, rel=0.03)
    assert window.joules > TWO_SOCKETS["intel-rapl:0"][2] / 1e6  # package-0 wrapped inside


def test_each_wrap_counts_the_range_plus_one_microjoule(tree: PowercapTree) -> None:
    range_uj = TWO_SOCKETS["intel-rapl:0"][2]
    with RaplMeter(tree.root) as meter:
        tree.write("intel-rapl:0", range_uj - 100)
        meter.begin_window("w")
        tree.write("intel-rapl:0", 50)  # wrapped: 100 up to the range, 1 to zero, 50 after
        meter.total_joules()
        tree.write("intel-rapl:0", range_uj - 10)  # no wrap
        tree.write("intel-rapl:2", 5)  # psys moves, but is not counted
        window = meter.end_window("w")
    assert window.joules * 1e6 == pytest.approx(151 + range_uj - 10 - 50)


def test_info_names_the_domains_and_the_package_power_limits(tree: PowercapTree) -> None:
    with RaplMeter(tree.root) as meter:
        info = meter.info()
    assert info["domains"] == ["package-0", "dram", "package-1"]
    assert info["power_limit_w"] == 250.0
    assert info["powercap_root"] == str(tree.root)


def test_zones_are_found_nested_as_under_sys_devices(tmp_path: Path) -> None:
    nested = {"intel-rapl:0": ("package-0", 1.0, 10**9), "intel-rapl:0/intel-rapl:0:0": ("dram", 1.0, 10**9)}
    with RaplMeter(PowercapTree(tmp_path / "intel-rapl", nested).root) as meter:
        assert meter.info()["domains"] == ["package-0", "dram"]


def test_selection_on_cpu_reads_the_root_from_the_environment(
        tree: PowercapTree, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POWERCAP_ROOT_ENV, str(tree.root))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a working meter is chosen without a word
        meter = select_meter("cpu")
    with meter:
        assert isinstance(meter, RaplMeter) and meter.source == "rapl"


def test_selection_falls_back_to_the_estimate_without_a_tree(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POWERCAP_ROOT_ENV, str(tmp_path / "absent"))
    with pytest.warns(EnergyEstimateWarning) as caught:
        assert select_meter("cpu").source == "estimate"
    assert str(caught[0].message) == (
        f"no hardware energy meter works for device 'cpu' (rapl: no powercap tree at "
        f"{tmp_path / 'absent'} (set OPTUNA_ENERGY_POWERCAP_ROOT to another root)); energy per "
        "inference is the analytical estimate (energy_source='estimate')"
    )


def test_selection_falls_back_when_only_psys_is_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    laptop = PowercapTree(tmp_path / "powercap", {"intel-rapl:0": ("psys", 9.0, 10**9)})
    monkeypatch.setenv(POWERCAP_ROOT_ENV, str(laptop.root))
    with pytest.warns(EnergyEstimateWarning, match=r"no RAPL package domain under .* \(found: psys\)"):
        assert select_meter("cpu").source == "estimate"


def test_a_device_no_meter_knows_gets_the_estimate() -> None:
    with pytest.warns(EnergyEstimateWarning, match="device 'mps' .no meter knows this kind of device"):
        assert select_meter("mps").source == "estimate"


def _without_root_read_override() -> None:
    """In the child, before exec: drop the capabilities that let root read any file."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_unreadable_counters_fall_back_and_say_why(tree: PowercapTree) -> None:
    """Counters readable only by root, as since Linux 5.10, read by a process that may not."""
    for directory in TWO_SOCKETS:
        os.chmod(tree.root / directory / "energy_uj", 0o000)
    code = ("import warnings; warnings.simplefilter('always'); "
            "from optuna_energy.host.meters import select_meter; print(select_meter('cpu').source)")
    env = {**os.environ, POWERCAP_ROOT_ENV: str(tree.root), "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
        check=True, preexec_fn=_without_root_read_override if os.geteuid() == 0 else None)
    assert result.stdout.strip() == "estimate"
    assert (f"(rapl: cannot read {tree.root}/intel-rapl:0/energy_uj: permission denied (RAPL "
            f"counters are root-only since Linux 5.10; run as root or `sudo chmod a+r "
            f"{tree.root}/intel-rapl:*/energy_uj`)); energy per inference is the analytical "
            "estimate") in result.stderr


def test_a_stuck_counter_is_an_error_not_zero_joules(tree: PowercapTree) -> None:
    with RaplMeter(tree.root) as meter:
        meter.begin_window("w")
        with pytest.raises(EnergyMeterError, match=r"rapl counted 0 J in the .* window 'w': its "
                                                   "counter is not advancing"):
            meter.end_window("w")
