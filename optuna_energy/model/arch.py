"""Architectures as plain JSON values, and the PyTorch modules built from them.

An architecture spec is a list of layer dicts, in order, each with its ``slot`` (0-31), its
``kind`` and that kind's hyperparameters, e.g.::

    [{"slot": 0, "kind": "conv", "out_channels": 32, "kernel": [5, 3], "stride": 1, "padding": 1},
     {"slot": 2, "kind": "pool", "mode": "max", "kernel": 2, "stride": 2},
     {"slot": 16, "kind": "linear", "out_features": 128},
     {"slot": 17, "kind": "activation", "fn": "relu"}]

Feature layers (conv, inception, pool, activation, dropout) act on ``(C, H, W)`` maps; the
network flattens before its first linear layer (activation and dropout are elementwise, so they
compute the same on either side of the flatten); a final linear head to ``n_classes`` is always
appended. What each kind of layer does is in :mod:`optuna_energy.model.layers`; this module walks a
spec through it. Nothing here knows about Optuna: the search space produces specs, this module
turns them into modules and counts their parameters and MACs. The ``slot`` numbers are the
search's bookkeeping and play no part in building the network, so specs stored by any version
rebuild the same network.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from torch import nn

from optuna_energy.model.layers import LAYER_KINDS, LayerSpec, Shape, flat, layer_kind

ArchSpec = list[LayerSpec]

__all__ = ["ArchProfile", "ArchSpec", "LayerSpec", "Shape", "build_model", "describe", "from_json",
           "output_shape", "profile", "summarize", "to_json", "walk"]


@dataclasses.dataclass(frozen=True)
class ArchProfile:
    """Static costs of an architecture, computed from its spec alone."""

    params: int
    macs: int
    activations: int
    """Elements written by all layers for one input: a proxy for memory traffic."""


def output_shape(layer: Mapping[str, Any], shape: Shape) -> Shape:
    """The shape after ``layer`` for one input of ``shape`` ((C, H, W) or (features,))."""
    return layer_kind(layer).output_shape(layer, shape)


def walk(spec: Sequence[Mapping[str, Any]], input_shape: Shape,
         n_classes: int) -> Iterator[tuple[Mapping[str, Any], Shape, Shape]]:
    """Yield ``(layer, shape_in, shape_out)`` for every layer, the flatten and the head included.

    The flatten before the classifier and the final head appear as layers of kind ``flatten``
    and ``linear`` (slot ``None``), so every consumer sees the same sequence.

    Raises:
        ValueError: A layer of unknown kind, or a spec that is not a list of layers.
    """
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence):
        raise ValueError(f"an architecture must be a list of layer dicts, got {type(spec).__name__}")
    shape = tuple(input_shape)
    flatten: LayerSpec = {"slot": None, "kind": "flatten"}
    flattened = False
    for layer in spec:
        kind = layer_kind(layer)
        if kind.flattens and not flattened:
            yield flatten, shape, (flat(shape),)
            shape, flattened = (flat(shape),), True
        out = kind.output_shape(layer, shape)
        yield layer, shape, out
        shape = out
    if not flattened:
        yield flatten, shape, (flat(shape),)
        shape = (flat(shape),)
    yield {"slot": None, "kind": "linear", "out_features": n_classes}, shape, (n_classes,)


def profile(spec: Sequence[Mapping[str, Any]], input_shape: Shape, n_classes: int) -> ArchProfile:
    """Parameter count, multiply-accumulates and activation elements for one input."""
    params = macs = activations = 0
    for layer, shape, out in walk(spec, input_shape, n_classes):
        if layer["kind"] == "flatten":
            continue
        layer_params, layer_macs = LAYER_KINDS[layer["kind"]].cost(layer, shape, out)
        params += layer_params
        macs += layer_macs
        activations += flat(out)
    return ArchProfile(params=params, macs=macs, activations=activations)


_BYTES_PER_ELEMENT = 4  # fp32; mixed precision needs less, so the estimate errs on the safe side
_COPIES_PER_PARAMETER = 4  # weight, gradient and an optimizer's two moments (Adam)
_COPIES_PER_ACTIVATION = 2  # the output kept for the backward pass, and its gradient


def training_memory(costs: ArchProfile, batch_size: int) -> int:
    """Bytes training an architecture needs, estimated from its spec alone before it is built:
    parameters with their gradients and optimizer state, and every layer's output (with its
    gradient) for a batch. Allocator overheads and workspaces come on top."""
    return _BYTES_PER_ELEMENT * (_COPIES_PER_PARAMETER * costs.params
                                 + _COPIES_PER_ACTIVATION * costs.activations * batch_size)


def build_model(spec: Sequence[Mapping[str, Any]], input_shape: Shape, n_classes: int) -> nn.Sequential:
    """Build the PyTorch model an architecture spec describes.

    Args:
        spec: The architecture (a list of layer dicts), e.g. a trial's recorded ``architecture``.
        input_shape: One input's ``(channels, height, width)``.
        n_classes: Width of the final classification head.

    Raises:
        ValueError: The spec is not a list of layers of known kinds; the message lists them.

    Example:
        >>> import optuna_energy, torch
        >>> spec = [{"slot": 0, "kind": "conv", "out_channels": 8, "kernel": [3, 3], "stride": 1,
        ...          "padding": 1}, {"slot": 16, "kind": "activation", "fn": "relu"}]
        >>> optuna_energy.build_model(spec, (1, 8, 8), 10)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    return nn.Sequential(*(LAYER_KINDS[layer["kind"]].module(layer, shape)
                           for layer, shape, _ in walk(spec, input_shape, n_classes)))


def summarize(spec: Sequence[Mapping[str, Any]], *, max_layers: int | None = None) -> str:
    """A one-line, human-readable topology, e.g. ``conv5x3/32 > maxpool2 > fc128 > relu``.

    With ``max_layers``, longer topologies end in ``> ... (+N)``, for tables that must fit a line.
    """
    if not spec:
        return "(head only)"
    parts = [describe(layer) for layer in spec]
    if max_layers is not None and len(parts) > max_layers:
        parts = [*parts[:max_layers], f"... (+{len(parts) - max_layers})"]
    return " > ".join(parts)


def describe(layer: Mapping[str, Any]) -> str:
    return layer_kind(layer).describe(layer)


def to_json(spec: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(list(spec), sort_keys=True)


def from_json(text: str) -> ArchSpec:
    spec = json.loads(text)
    if not isinstance(spec, list) or not all(isinstance(layer, dict) and "kind" in layer for layer in spec):
        raise ValueError("an architecture must be a JSON list of layer objects, each with a 'kind'")
    return spec
