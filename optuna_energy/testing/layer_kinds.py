"""The conformance suite for layer kinds, in the style of Optuna's ``optuna.testing.pytest_samplers``.

A kind's counts feed the objectives (``params``) and the energy estimate (MACs), so they must be
what torch builds and runs. Subclass :class:`LayerKindTestCase` in your tests and give it your
kind; pytest then samples the kind's genes from real Optuna trials on several input shapes and
checks its parameter count against the module's, its MACs against
``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2), its output shape against a forward pass,
its registry entry, its description and its Fig. 2 colour and legend line::

    from optuna_energy.testing.layer_kinds import LayerKindTestCase

    class TestDepthwise(LayerKindTestCase):
        @pytest.fixture
        def kind(self):
            return LAYER_KINDS["depthwise"]  # registered by your package

Requires pytest (as Optuna's suites do).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import matplotlib.colors
import optuna
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from optuna_energy.model.arch import Shape, build_model, profile
from optuna_energy.model.layers import CLASSIFIER, LAYER_KINDS, LayerKind, LayerSpec, flat
from optuna_energy.model.space import SpaceSection

SLOT_PREFIX = "s00_"


class LayerKindTestCase:
    """Checks one layer kind; override the ``kind`` fixture (and, if you like, the others)."""

    mac_tolerance: float = 0.0
    """Relative difference allowed between the kind's MACs and FlopCounterMode's FLOPs / 2. Raise
    it, with a comment saying why, for operations FlopCounterMode does not count."""
    samples_per_shape: int = 8
    """Trials sampled per stage and input shape."""

    @pytest.fixture
    def kind(self) -> LayerKind:
        raise NotImplementedError("override the kind fixture: return the LayerKind to check")

    @pytest.fixture
    def space(self) -> Any:
        """The settings handed to ``sample``: the default space's."""
        return SpaceSection()

    @pytest.fixture
    def input_shapes(self) -> list[Shape]:
        """Images a network may start from; a classifier-stage layer sees them flattened."""
        return [(3, 32, 32), (1, 8, 8), (8, 5, 7), (2, 1, 1)]

    def test_registered(self, kind: LayerKind) -> None:
        assert LAYER_KINDS.get(kind.name) is kind, f"register_layer_kind({type(kind).__name__}()) first"
        assert kind.stages, "a kind no slot may hold is never sampled: stages must name feature or classifier"

    def test_colour_and_legend(self, kind: LayerKind) -> None:
        assert isinstance(kind.default_space, bool)
        assert kind.colour is None or matplotlib.colors.is_color_like(kind.colour), (
            f"colour {kind.colour!r} is not a matplotlib colour")
        assert isinstance(kind.notation, str) and kind.notation.strip(), "notation: Fig. 2's legend line"

    def test_counts_and_shape_match_torch(self, kind: LayerKind, space: Any, input_shapes: list[Shape]) -> None:
        checked = 0
        for layer, shape in self._samples(kind, space, input_shapes):
            module = kind.module(layer, shape).eval()
            out = kind.output_shape(layer, shape)
            params, macs = kind.cost(layer, shape, out)
            where = f"{layer} on {shape}"
            assert params == sum(p.numel() for p in module.parameters()), f"parameter count of {where}"
            inputs = torch.randn(2, *shape)
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                result = module(inputs)
            assert tuple(result.shape) == (2, *out), f"output shape of {where}"
            measured = counter.get_total_flops() / 2 / len(inputs)
            assert abs(macs - measured) <= self.mac_tolerance * max(measured, 1), (
                f"MACs of {where}: {macs}, torch counts {measured:g}")
            checked += 1
        assert checked, f"{kind.name} fitted none of the input shapes {input_shapes}"

    def test_describe(self, kind: LayerKind, space: Any, input_shapes: list[Shape]) -> None:
        for layer, _ in self._samples(kind, space, input_shapes):
            text = kind.describe(layer)
            assert isinstance(text, str) and text.strip(), f"describe({layer}) must be a non-empty string"

    def test_in_a_network(self, kind: LayerKind, space: Any, input_shapes: list[Shape]) -> None:
        """The layer as a trial stores it (JSON), built with the flatten and head around it."""
        image_of = {shape: image for image in input_shapes for shape in (image, (flat(image),))}
        for layer, shape in self._samples(kind, space, input_shapes):
            spec = json.loads(json.dumps([layer]))  # what the trial record gives back
            image = image_of[shape]
            model = build_model(spec, image, 10)
            assert model(torch.randn(2, *image)).shape == (2, 10)
            assert profile(spec, image, 10).params == sum(p.numel() for p in model.parameters())

    def _samples(self, kind: LayerKind, space: Any, input_shapes: list[Shape]) -> Iterator[tuple[LayerSpec, Shape]]:
        """``(layer, shape)`` pairs whose genes a real Optuna trial suggested; shapes the kind declines
        (``sample`` returns ``None``) are left out."""
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for image in input_shapes:
            for stage in sorted(kind.stages):
                shape = (flat(image),) if stage == CLASSIFIER else image
                for _ in range(self.samples_per_shape):
                    trial = study.ask()
                    prefix = f"{SLOT_PREFIX}{kind.name}_"
                    genes = kind.sample(trial, prefix, space, shape)
                    assert all(name.startswith(prefix) for name in trial.params), (
                        f"gene names must start with {prefix!r} (samplers move a slot's genes together): "
                        f"{list(trial.params)}")
                    study.tell(trial, 0.0)
                    if genes is not None:
                        yield {"slot": 0, "kind": kind.name, **genes}, shape
