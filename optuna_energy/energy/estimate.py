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
