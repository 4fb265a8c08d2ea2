"""The layer-kind registry: one class per kind of layer a slot can hold.

Each kind knows everything about itself: how to sample its genes from an Optuna trial
(shape-aware), the shape it outputs, its parameter and MAC counts, the torch module it builds, its
short description, its colour and legend in Fig. 2, and whether the paper's default space holds
it. The space, the architecture code, the config's type lists and the figures all read
:data:`LAYER_KINDS` when they need it; adding a kind of layer is one class, here or in your own
package, given to :func:`register_layer_kind` (or named under the entry-point group
``optuna_energy.layer_kinds``). ``optuna_energy.testing.layer_kinds`` checks a kind against torch.

A kind takes part in the feature stage (acting on ``(C, H, W)`` maps), the classifier stage
(acting on flat features), or both (activation, dropout: elementwise, so where the flatten sits
does not change what they compute).
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from optuna_energy.host.plugins import Registry

Shape = tuple[int, ...]
LayerSpec = dict[str, Any]

FEATURE = "feature"
CLASSIFIER = "classifier"

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


class Suggest(Protocol):
    """What a layer kind asks of an Optuna trial (``optuna.Trial`` satisfies it)."""

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def flat(shape: Shape) -> int:
    size = 1
    for dim in shape:
        size *= dim
    return size


def conv_cost(c_in: int, c_out: int, kernel: int, pixels: int) -> tuple[int, int]:
    """(params, MACs) of a bias-carrying convolution producing ``pixels`` output positions."""
    return c_out * (c_in * kernel + 1), c_out * c_in * kernel * pixels


class LayerKind(abc.ABC):
    """One kind of layer. Genes are named ``<slot prefix><kind>_<gene>`` (``s03_conv_kh``).

    ``sample`` receives the space's settings (``SpaceSection``); a kind of your own may keep its
    ranges in its constructor instead.
    """

    name: ClassVar[str]
    stages: ClassVar[frozenset[str]]
    """``feature``, ``classifier`` or both: the slots that may hold this kind."""
    default_space: ClassVar[bool]
    """Whether the default ``SpaceSection``'s type lists hold this kind. Every kind says so: the
    paper's kinds do; a kind of your own joins a space only where a config lists it, unless it says
    ``True``."""
    colour: ClassVar[str | None]
    """Its boxes' colour in Fig. 2 (any matplotlib colour); ``None`` leaves the kind out of the
    figure, as the paper leaves out activations."""
    notation: ClassVar[str]
    """How to read :meth:`describe`'s text, with an example: the kind's line in Fig. 2's legend."""
    flattens: ClassVar[bool] = False
    """Acts on flat features: the network flattens before the first such layer."""

    @abc.abstractmethod
    def sample(self, trial: Suggest, prefix: str, space: Any, shape: Shape) -> LayerSpec | None:
        """This kind's hyperparameters for a layer seeing ``shape``, or ``None`` if none fits."""

    def output_shape(self, layer: Mapping[str, Any], shape: Shape) -> Shape:
        return shape

    def cost(self, layer: Mapping[str, Any], shape: Shape, out: Shape) -> tuple[int, int]:
        """(parameters, multiply-accumulates) for one input."""
        return 0, 0

    @abc.abstractmethod
    def module(self, layer: Mapping[str, Any], shape: Shape) -> nn.Module:
        """The torch module for ``layer`` on inputs of ``shape``."""

    @abc.abstractmethod
    def describe(self, layer: Mapping[str, Any]) -> str:
        """A few characters for summaries and figures (``conv5x3/32``)."""


