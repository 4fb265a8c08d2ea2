"""The slot layout: which layer slots exist and how their parameters are named.

Feature slots come first (``0 .. feature_slots - 1``), classifier slots after them. Every
parameter of slot N is named ``sNN_...`` (``s07_on``, ``s07_type``, ``s07_conv_kh``), so a sampler
can move a slot's whole block at once; training parameters are named ``train_...``. This module
is the one place that knows the layout; it imports neither torch nor Optuna, so samplers can use
it freely.
"""

from __future__ import annotations

import dataclasses
import re

_SLOT_PARAM = re.compile(r"^s(\d+)_")


def slot_prefix(slot: int) -> str:
    """The prefix of every parameter of ``slot``: ``s07_``."""
    return f"s{slot:02d}_"


def slot_of(param_name: str) -> int | None:
    """The slot a parameter belongs to, or ``None`` for training (and foreign) parameters."""
    match = _SLOT_PARAM.match(param_name)
    return int(match.group(1)) if match else None


@dataclasses.dataclass(frozen=True)
class SlotLayout:
    """How many feature and classifier slots a space has, and their numbers."""

    feature_slots: int
    classifier_slots: int

    @property
    def feature(self) -> range:
        return range(self.feature_slots)

    @property
    def classifier(self) -> range:
        return range(self.feature_slots, self.feature_slots + self.classifier_slots)
