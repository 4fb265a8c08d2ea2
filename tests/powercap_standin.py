"""A stand-in for the Linux powercap tree (RAPL counters), for machines where it is missing or
unreadable: counters in a temporary directory that a thread advances at known watts. Used by the
RAPL meter tests and the meter conformance suite."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path


class PowercapTree:
    """A powercap tree whose ``energy_uj`` counters a helper thread advances at known watts.

    ``zones`` maps a directory name (``intel-rapl:0``) to its ``name`` file, its watts and
    its ``max_energy_range_uj``; every counter wraps to zero past its range, as the kernel's do.
    """

    def __init__(self, root: Path, zones: dict[str, tuple[str, float, int]]) -> None:
        self.root = root
        self.zones = zones
        (root / "intel-rapl").mkdir(parents=True)  # the control type directory, not a zone
        for directory, (name, _, range_uj) in zones.items():
            (root / directory).mkdir()
            (root / directory / "name").write_text(f"{name}\n")
            (root / directory / "max_energy_range_uj").write_text(f"{range_uj}\n")
            (root / directory / "constraint_0_power_limit_uw").write_text("125000000\n")
            self.write(directory, range_uj - 1000)

    def write(self, directory: str, microjoules: int) -> None:
        """Replace a counter atomically, so a reader never sees half a number."""
        scratch = self.root / directory / "energy_uj.tmp"
        scratch.write_text(f"{microjoules}\n")
        os.replace(scratch, self.root / directory / "energy_uj")

    def watts(self, *names: str) -> float:
        return sum(watts for name, watts, _ in self.zones.values() if name in names)

    @contextlib.contextmanager
    def advancing(self) -> Iterator[None]:
        """Advance every counter from its current value at its zone's watts, every 2 ms."""
        stop = threading.Event()
        start = time.perf_counter()
        origin = {directory: range_uj - 1000 for directory, (_, _, range_uj) in self.zones.items()}

        def run() -> None:
            while not stop.wait(0.002):
                elapsed = time.perf_counter() - start
                for directory, (_, watts, range_uj) in self.zones.items():
                    self.write(directory, (origin[directory] + int(watts * 1e6 * elapsed)) % (range_uj + 1))

        writer = threading.Thread(target=run, daemon=True)
        writer.start()
        try:
            yield
        finally:
            stop.set()
            writer.join()


TWO_SOCKETS = {
    "intel-rapl:0": ("package-0", 30.0, 20_000_000),  # wraps every 0.67 s at 30 W
    "intel-rapl:0:0": ("core", 10.0, 10**12),  # part of package-0: not counted again
    "intel-rapl:0:1": ("dram", 5.0, 10**12),
    "intel-rapl:1": ("package-1", 15.0, 10**12),
    "intel-rapl:2": ("psys", 80.0, 10**12),  # the whole platform: would count packages twice
}
