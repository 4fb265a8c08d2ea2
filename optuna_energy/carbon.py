"""Energy in the unit people report: grams of CO2-equivalent, at a carbon intensity the user gives.

The package never looks an intensity up (no network, no guess from the location): the user
states the grams of CO2e their electricity emits per kWh (``[carbon] intensity_g_per_kwh``, or
``create_study(carbon_intensity_g_per_kwh=...)``), the study stores it, and the report and the
savings line show the grams beside the joules. Without it they show joules alone. A budget in
grams (``[study] max_train_co2e_g``) is the joule budget at that intensity.
"""

from __future__ import annotations

import math

JOULES_PER_KWH = 3.6e6
MAX_INTENSITY_G_PER_KWH = 2000.0
"""Largest intensity accepted: above any grid's (coal-fired electricity emits about
1,000 g CO2e/kWh), so a larger value is a unit mistake (g/MWh, mg/kWh)."""
_UNITS = ((1e6, "t"), (1e3, "kg"), (1.0, "g"), (1e-3, "mg"), (1e-6, "µg"))
"""Grams per unit, largest first: a quantity is shown in the largest unit it reaches."""


def check_intensity(intensity_g_per_kwh: object) -> float:
    """``intensity_g_per_kwh`` as a float, checked.

    Raises:
        ValueError: Not a number, or outside ``(0, MAX_INTENSITY_G_PER_KWH]``; one line.
    """
    if isinstance(intensity_g_per_kwh, bool) or not isinstance(intensity_g_per_kwh, (int, float)) \
            or not 0 < intensity_g_per_kwh <= MAX_INTENSITY_G_PER_KWH:  # NaN fails it too
        raise ValueError(f"intensity_g_per_kwh must be grams of CO2e per kWh, > 0 and <= "
                         f"{MAX_INTENSITY_G_PER_KWH:g}, got {intensity_g_per_kwh!r}")
    return float(intensity_g_per_kwh)


def co2e_grams(joules: float, *, intensity_g_per_kwh: float) -> float:
    """Grams of CO2e emitted producing ``joules`` of electricity at the intensity."""
    return joules / JOULES_PER_KWH * intensity_g_per_kwh


def joules_of_co2e(grams: float, *, intensity_g_per_kwh: float) -> float:
    """Joules of electricity whose production emits ``grams`` of CO2e at the intensity: a carbon
    budget as the joule budget it is."""
    return grams / intensity_g_per_kwh * JOULES_PER_KWH


def format_co2e(grams: float) -> str:
    """Grams of CO2e for people: three significant digits in µg, mg, g, kg or t
    (``"4.21 mg CO2e"``, ``"1.3 kg CO2e"``; the estimate's joules of a small model are µg)."""
    if not math.isfinite(grams) or grams == 0:
        return f"{grams:g} g CO2e"
    scale, unit = next(((scale, unit) for scale, unit in _UNITS if abs(grams) >= scale), _UNITS[-1])
    return f"{grams / scale:.3g} {unit} CO2e"


def energy_text(joules: float, intensity_g_per_kwh: float | None, *, aside: bool = False) -> str:
    """Joules as the report writes them (``"1234 J"``), with their CO2e where an intensity is
    known (at 380 g CO2e/kWh: ``"1234 J, 130 mg CO2e"``; ``aside``: ``"1234 J (130 mg CO2e)"``,
    for joules outside parentheses)."""
    text = f"{joules:.4g} J"
    if intensity_g_per_kwh is None:
        return text
    grams = format_co2e(co2e_grams(joules, intensity_g_per_kwh=intensity_g_per_kwh))
    return f"{text} ({grams})" if aside else f"{text}, {grams}"
