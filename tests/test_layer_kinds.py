"""Every layer kind passes the package's conformance suite, and a kind registered at run time works
everywhere a built-in one does: the config, the space, build_model, summaries and Fig. 2."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import matplotlib.colors
import optuna
import pytest
from optuna.trial import create_trial
from torch import nn

from optuna_energy.config import ConfigError, load_config
from optuna_energy.model.arch import build_model, profile, summarize
from optuna_energy.model.layers import (
    FEATURE,
    LAYER_KINDS,
    LayerKind,
    conv_cost,
    kinds_for,
    register_layer_kind,
)
from optuna_energy.model.space import SpaceSection, sample_architecture
from optuna_energy.reading.plots import topology_figure
from optuna_energy.reading.report import build_report
from optuna_energy.testing.layer_kinds import LayerKindTestCase
from tests.test_analysis import named_study

SLOT_KINDS = [name for name, kind in LAYER_KINDS.items() if kind.stages]  # flatten is placed, never sampled


class TestBuiltInKinds(LayerKindTestCase):
    @pytest.fixture(params=SLOT_KINDS)
    def kind(self, request: pytest.FixtureRequest) -> LayerKind:
        return LAYER_KINDS[request.param]


class SeparableConv(LayerKind):
    """A depthwise-separable convolution (MobileNet's): a k x k filter per channel, then 1x1."""

    name = "sepconv"
    stages = frozenset({FEATURE})
    default_space = False
    colour = "#c7e9c0"
    notation = "sep3/32: depthwise-separable convolution, 3x3 kernel, 32 output channels"

    def sample(self, trial: Any, prefix: str, space: Any, shape: tuple[int, ...]) -> dict[str, Any] | None:
        _, height, width = shape
        if min(height, width) < 2:
            return None
        return {"kernel": trial.suggest_int(prefix + "k", 2, min(5, height, width)),
                "out_channels": trial.suggest_int(prefix + "out", 4, 64, log=True)}

    def output_shape(self, layer: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
        _, height, width = shape
        return (layer["out_channels"], height - layer["kernel"] + 1, width - layer["kernel"] + 1)

    def cost(self, layer: Any, shape: tuple[int, ...], out: tuple[int, ...]) -> tuple[int, int]:
        c_in, pixels = shape[0], out[1] * out[2]
        depthwise = (c_in * (layer["kernel"] ** 2 + 1), c_in * layer["kernel"] ** 2 * pixels)
        pointwise = conv_cost(c_in, out[0], 1, pixels)
        return depthwise[0] + pointwise[0], depthwise[1] + pointwise[1]

    def module(self, layer: Any, shape: tuple[int, ...]) -> nn.Module:
        return nn.Sequential(nn.Conv2d(shape[0], shape[0], layer["kernel"], groups=shape[0]),
                             nn.Conv2d(shape[0], layer["out_channels"], 1))

    def describe(self, layer: Any) -> str:
        return f"sep{layer['kernel']}/{layer['out_channels']}"


@pytest.fixture
def sepconv() -> Iterator[LayerKind]:
    kind = register_layer_kind(SeparableConv())
    yield kind
    LAYER_KINDS.unregister(kind.name)


class TestKindRegisteredAtRunTime(LayerKindTestCase):
    @pytest.fixture
    def kind(self, sepconv: LayerKind) -> LayerKind:
        return sepconv


def test_a_registered_kind_is_allowed_but_stays_out_of_the_default_space(sepconv):
    assert "sepconv" in kinds_for(FEATURE)
    assert "sepconv" not in SpaceSection().feature_types
    assert "sepconv" not in load_config(None).space.feature_types
    config = load_config({"space": {"feature_types": ["conv", "sepconv"]}})
    assert config.space.feature_types == ("conv", "sepconv")


def test_an_unregistered_kind_is_a_one_line_config_error_listing_the_registered():
    with pytest.raises(ConfigError, match=r"feature_types must list distinct names from: conv, .*; got \['sepconv'\]"):
        load_config({"space": {"feature_types": ["sepconv"]}})


def test_a_registered_kind_is_sampled_built_counted_and_summarised(sepconv):
    space = SpaceSection(feature_types=("sepconv",), feature_slots=4, classifier_slots=1)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    specs = [sample_architecture(study.ask(), space, (3, 16, 16)).spec for _ in range(10)]
    layers = [layer for spec in specs for layer in spec if layer["kind"] == "sepconv"]
    assert layers and all(set(layer) == {"slot", "kind", "kernel", "out_channels"} for layer in layers)
    for spec in specs:
        model = build_model(spec, (3, 16, 16), 10)
        assert profile(spec, (3, 16, 16), 10).params == sum(p.numel() for p in model.parameters())
    assert "sep" in summarize([layers[0]])


def test_fig2_draws_a_registered_kind_in_its_colour_with_its_legend_line(sepconv):
    spec = [{"slot": 0, "kind": "sepconv", "kernel": 3, "out_channels": 32},
            {"slot": 1, "kind": "activation", "fn": "relu"}]
    study = named_study(("accuracy", "params"))
    for accuracy, params in ((0.9, 1000), (0.8, 100)):
        study.add_trial(create_trial(values=[accuracy, params], user_attrs={
            "accuracy": accuracy, "params": params, "energy_per_inference_j": params / 1e6,
            "inference_time_s": params / 1e4, "architecture": spec}))
    figure = topology_figure(build_report(study))
    texts = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert sepconv.notation in texts and LAYER_KINDS["conv"].notation in texts
    assert LAYER_KINDS["activation"].notation not in texts  # activations are left out, as in the paper
    boxes = [patch for patch in figure.axes[0].patches if hasattr(patch, "get_boxstyle")]
    assert len(boxes) == 2  # the separable convolution and the head; the activation is not drawn
    assert boxes[0].get_facecolor() == matplotlib.colors.to_rgba(sepconv.colour)


def test_a_kind_that_says_so_joins_the_default_space():
    class Identity(SeparableConv):
        name = "identity_default"
        default_space = True

    register_layer_kind(Identity())
    try:
        assert SpaceSection().feature_types[-1] == "identity_default"
    finally:
        LAYER_KINDS.unregister("identity_default")
    assert "identity_default" not in SpaceSection().feature_types


def test_registering_is_refused_with_one_line_saying_what_is_missing():
    incomplete = type("Incomplete", (LayerKind,), {
        "name": "incomplete", "stages": frozenset({FEATURE}), "notation": "x",
        "sample": SeparableConv.sample, "module": SeparableConv.module, "describe": SeparableConv.describe})
    with pytest.raises(ValueError, match=r"^layer kind 'incomplete' \(Incomplete\) must set default_space, colour"):
        register_layer_kind(incomplete())
    with pytest.raises(ValueError, match=r"^layer kind 'conv' is already registered; registered: conv, inception"):
        register_layer_kind(type("Conv2", (SeparableConv,), {"name": "conv"})())
    with pytest.raises(ValueError, match=r"stages may name 'feature' and 'classifier', got \{'head'\}"):
        register_layer_kind(type("Head", (SeparableConv,), {"name": "head", "stages": frozenset({"head"})})())
    with pytest.raises(TypeError, match=r"layer kind 'odd' must be a LayerKind \(or its class\), got str"):
        LAYER_KINDS.register("odd", "not a kind")
    assert "incomplete" not in LAYER_KINDS and "head" not in LAYER_KINDS


def test_an_entry_point_may_name_the_class():
    """Entry points name a class (``my_package.layers:SeparableConv``); the registry makes the kind."""
    entry = LAYER_KINDS.register("sepconv", SeparableConv)
    try:
        assert isinstance(entry, SeparableConv) and LAYER_KINDS["sepconv"] is entry
    finally:
        LAYER_KINDS.unregister("sepconv")


class MiscountedConv(SeparableConv):
    """Counts the depthwise step's MACs once per kernel row only: the suite must say so."""

    def cost(self, layer: Any, shape: tuple[int, ...], out: tuple[int, ...]) -> tuple[int, int]:
        params, macs = super().cost(layer, shape, out)
        return params, macs - shape[0] * layer["kernel"] * (layer["kernel"] - 1) * out[1] * out[2]


class StraySepConv(SeparableConv):
    """Names a gene outside its slot's block, which samplers would not move with the slot."""

    def sample(self, trial: Any, prefix: str, space: Any, shape: tuple[int, ...]) -> dict[str, Any] | None:
        return {**(super().sample(trial, prefix, space, shape) or {}), "bias": trial.suggest_int("bias", 0, 1)}


def test_the_suite_tells_an_author_what_is_wrong():
    suite, space = LayerKindTestCase(), SpaceSection()
    with pytest.raises(AssertionError, match=r"MACs of .*sepconv.* on \(3, 8, 8\): \d+, torch counts"):
        suite.test_counts_and_shape_match_torch(MiscountedConv(), space, [(3, 8, 8)])
    with pytest.raises(AssertionError, match=r"gene names must start with 's00_sepconv_'"):
        suite.test_describe(StraySepConv(), space, [(3, 8, 8)])
    with pytest.raises(AssertionError, match=r"register_layer_kind\(SeparableConv\(\)\) first"):
        suite.test_registered(SeparableConv())
