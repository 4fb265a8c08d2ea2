"""The statistics of repeated measuring windows: the stored value and its spread.

Pure functions of numbers (no torch), so they are checked on their own and read the same in
the protocol (``optuna_energy.measuring.measure``), the benchmark that chose them
(``bench/measure_noise.py``) and whoever ranks trials by them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (0: the minimum, 0.5: the median, 1: the maximum),
    interpolated linearly between order statistics, as ``numpy.quantile`` does by default.

    Raises:
        ValueError: No values, or ``q`` outside [0, 1].
    """
    if not values:
        raise ValueError("quantile of no values")
    if not 0 <= q <= 1:
        raise ValueError(f"q must lie in [0, 1], got {q!r}")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def relative_spread(values: Sequence[float]) -> float | None:
    """How far repeated estimates of one quantity lie apart: (largest - smallest) / median.

    Two values that differ by less than this fraction cannot be told apart by the measurement
    that gave them. ``None`` for fewer than two values (nothing to compare) or a median of 0.
    """
    if len(values) < 2:
        return None
    middle = quantile(values, 0.5)
    if middle <= 0:
        return None
    return (max(values) - min(values)) / middle
