"""Energy meters behind one interface, and the choice of meter for a device."""

from __future__ import annotations

import warnings

from optuna_energy.energy import estimate
from optuna_energy.energy.base import EnergyMeter, EnergyWindow

__all__ = ["EnergyMeter", "EnergyWindow", "select_meter", "estimate"]


class EnergyEstimateWarning(UserWarning):
    """No hardware meter could be read, so energy is the analytical estimate."""


def select_meter(device: str) -> EnergyMeter | None:
    """The best hardware meter for ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``), or ``None``.

    ``None`` means energy falls back to the analytical estimate; a warning says so and why.
    """
    warnings.warn(
        f"no hardware energy meter is available for device {device!r}; energy per inference "
        "is the analytical estimate (energy_source='estimate')",
        EnergyEstimateWarning,
        stacklevel=2,
    )
    return None
