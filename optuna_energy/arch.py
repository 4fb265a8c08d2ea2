"""Architectures as plain JSON values, and the PyTorch modules built from them.

An architecture spec is a list of layer dicts, in order, each with its ``slot`` (0-31), its
``kind`` and that kind's hyperparameters, e.g.::

    [{"slot": 0, "kind": "conv", "out_channels": 32, "kernel": [5, 3], "stride": 1, "padding": 1},
     {"slot": 2, "kind": "pool", "mode": "max", "kernel": 2, "stride": 2},
     {"slot": 16, "kind": "linear", "out_features": 128},
     {"slot": 17, "kind": "activation", "fn": "relu"}]

Feature layers (conv, inception, pool, activation, dropout) act on ``(C, H, W)`` maps; the first
classifier layer (linear, or anything at slot >= 16) flattens; a final linear head to
``n_classes`` is always appended. Nothing here knows about Optuna: the search space produces
specs, this module turns them into modules and counts their parameters and MACs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

LayerSpec = dict[str, Any]
ArchSpec = list[LayerSpec]
Shape = tuple[int, ...]

FIRST_CLASSIFIER_SLOT = 16

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


@dataclasses.dataclass(frozen=True)
class ArchProfile:
    """Static costs of an architecture, computed from its spec alone."""

    params: int
    macs: int
    activations: int
    """Elements written by all layers for one input: a proxy for memory traffic."""


def is_classifier(layer: Mapping[str, Any]) -> bool:
    return layer["kind"] == "linear" or layer["slot"] >= FIRST_CLASSIFIER_SLOT


def inception_widths(layer: Mapping[str, Any]) -> dict[str, int]:
    """Branch widths of an inception module; the 3x3 and 5x5 reductions are half their branch.

    Halving follows GoogLeNet's ratios closely enough and keeps the gene count at four.
    """
    b3, b5 = layer["b3"], layer["b5"]
    return {"b1": layer["b1"], "r3": max(1, b3 // 2), "b3": b3, "r5": max(1, b5 // 2),
            "b5": b5, "pool_proj": layer["pool_proj"]}


def output_shape(layer: Mapping[str, Any], shape: Shape) -> Shape:
    """The shape after ``layer`` for one input of ``shape`` ((C, H, W) or (features,))."""
    kind = layer["kind"]
    if kind in ("activation", "dropout"):
        return shape
    if kind == "linear":
        return (layer["out_features"],)
    channels, height, width = shape
    if kind == "conv":
        kh, kw = layer["kernel"]
        pad, stride = layer["padding"], layer["stride"]
        return (layer["out_channels"], (height + 2 * pad - kh) // stride + 1,
                (width + 2 * pad - kw) // stride + 1)
    if kind == "inception":
        widths = inception_widths(layer)
        return (widths["b1"] + widths["b3"] + widths["b5"] + widths["pool_proj"], height, width)
    if kind == "pool":
        kernel, stride = layer["kernel"], layer["stride"]
        return (channels, (height - kernel) // stride + 1, (width - kernel) // stride + 1)
    raise ValueError(f"unknown layer kind {kind!r}; allowed: conv, inception, pool, activation, dropout, linear")


def _flat(shape: Shape) -> int:
    size = 1
    for dim in shape:
        size *= dim
    return size


def _conv_cost(c_in: int, c_out: int, kernel: int, pixels: int) -> tuple[int, int]:
    """(params, MACs) of a bias-carrying convolution producing ``pixels`` output positions."""
    return c_out * (c_in * kernel + 1), c_out * c_in * kernel * pixels


def _layer_cost(layer: Mapping[str, Any], shape: Shape, out: Shape) -> tuple[int, int]:
    kind = layer["kind"]
    if kind == "conv":
        kh, kw = layer["kernel"]
        return _conv_cost(shape[0], out[0], kh * kw, out[1] * out[2])
    if kind == "inception":
        w = inception_widths(layer)
        c_in, pixels = shape[0], shape[1] * shape[2]
        parts = [_conv_cost(c_in, w["b1"], 1, pixels),
                 _conv_cost(c_in, w["r3"], 1, pixels), _conv_cost(w["r3"], w["b3"], 9, pixels),
                 _conv_cost(c_in, w["r5"], 1, pixels), _conv_cost(w["r5"], w["b5"], 25, pixels),
                 _conv_cost(c_in, w["pool_proj"], 1, pixels)]
        return sum(p for p, _ in parts), sum(m for _, m in parts)
    if kind == "linear":
        n_in = _flat(shape)
        return out[0] * (n_in + 1), out[0] * n_in
    return 0, 0


def walk(spec: Sequence[Mapping[str, Any]], input_shape: Shape, n_classes: int):
    """Yield ``(layer, shape_in, shape_out)`` for every layer, the flatten and the head included.

    The flatten before the classifier and the final head appear as layers of kind ``flatten``
    and ``linear`` (slot ``None``), so every consumer sees the same sequence.
    """
    shape = tuple(input_shape)
    flattened = False
    for layer in spec:
        if is_classifier(layer) and not flattened:
            flat = (_flat(shape),)
            yield {"slot": None, "kind": "flatten"}, shape, flat
            shape, flattened = flat, True
        out = output_shape(layer, shape)
        yield layer, shape, out
        shape = out
    if not flattened:
        flat = (_flat(shape),)
        yield {"slot": None, "kind": "flatten"}, shape, flat
        shape = flat
    head = {"slot": None, "kind": "linear", "out_features": n_classes}
    yield head, shape, (n_classes,)


def profile(spec: Sequence[Mapping[str, Any]], input_shape: Shape, n_classes: int) -> ArchProfile:
    """Parameter count, multiply-accumulates and activation elements for one input."""
    params = macs = activations = 0
    for layer, shape, out in walk(spec, input_shape, n_classes):
        if layer["kind"] == "flatten":
            continue
        layer_params, layer_macs = _layer_cost(layer, shape, out)
        params += layer_params
        macs += layer_macs
        activations += _flat(out)
    return ArchProfile(params=params, macs=macs, activations=activations)


class Inception(nn.Module):
    """GoogLeNet's module: 1x1, 1x1->3x3, 1x1->5x5 and 3x3 max-pool->1x1 branches, concatenated."""

    def __init__(self, in_channels: int, widths: Mapping[str, int]) -> None:
        super().__init__()
        self.branch1 = nn.Conv2d(in_channels, widths["b1"], 1)
        self.branch3 = nn.Sequential(nn.Conv2d(in_channels, widths["r3"], 1),
                                     nn.Conv2d(widths["r3"], widths["b3"], 3, padding=1))
        self.branch5 = nn.Sequential(nn.Conv2d(in_channels, widths["r5"], 1),
                                     nn.Conv2d(widths["r5"], widths["b5"], 5, padding=2))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                                         nn.Conv2d(in_channels, widths["pool_proj"], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], 1)


