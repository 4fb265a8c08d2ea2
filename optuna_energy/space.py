"""The paper's 32-slot conditional search space, sampled define-by-run from an Optuna trial.

Every slot has an on/off gene ``sNN_on``; a slot that is on has a type gene ``sNN_type`` and,
only for that type, its hyperparameters ``sNN_<type>_<name>``. All genes of a slot share the
prefix ``sNN_`` so that samplers (the evolutionary one in particular) can move a slot's whole
block at once. Training genes are prefixed ``train_``.

Ranges come from the config and are narrowed to the current feature-map size, so that every
sampled architecture computes: a kernel never exceeds the map it slides over. A slot whose type
cannot fit at all (a pooling window on a 1x1 map) is recorded as off.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import optuna

from optuna_energy.arch import ArchSpec, LayerSpec, Shape, output_shape
from optuna_energy.config import SpaceSection, TrainingSection

_SLOT_PARAM = re.compile(r"^s(\d+)_")


def slot_prefix(slot: int) -> str:
    return f"s{slot:02d}_"


def slot_of(param_name: str) -> int | None:
    """The slot a parameter belongs to, or ``None`` for training (and foreign) parameters."""
    match = _SLOT_PARAM.match(param_name)
    return int(match.group(1)) if match else None


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


def sample_training(trial: optuna.Trial, training: TrainingSection) -> TrainingParams:
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
    slots = [(slot, space.feature_types) for slot in range(space.feature_slots)]
    slots += [(16 + slot, space.classifier_types) for slot in range(space.classifier_slots)]
    for slot, types in slots:
        prefix = slot_prefix(slot)
        if not trial.suggest_categorical(prefix + "on", [False, True]):
            continue
        kind = trial.suggest_categorical(prefix + "type", list(types))
        layer = _sample_layer(trial, prefix, kind, space, shape)
        if layer is None:
            skipped.append(slot)
            continue
        layer = {"slot": slot, "kind": kind, **layer}
        spec.append(layer)
        if kind in ("conv", "inception", "pool"):
            shape = output_shape(layer, shape)
    return SampledArchitecture(spec=spec, skipped_slots=skipped)


def _sample_layer(trial: optuna.Trial, prefix: str, kind: str, space: SpaceSection,
                  shape: Shape) -> dict[str, Any] | None:
    p = prefix + kind + "_"
    if kind == "conv":
        return _sample_conv(trial, p, space, shape)
    if kind == "inception":
        low, high = space.inception_width
        return {name: trial.suggest_int(p + name, low, high, log=True)
                for name in ("b1", "b3", "b5", "pool_proj")}
    if kind == "pool":
        return _sample_pool(trial, p, space, shape)
    if kind == "activation":
        return {"fn": trial.suggest_categorical(p + "fn", list(space.activations))}
    if kind == "dropout":
        return {"rate": trial.suggest_float(p + "rate", *space.dropout)}
    if kind == "linear":
        return {"out_features": trial.suggest_int(p + "out", *space.linear_width, log=True)}
    raise ValueError(f"unknown layer type {kind!r}")


def _sample_conv(trial: optuna.Trial, p: str, space: SpaceSection, shape: Shape) -> LayerSpec | None:
    _, height, width = shape
    k_low, k_high = space.kernel_size
    if k_low > min(height, width):
        return None
    # Height and width are separate genes so that 20x3 kernels exist on large inputs; log
    # scale keeps small kernels common while leaving the large ones reachable.
    kh = trial.suggest_int(p + "kh", k_low, min(k_high, height), log=True)
    kw = trial.suggest_int(p + "kw", k_low, min(k_high, width), log=True)
    return {
        "out_channels": trial.suggest_int(p + "out", *space.conv_channels, log=True),
        "kernel": [kh, kw],
        "stride": trial.suggest_int(p + "stride", *space.conv_stride),
        # Padding beyond half the kernel would only add border of zeros.
        "padding": trial.suggest_int(p + "pad", 0, min(space.padding_max, (min(kh, kw) - 1) // 2)),
    }


def _sample_pool(trial: optuna.Trial, p: str, space: SpaceSection, shape: Shape) -> LayerSpec | None:
    _, height, width = shape
    k_low, k_high = space.pool_kernel
    if k_low > min(height, width):
        return None
    kernel = trial.suggest_int(p + "k", k_low, min(k_high, height, width))
    s_low, s_high = space.pool_stride
    return {
        "mode": trial.suggest_categorical(p + "mode", ["max", "avg"]),
        "kernel": kernel,
        "stride": trial.suggest_int(p + "stride", min(s_low, kernel), min(s_high, kernel)),
    }
