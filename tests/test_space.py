"""The 32-slot space: every sampled architecture computes, and its spec is the whole truth."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from optuna_energy.arch import build_model, from_json, profile, summarize, to_json
from optuna_energy.config import SpaceSection
from optuna_energy.space import sample_architecture, slot_of

N_ARCHITECTURES = 200


def _sampled_specs(input_shape, n, space=SpaceSection(), seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    specs = []
    for _ in range(n):
        trial = study.ask()
        specs.append(sample_architecture(trial, space, input_shape))
        study.tell(trial, 0.0)
    return specs


@pytest.mark.parametrize("input_shape", [(1, 8, 8), (3, 32, 32)])
def test_random_architectures_from_the_full_space_build_and_run(input_shape):
    kinds = set()
    for sampled in _sampled_specs(input_shape, N_ARCHITECTURES):
        spec = sampled.spec
        kinds.update(layer["kind"] for layer in spec)
        # Meta tensors carry shapes through every layer without allocating weights, so the
        # largest 32x32 models (128-channel 21x21 convolutions) are checked in milliseconds.
        with torch.device("meta"):
            model = build_model(spec, input_shape, 10)
            out = model(torch.empty(2, *input_shape))
        assert out.shape == (2, 10), summarize(spec)
        assert sum(p.numel() for p in model.parameters()) == profile(spec, input_shape, 10).params
    assert kinds == {"conv", "inception", "pool", "activation", "dropout", "linear"}


def test_real_forward_pass_on_cpu_for_sampled_architectures():
    small = SpaceSection(conv_channels=(4, 16), inception_width=(2, 8), linear_width=(8, 64))
    for input_shape in [(1, 8, 8), (3, 32, 32)]:
        for sampled in _sampled_specs(input_shape, 25, small, seed=1):
            model = build_model(sampled.spec, input_shape, 10).eval()
            with torch.no_grad():
                out = model(torch.randn(4, *input_shape))
            assert out.shape == (4, 10)
            assert torch.isfinite(out).all()


def test_large_inputs_can_get_non_square_kernels_like_20x3():
    shapes = set()
    for sampled in _sampled_specs((3, 64, 64), 150, seed=3):
        shapes.update(tuple(layer["kernel"]) for layer in sampled.spec if layer["kind"] == "conv")
    assert any(kh >= 15 and kw <= 4 for kh, kw in shapes)
    assert all(kh <= 21 and kw <= 21 for kh, kw in shapes)


def test_kernels_never_exceed_the_feature_map_and_unfit_slots_are_off():
    space = SpaceSection(feature_types=("pool",), pool_kernel=(2, 3), pool_stride=(2, 2))
    sampled = _sampled_specs((1, 8, 8), 20, space, seed=4)
    assert all(len([l for l in s.spec if l["kind"] == "pool"]) <= 3 for s in sampled)
    assert any(s.skipped_slots for s in sampled)  # 8 -> 4 -> 2 -> 1: the 4th pool cannot fit
    for s in sampled:
        assert not set(s.skipped_slots) & {layer["slot"] for layer in s.spec}


def test_macs_match_torch_flop_counter():
    for sampled in _sampled_specs((3, 16, 16), 30, seed=5):
        model = build_model(sampled.spec, (3, 16, 16), 10)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(1, 3, 16, 16))
        assert counter.get_total_flops() == 2 * profile(sampled.spec, (3, 16, 16), 10).macs


def test_spec_survives_json_and_names_slots_by_prefix():
    sampled = _sampled_specs((1, 8, 8), 5, seed=6)[-1]
    assert from_json(to_json(sampled.spec)) == sampled.spec
    json.dumps(sampled.spec)  # plain JSON value
    assert slot_of("s07_conv_kh") == 7 and slot_of("s31_on") == 31 and slot_of("train_lr") is None


def test_from_json_rejects_what_is_not_an_architecture():
    with pytest.raises(ValueError, match="JSON list of layer objects"):
        from_json('{"kind": "conv"}')