def _module(layer: Mapping[str, Any], shape: Shape) -> nn.Module:
    kind = layer["kind"]
    if kind == "conv":
        return nn.Conv2d(shape[0], layer["out_channels"], tuple(layer["kernel"]),
                         stride=layer["stride"], padding=layer["padding"])
    if kind == "inception":
        return Inception(shape[0], inception_widths(layer))
    if kind == "pool":
        pool = nn.MaxPool2d if layer["mode"] == "max" else nn.AvgPool2d
        return pool(layer["kernel"], stride=layer["stride"])
    if kind == "activation":
        return _ACTIVATIONS[layer["fn"]]()
    if kind == "dropout":
        return nn.Dropout(layer["rate"])
    if kind == "flatten":
        return nn.Flatten()
    if kind == "linear":
        return nn.Linear(_flat(shape), layer["out_features"])
    raise ValueError(f"unknown layer kind {kind!r}")


def build_model(spec: Sequence[Mapping[str, Any]], input_shape: Shape, n_classes: int) -> nn.Sequential:
    """Build the PyTorch model an architecture spec describes.

    Args:
        spec: The architecture (a list of layer dicts), e.g. a trial's ``architecture`` user
            attribute.
        input_shape: One input's ``(channels, height, width)``.
        n_classes: Width of the final classification head.

    Example:
        >>> import optuna_energy
        >>> spec = study.best_trials[0].user_attrs["architecture"]
        >>> model = optuna_energy.build_model(spec, (1, 8, 8), 10)
    """
    return nn.Sequential(*(_module(layer, shape) for layer, shape, _ in walk(spec, input_shape, n_classes)))


def summarize(spec: Sequence[Mapping[str, Any]]) -> str:
    """A one-line, human-readable topology, e.g. ``conv5x3/32 > maxpool2 > fc128 > relu``."""
    if not spec:
        return "(head only)"
    return " > ".join(describe(layer) for layer in spec)


def describe(layer: Mapping[str, Any]) -> str:
    kind = layer["kind"]
    if kind == "conv":
        kh, kw = layer["kernel"]
        stride = f" s{layer['stride']}" if layer["stride"] != 1 else ""
        return f"conv{kh}x{kw}/{layer['out_channels']}{stride}"
    if kind == "inception":
        w = inception_widths(layer)
        return f"inception/{w['b1'] + w['b3'] + w['b5'] + w['pool_proj']}"
    if kind == "pool":
        return f"{layer['mode']}pool{layer['kernel']} s{layer['stride']}"
    if kind == "activation":
        return layer["fn"]
    if kind == "dropout":
        return f"dropout{layer['rate']:.2f}"
    if kind == "linear":
        return f"fc{layer['out_features']}"
    return kind


def to_json(spec: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(list(spec), sort_keys=True)


def from_json(text: str) -> ArchSpec:
    spec = json.loads(text)
    if not isinstance(spec, list) or not all(isinstance(layer, dict) and "kind" in layer for layer in spec):
        raise ValueError("an architecture must be a JSON list of layer objects, each with a 'kind'")
    return spec
