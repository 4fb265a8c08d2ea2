"""The paper's 32-slot conditional search space, sampled define-by-run from an Optuna trial.

The space owns its settings (:class:`SpaceSection`, the config's ``[space]``). Slots and their
parameter names come from :mod:`optuna_energy.model.slots`, the kinds of layer and their genes from
:mod:`optuna_energy.model.layers`. Every slot has an on/off gene ``sNN_on``; a slot that is on has a
type gene ``sNN_type`` and, only for that type, its hyperparameters ``sNN_<type>_<name>``. All genes of a slot share the
prefix ``sNN_`` so that samplers (the evolutionary one in particular) can move a slot's whole
block at once. Training genes are prefixed ``train_``.

Ranges come from the config and are narrowed to the current feature-map size, so that every
sampled architecture computes: a kernel never exceeds the map it slides over. A slot whose type
cannot fit at all (a pooling window on a 1x1 map) is recorded as off.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna

from optuna_energy.model.arch import ArchSpec, Shape
from optuna_energy.model.layers import (
    ACTIVATIONS,
    CLASSIFIER,
    FEATURE,
    LAYER_KINDS,
    default_kinds,
    kinds_for,
)
from optuna_energy.model.slots import SlotLayout, slot_of, slot_prefix

__all__ = ["SampledArchitecture", "SpaceSection", "TrainingParams", "sample_architecture",
           "sample_training", "slot_of", "slot_prefix"]

MAX_SLOTS = 64
"""Per stage: beyond this no network trains in a search's time, and names stay short."""
_UPPER_BOUNDS = {"conv_channels": 4096, "kernel_size": 64, "conv_stride": 8, "inception_width": 1024,
                 "pool_kernel": 16, "pool_stride": 16, "linear_width": 65536}
"""Largest values a range may reach: past them a single layer needs gigabytes (a linear layer of
10^8 units filled a 24 GB machine), which is a typo, not a search."""


@dataclasses.dataclass(frozen=True)
class SpaceSection:
    """Ranges of the 32-slot search space (the config's ``[space]``); ``[low, high]`` pairs are
    inclusive.

    Raises:
        ValueError: A value outside what is allowed; the message names the key.
    """

    feature_slots: int = 16
    classifier_slots: int = 16
    # Read from the layer registry when a section is made, so that registered kinds count.
    feature_types: tuple[str, ...] = dataclasses.field(default_factory=lambda: default_kinds(FEATURE))
    classifier_types: tuple[str, ...] = dataclasses.field(default_factory=lambda: default_kinds(CLASSIFIER))
    conv_channels: tuple[int, int] = (8, 128)
    kernel_size: tuple[int, int] = (1, 21)
    conv_stride: tuple[int, int] = (1, 2)
    padding_max: int = 3
    inception_width: tuple[int, int] = (4, 64)
    pool_kernel: tuple[int, int] = (2, 3)
    pool_stride: tuple[int, int] = (1, 2)
    activations: tuple[str, ...] = tuple(ACTIVATIONS)
    dropout: tuple[float, float] = (0.0, 0.6)
    linear_width: tuple[int, int] = (16, 1024)

    def __post_init__(self) -> None:
        for slots in ("feature_slots", "classifier_slots"):
            count = getattr(self, slots)
            if not 0 <= count <= MAX_SLOTS:
                raise ValueError(f"{slots} must be between 0 and {MAX_SLOTS}, got {count}")
        for key, allowed in (("feature_types", kinds_for(FEATURE)), ("classifier_types", kinds_for(CLASSIFIER)),
                             ("activations", tuple(ACTIVATIONS))):
            _choices(getattr(self, key), allowed, key)
        for key, high in _UPPER_BOUNDS.items():
            _interval(getattr(self, key), key, low=2 if key == "pool_kernel" else 1, high=high)
        _interval(self.dropout, "dropout", low=0, high=0.99)
        if self.padding_max < 0:
            raise ValueError(f"padding_max must be >= 0, got {self.padding_max}")

    @property
    def layout(self) -> SlotLayout:
        return SlotLayout(feature_slots=self.feature_slots, classifier_slots=self.classifier_slots)


def _choices(values: tuple[str, ...], allowed: tuple[str, ...], key: str) -> None:
    if not values or any(value not in allowed for value in values) or len(set(values)) != len(values):
        raise ValueError(f"{key} must list distinct names from: {', '.join(allowed)}; got {list(values)}")


def _interval(pair: tuple, key: str, *, low: float, high: float) -> None:
    if len(pair) != 2 or not low <= pair[0] <= pair[1] <= high:
        raise ValueError(f"{key} must be [low, high] with {low} <= low <= high <= {high}, got {list(pair)}")


@dataclasses.dataclass(frozen=True)
class TrainingParams:
    learning_rate: float
    optimizer: str
    batch_size: int
    weight_decay: float


@dataclasses.dataclass(frozen=True)
class SampledArchitecture:
    spec: ArchSpec
    skipped_slots: list[int]
    """Slots that were switched on but could not fit the feature map, and so are off."""


def sample_training(trial: optuna.Trial, training: Any) -> TrainingParams:
    """The training hyperparameters, from the ranges of the config's ``[training]``."""
    return TrainingParams(
        learning_rate=trial.suggest_float("train_lr", *training.learning_rate, log=True),
        optimizer=trial.suggest_categorical("train_optimizer", list(training.optimizers)),
        batch_size=trial.suggest_categorical("train_batch_size", list(training.batch_sizes)),
        weight_decay=trial.suggest_float("train_weight_decay", *training.weight_decay, log=True),
    )


def sample_architecture(trial: optuna.Trial, space: SpaceSection, input_shape: Shape) -> SampledArchitecture:
    """Sample the on/off state, type and hyperparameters of every slot, shape-aware."""
    spec: ArchSpec = []
    skipped: list[int] = []
    shape = tuple(input_shape)
    layout = space.layout
    slots = [(slot, space.feature_types) for slot in layout.feature]
    slots += [(slot, space.classifier_types) for slot in layout.classifier]
    for slot, types in slots:
        prefix = slot_prefix(slot)
        if not trial.suggest_categorical(prefix + "on", [False, True]):
            continue
        name = trial.suggest_categorical(prefix + "type", list(types))
        kind = LAYER_KINDS[name]
        layer = kind.sample(trial, f"{prefix}{name}_", space, shape)
        if layer is None:
            skipped.append(slot)
            continue
        layer = {"slot": slot, "kind": name, **layer}
        spec.append(layer)
        if not kind.flattens:  # the classifier's flat shape is not what feature kernels fit
            shape = kind.output_shape(layer, shape)
    return SampledArchitecture(spec=spec, skipped_slots=skipped)