class Conv(LayerKind):
    name = "conv"
    default_space = True
    colour = "#9ecae1"
    notation = "conv3x2/35 s2: convolution, 3x2 kernel (height x width), 35 output channels, stride 2 (s1 not shown)"
    stages = frozenset({FEATURE})

    def sample(self, trial: Suggest, prefix: str, space: Any, shape: Shape) -> LayerSpec | None:
        _, height, width = shape
        k_low, k_high = space.kernel_size
        if k_low > min(height, width):
            return None
        # Height and width are separate genes so that 20x3 kernels exist on large inputs; log
        # scale keeps small kernels common while leaving the large ones reachable.
        kh = trial.suggest_int(prefix + "kh", k_low, min(k_high, height), log=True)
        kw = trial.suggest_int(prefix + "kw", k_low, min(k_high, width), log=True)
        return {
            "out_channels": trial.suggest_int(prefix + "out", *space.conv_channels, log=True),
            "kernel": [kh, kw],
            "stride": trial.suggest_int(prefix + "stride", *space.conv_stride),
            # Padding beyond half the kernel would only add border of zeros.
            "padding": trial.suggest_int(prefix + "pad", 0, min(space.padding_max, (min(kh, kw) - 1) // 2)),
        }

    def output_shape(self, layer: Mapping[str, Any], shape: Shape) -> Shape:
        _, height, width = shape
        kh, kw = layer["kernel"]
        pad, stride = layer["padding"], layer["stride"]
        return (layer["out_channels"], (height + 2 * pad - kh) // stride + 1,
                (width + 2 * pad - kw) // stride + 1)

    def cost(self, layer: Mapping[str, Any], shape: Shape, out: Shape) -> tuple[int, int]:
        kh, kw = layer["kernel"]
        return conv_cost(shape[0], out[0], kh * kw, out[1] * out[2])

    def module(self, layer: Mapping[str, Any], shape: Shape) -> nn.Module:
        return nn.Conv2d(shape[0], layer["out_channels"], tuple(layer["kernel"]),
                         stride=layer["stride"], padding=layer["padding"])

    def describe(self, layer: Mapping[str, Any]) -> str:
        kh, kw = layer["kernel"]
        stride = f" s{layer['stride']}" if layer["stride"] != 1 else ""
        return f"conv{kh}x{kw}/{layer['out_channels']}{stride}"


class InceptionModule(nn.Module):
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


class Inception(LayerKind):
    name = "inception"
    default_space = True
    colour = "#bcbddc"
    notation = "inception/24: inception module, 24 output channels over its four branches"
    stages = frozenset({FEATURE})
    _BRANCHES = ("b1", "b3", "b5", "pool_proj")

    @staticmethod
    def widths(layer: Mapping[str, Any]) -> dict[str, int]:
        """Branch widths; the 3x3 and 5x5 reductions are half their branch.

        Halving follows GoogLeNet's ratios closely enough and keeps the gene count at four.
        """
        b3, b5 = layer["b3"], layer["b5"]
        return {"b1": layer["b1"], "r3": max(1, b3 // 2), "b3": b3, "r5": max(1, b5 // 2),
                "b5": b5, "pool_proj": layer["pool_proj"]}

    def sample(self, trial: Suggest, prefix: str, space: Any, shape: Shape) -> LayerSpec | None:
        low, high = space.inception_width
        return {name: trial.suggest_int(prefix + name, low, high, log=True) for name in self._BRANCHES}

    def output_shape(self, layer: Mapping[str, Any], shape: Shape) -> Shape:
        return (sum(layer[name] for name in self._BRANCHES), shape[1], shape[2])

    def cost(self, layer: Mapping[str, Any], shape: Shape, out: Shape) -> tuple[int, int]:
        w = self.widths(layer)
        c_in, pixels = shape[0], shape[1] * shape[2]
        parts = [conv_cost(c_in, w["b1"], 1, pixels),
                 conv_cost(c_in, w["r3"], 1, pixels), conv_cost(w["r3"], w["b3"], 9, pixels),
                 conv_cost(c_in, w["r5"], 1, pixels), conv_cost(w["r5"], w["b5"], 25, pixels),
                 conv_cost(c_in, w["pool_proj"], 1, pixels)]
        return sum(p for p, _ in parts), sum(m for _, m in parts)

    def module(self, layer: Mapping[str, Any], shape: Shape) -> nn.Module:
        return InceptionModule(shape[0], self.widths(layer))

    def describe(self, layer: Mapping[str, Any]) -> str:
        return f"inception/{sum(layer[name] for name in self._BRANCHES)}"


class Pool(LayerKind):
    name = "pool"
    default_space = True
    colour = "#a1d99b"
    notation = "maxpool3 s2: max (or avg) pooling, 3x3 window, stride 2"
    stages = frozenset({FEATURE})

    def sample(self, trial: Suggest, prefix: str, space: Any, shape: Shape) -> LayerSpec | None:
        _, height, width = shape
        k_low, k_high = space.pool_kernel
        if k_low > min(height, width):
            return None
        kernel = trial.suggest_int(prefix + "k", k_low, min(k_high, height, width))
        s_low, s_high = space.pool_stride
        return {
            "mode": trial.suggest_categorical(prefix + "mode", ["max", "avg"]),
            "kernel": kernel,
            "stride": trial.suggest_int(prefix + "stride", min(s_low, kernel), min(s_high, kernel)),
        }

    def output_shape(self, layer: Mapping[str, Any], shape: Shape) -> Shape:
        channels, height, width = shape
        kernel, stride = layer["kernel"], layer["stride"]
        return (channels, (height - kernel) // stride + 1, (width - kernel) // stride + 1)

    def module(self, layer: Mapping[str, Any], shape: Shape) -> nn.Module:
        pool = nn.MaxPool2d if layer["mode"] == "max" else nn.AvgPool2d
        return pool(layer["kernel"], stride=layer["stride"])

    def describe(self, layer: Mapping[str, Any]) -> str:
        return f"{layer['mode']}pool{layer['kernel']} s{layer['stride']}"


class Activation(LayerKind):
    name = "activation"
    default_space = True
    colour = None
    notation = "relu, gelu, ...: activation function"
    stages = frozenset({FEATURE, CLASSIFIER})

    def sample(self, trial: Suggest, prefix: str, space: Any, shape: Shape) -> LayerSpec | None:
        return {"fn": trial.suggest_categorical(prefix + "fn", list(space.activations))}

    def module(self, layer: Mapping[str, Any], shape: Shape) -> nn.Module:
        return ACTIVATIONS[layer["fn"]]()

    def describe(self, layer: Mapping[str, Any]) -> str:
        return str(layer["fn"])


class Dropout(LayerKind):
    name = "dropout"
    default_space = True
    colour = "#d9d9d9"
    notation = "dropout0.07: dropout, rate 0.07"
    stages = frozenset({FEATURE, CLASSIFIER})

    def sample(self, trial: Suggest, prefix: str, space: Any, shape: Shape) -> LayerSpec | None:
        return {"rate": trial.suggest_float(prefix + "rate", *space.dropout)}

    def module(self, layer: Mapping[str, Any], shape: Shape) -> nn.Module:
        return nn.Dropout(layer["rate"])

    def describe(self, layer: Mapping[str, Any]) -> str:
        return f"dropout{layer['rate']:.2f}"


class Linear(LayerKind):
    name = "linear"
    default_space = True
    colour = "#fdd0a2"
    notation = "fc26: fully connected layer, 26 outputs"
    stages = frozenset({CLASSIFIER})
    flattens = True

    def sample(self, trial: Suggest, prefix: str, space: Any, shape: Shape) -> LayerSpec | None:
        return {"out_features": trial.suggest_int(prefix + "out", *space.linear_width, log=True)}

    def output_shape(self, layer: Mapping[str, Any], shape: Shape) -> Shape:
        return (layer["out_features"],)

    def cost(self, layer: Mapping[str, Any], shape: Shape, out: Shape) -> tuple[int, int]:
        n_in = flat(shape)
        return out[0] * (n_in + 1), out[0] * n_in

    def module(self, layer: Mapping[str, Any], shape: Shape) -> nn.Module:
        return nn.Linear(flat(shape), layer["out_features"])

    def describe(self, layer: Mapping[str, Any]) -> str:
        return f"fc{layer['out_features']}"


class Flatten(LayerKind):
    """Not a slot's kind: the step ``walk`` inserts before the classifier."""

    name = "flatten"
    default_space = False
    colour = None
    notation = "flatten: feature maps to a vector, before the classifier"
    stages = frozenset()

    def sample(self, trial: Suggest, prefix: str, space: Any, shape: Shape) -> LayerSpec | None:
        raise TypeError("flatten is placed by the architecture, never sampled")

    def output_shape(self, layer: Mapping[str, Any], shape: Shape) -> Shape:
        return (flat(shape),)

    def module(self, layer: Mapping[str, Any], shape: Shape) -> nn.Module:
        return nn.Flatten()

    def describe(self, layer: Mapping[str, Any]) -> str:
        return "flatten"


_KIND_NAME = re.compile(r"[a-z][a-z0-9_]*")
_STAGES = frozenset({FEATURE, CLASSIFIER})


def _accept_kind(name: str, given: Any) -> LayerKind:
    """A registry entry from a ``LayerKind`` (or its class, as an entry point names it), checked
    for what the space, the architecture and the figures read from it."""
    kind = given() if isinstance(given, type) and issubclass(given, LayerKind) else given
    if not isinstance(kind, LayerKind):
        raise TypeError(f"layer kind {name!r} must be a LayerKind (or its class), got {type(given).__name__}")
    where = f"layer kind {name!r} ({type(kind).__name__})"
    if getattr(kind, "name", None) != name or not _KIND_NAME.fullmatch(name):
        raise ValueError(f"{where}: its name attribute must be {name!r}, lower case letters, digits and "
                         f"_ (the genes are named sNN_<name>_...), got {getattr(kind, 'name', None)!r}")
    if not set(kind.stages) <= _STAGES:
        raise ValueError(f"{where}: stages may name {FEATURE!r} and {CLASSIFIER!r}, got {set(kind.stages)}")
    missing = [key for key in ("default_space", "colour", "notation") if not hasattr(kind, key)]
    if missing:
        raise ValueError(f"{where} must set {', '.join(missing)}: whether the default space holds it "
                         f"(True or False), its Fig. 2 colour (or None) and its legend line")
    return kind


LAYER_KINDS: Registry[LayerKind] = Registry(
    "layer kind", group="optuna_energy.layer_kinds", accept=_accept_kind,
    builtins={kind.name: kind for kind in (Conv(), Inception(), Pool(), Activation(), Dropout(), Linear(),
                                           Flatten())})
"""Every kind by name: the built-ins, then plug-ins (entry points, :func:`register_layer_kind`)."""


def register_layer_kind(kind: LayerKind) -> LayerKind:
    """Make a kind of layer available to the space, ``build_model``, summaries and figures.

    A config's ``[space] feature_types`` / ``classifier_types`` may then name it; the default
    space holds it only if its ``default_space`` is ``True``. Check it first with
    ``optuna_energy.testing.layer_kinds``.

    Raises:
        ValueError: The name is taken, or the kind leaves out what the registry needs.

    Example:
        >>> class Identity(LayerKind):
        ...     name, stages, default_space = "identity", frozenset({FEATURE}), False
        ...     colour, notation = "white", "identity: passes its input on"
        ...     def sample(self, trial, prefix, space, shape): return {}
        ...     def module(self, layer, shape): return torch.nn.Identity()
        ...     def describe(self, layer): return "identity"
        >>> identity = register_layer_kind(Identity())
    """
    return LAYER_KINDS.register(getattr(kind, "name", type(kind).__name__), kind)


def kinds_for(stage: str) -> tuple[str, ...]:
    """The kinds a ``feature`` or ``classifier`` slot may hold, in registry order."""
    return tuple(name for name, kind in LAYER_KINDS.items() if stage in kind.stages)


def default_kinds(stage: str) -> tuple[str, ...]:
    """The kinds the default space's ``stage`` slots hold: those whose entry says ``default_space``."""
    return tuple(name for name in kinds_for(stage) if LAYER_KINDS[name].default_space)


def layer_kind(layer: Mapping[str, Any]) -> LayerKind:
    """The registry entry of a spec's layer.

    Raises:
        ValueError: The layer has no ``kind`` or an unknown one; the message lists the allowed.
    """
    name = layer.get("kind") if isinstance(layer, Mapping) else None
    if not isinstance(name, str) or name not in LAYER_KINDS:
        shown = dict(layer) if isinstance(layer, Mapping) else layer
        allowed = [name for name, kind in LAYER_KINDS.items() if kind.stages]
        raise ValueError(f"unknown layer kind {name!r} in {shown!r}; allowed: {', '.join(allowed)}")
    return LAYER_KINDS[name]
