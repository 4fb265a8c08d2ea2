"""Analytical energy estimate: the fallback when no hardware meter can be read.

Energy = arithmetic + memory traffic, with the per-operation energies of M. Horowitz,
"Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm:
a 32-bit float multiply costs 3.7 pJ and an add 0.9 pJ (one MAC = 4.6 pJ); reading 32 bits
from DRAM costs 640 pJ (160 pJ per byte). Each inference reads the weights once per batch and
writes and reads every activation once. Absolute numbers are only indicative (modern chips are
several times more efficient); the estimate ranks architectures consistently, which is what a
search needs, and every trial says when it was used (``energy_source = "estimate"``).
"""

from __future__ import annotations

import time
from typing import Any

from optuna_energy.host.meters.base import EnergyMeter, EnergyWindow, Work

SOURCE = "estimate"

JOULES_PER_MAC = 4.6e-12
JOULES_PER_DRAM_BYTE = 160e-12
BYTES_PER_VALUE = 4  # float32
TRAINING_MAC_FACTOR = 3  # forward, plus backward for inputs and for weights


def inference_joules(*, macs: int, params: int, activations: int, batch_size: int) -> float:
    """Estimated joules for one image at the given inference batch size."""
    traffic = BYTES_PER_VALUE * (params / batch_size + 2 * activations)
    return macs * JOULES_PER_MAC + traffic * JOULES_PER_DRAM_BYTE


def training_joules(*, macs: int, params: int, activations: int, batch_size: int, images: int) -> float:
    """Estimated joules to train on ``images`` images (epochs times training-set size)."""
    per_image = TRAINING_MAC_FACTOR * inference_joules(
        macs=macs, params=params, activations=activations, batch_size=batch_size
    )
    return per_image * images


class EstimateMeter(EnergyMeter):
    """The analytical estimate behind the meter interface: a window's joules come from the
    ``Work`` its caller says ran in it, its seconds from the clock. Without work it is 0 J
    (an idle window draws nothing in the model)."""

    source = SOURCE
    counts_hardware = False

    def info(self) -> dict[str, Any]:
        return {"method": "analytical estimate (Horowitz, ISSCC 2014, 45 nm)",
                "joules_per_mac": JOULES_PER_MAC, "joules_per_dram_byte": JOULES_PER_DRAM_BYTE}

    def total_joules(self) -> float:
        raise TypeError("the estimate counts no energy; its windows compute it from their Work")

    def begin_window(self, name: str) -> None:
        if name in self._open:
            raise ValueError(f"energy window {name!r} is already open")
        self._open[name] = (time.perf_counter(), 0.0)

    def end_window(self, name: str, *, work: Work | None = None) -> EnergyWindow:
        try:
            start, _ = self._open.pop(name)
        except KeyError:
            raise ValueError(f"energy window {name!r} was never opened") from None
        seconds = time.perf_counter() - start
        if work is None:
            return EnergyWindow(seconds=seconds, joules=0.0)
        costs = {"macs": work.macs, "params": work.params, "activations": work.activations,
                 "batch_size": work.batch_size}
        if work.training:
            return EnergyWindow(seconds=seconds, joules=training_joules(**costs, images=work.images))
        return EnergyWindow(seconds=seconds, joules=inference_joules(**costs) * work.images)
