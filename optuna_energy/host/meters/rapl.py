"""CPU energy from RAPL counters in the Linux powercap tree (Intel, and AMD Zen since Linux 5.8).

Every ``intel-rapl:*`` zone is a directory under the powercap root, whether it is a socket's
package (``name`` = ``package-N``) or one of its subzones (``core``, ``uncore``, ``dram``); a
laptop may add ``psys``, the whole platform. The meter sums the packages over all sockets and
adds ``dram`` where present. ``core`` and ``uncore`` are parts of their package and ``psys``
contains the packages, so counting them would count energy twice.

Window edges are read the moment a counter steps (about every millisecond), so a window holds
whole steps. ``energy_uj`` wraps to zero after ``max_energy_range_uj``; a window sees at most
one wrap only if the counter is read at least once per wrap, so a background thread reads it
often enough for any plausible power.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path
from typing import Any, ClassVar

from optuna_energy.host.meters.base import EnergyMeter, EnergyMeterError

SOURCE = "rapl"
POWERCAP_ROOT_ENV = "OPTUNA_ENERGY_POWERCAP_ROOT"
DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"

_MAX_PLAUSIBLE_WATTS = 1000.0
"""No socket or DRAM domain draws more; sets how often the counters must be read."""
_POLL_BOUNDS_S = (0.05, 60.0)


@dataclasses.dataclass(frozen=True)
class RaplSettings:
    """``[measure.rapl]``: the RAPL meter's settings."""

    table: ClassVar[str] = "rapl"
    powercap_root: str | None = None
    """The powercap tree to read; ``None``: ``$OPTUNA_ENERGY_POWERCAP_ROOT``, else
    ``/sys/class/powercap``."""

    def __post_init__(self) -> None:
        if self.powercap_root is not None and (not isinstance(self.powercap_root, str) or not self.powercap_root):
            raise ValueError(f"powercap_root must be a directory path, got {self.powercap_root!r}")


@dataclasses.dataclass
class _Zone:
    name: str
    counter: Path
    range_uj: int
    last_uj: int


def powercap_root() -> Path:
    """The powercap tree read: ``$OPTUNA_ENERGY_POWERCAP_ROOT`` or ``/sys/class/powercap``."""
    return Path(os.environ.get(POWERCAP_ROOT_ENV) or DEFAULT_POWERCAP_ROOT)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError:
        raise EnergyMeterError(
            f"cannot read {path}: permission denied (RAPL counters are root-only since "
            f"Linux 5.10; run as root or `sudo chmod a+r {path.parent.parent}/intel-rapl:*/energy_uj`)"
        ) from None
    except (OSError, ValueError) as error:
        raise EnergyMeterError(f"cannot read a number from {path}: {error}") from None


def _zone_name(directory: Path) -> str:
    try:
        return (directory / "name").read_text().strip()
    except OSError as error:
        raise EnergyMeterError(f"cannot read {directory / 'name'}: {error}") from None


def _counted(name: str) -> bool:
    return name.startswith("package") or name == "dram"


def _open_zones(root: Path) -> list[_Zone]:
    if not root.is_dir():
        raise EnergyMeterError(f"no powercap tree at {root} (set {POWERCAP_ROOT_ENV} to another root)")
    # Flat symlinks under /sys/class/powercap; nested directories under /sys/devices/virtual/powercap.
    directories = sorted(root.rglob("intel-rapl:*"))
    names = {directory: _zone_name(directory) for directory in directories}
    zones = []
    for directory, name in names.items():
        if _counted(name):
            start = _read_int(directory / "energy_uj")
            zones.append(_Zone(name=name, counter=directory / "energy_uj",
                               range_uj=_read_int(directory / "max_energy_range_uj"), last_uj=start))
    if not any(zone.name.startswith("package") for zone in zones):
        found = ", ".join(sorted(set(names.values()))) or "no intel-rapl:* zones"
        raise EnergyMeterError(f"no RAPL package domain under {root} (found: {found})")
    return zones


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return None


class RaplMeter(EnergyMeter):
    """CPU packages (all sockets) plus DRAM, from the powercap tree.

    Args:
        root: The powercap tree; default :func:`powercap_root`.

    Raises:
        EnergyMeterError: The tree is missing, has no package domain, or cannot be read; the
            message says which and why.
    """

    source = SOURCE
    step_timeout_s = 0.05  # the counters step about every millisecond
    step_poll_s = 0.0005

    def __init__(self, root: str | Path | None = None) -> None:
        super().__init__()
        self._root = Path(root) if root is not None else powercap_root()
        self._zones = _open_zones(self._root)
        self._total_uj = 0
        self._lock = threading.Lock()
        smallest_range_j = min(zone.range_uj for zone in self._zones) / 1e6
        low, high = _POLL_BOUNDS_S
        self._poll_s = min(max(smallest_range_j / _MAX_PLAUSIBLE_WATTS / 2, low), high)
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="rapl-wrap-guard", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(self._poll_s):
            self.total_joules()

    def total_joules(self) -> float:
        with self._lock:
            for zone in self._zones:
                now_uj = _read_int(zone.counter)
                step = now_uj - zone.last_uj
                if step < 0:  # wrapped: the counter runs 0..range_uj, then starts again at 0
                    step += zone.range_uj + 1
                self._total_uj += step
                zone.last_uj = now_uj
            return self._total_uj / 1e6

    def info(self) -> dict[str, Any]:
        limits = [zone.counter.parent / "constraint_0_power_limit_uw" for zone in self._zones
                  if zone.name.startswith("package")]
        try:
            power_limit_w = sum(int(path.read_text()) for path in limits) / 1e6
        except (OSError, ValueError):
            power_limit_w = None
        return {"device_name": _cpu_model(), "domains": [zone.name for zone in self._zones],
                "power_limit_w": power_limit_w, "powercap_root": str(self._root)}

    def close(self) -> None:
        self._stop.set()
        self._poller.join()
