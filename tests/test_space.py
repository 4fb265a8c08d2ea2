"""The 32-slot space: every sampled architecture computes, and its spec is the whole truth."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from optuna_energy.config import SpaceSection
from optuna_energy.model.arch import build_model, from_json, profile, summarize, to_json
from optuna_energy.model.space import sample_architecture, slot_of

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
    assert all(len([layer for layer in s.spec if layer["kind"] == "pool"]) <= 3 for s in sampled)
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


@settings(max_examples=25, deadline=None)
@given(feature_slots=st.integers(0, 64), classifier_slots=st.integers(0, 64), seed=st.integers(0, 2**16))
def test_any_slot_layout_samples_unique_parameters_and_builds(feature_slots, classifier_slots, seed):
    """With 20 feature slots the classifier used to reuse slots 16-19: 'dynamic value space'."""
    space = SpaceSection(feature_slots=feature_slots, classifier_slots=classifier_slots,
                         conv_channels=(4, 16), inception_width=(2, 8), linear_width=(8, 64))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(3):  # a later trial must meet the same distributions under the same names
        trial = study.ask()
        sampled = sample_architecture(trial, space, (1, 8, 8))
        study.tell(trial, 0.0)
        slots = [layer["slot"] for layer in sampled.spec]
        assert slots == sorted(set(slots))
        assert all(layer["slot"] < feature_slots for layer in sampled.spec
                   if layer["kind"] in ("conv", "inception", "pool"))
        with torch.device("meta"):
            assert build_model(sampled.spec, (1, 8, 8), 10)(torch.empty(2, 1, 8, 8)).shape == (2, 10)
    assert all(state == optuna.trial.TrialState.COMPLETE for state in
               (trial.state for trial in study.trials))


def test_a_study_with_twenty_feature_slots_completes_its_trials(tmp_path):
    import optuna_energy
    from tests.helpers import tiny_config

    config = tiny_config(tmp_path, learns=True, n_trials=6)
    config["space"] |= {"feature_slots": 20}
    study = optuna_energy.run_study(config, show_progress_bar=False)
    # Every trial built and trained its network (PRUNED: still at chance after its epoch).
    states = [trial.state for trial in study.trials]
    assert len(states) == 6 and set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert all(trial.user_attrs["epochs_trained"] == 1 for trial in study.trials)
    classifier = [layer["slot"] for trial in study.trials for layer in trial.user_attrs["architecture"]
                  if layer["kind"] == "linear"]
    assert classifier and min(classifier) >= 20


def test_specs_stored_by_the_16_slot_layout_rebuild_with_the_same_weights_names():
    # Stored before the layer registry: a classifier-slot activation (slot 16) before the first
    # linear layer. The flatten now sits after it, which computes the same and moves no weight.
    old = [{"slot": 0, "kind": "conv", "out_channels": 4, "kernel": [3, 3], "stride": 1, "padding": 1},
           {"slot": 16, "kind": "activation", "fn": "relu"},
           {"slot": 17, "kind": "linear", "out_features": 8}]
    model = build_model(old, (1, 8, 8), 10)
    assert set(model.state_dict()) == {"0.weight", "0.bias", "3.weight", "3.bias", "4.weight", "4.bias"}
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize(("spec", "message"), [
    ("conv", "an architecture must be a list of layer dicts, got str"),
    ([{"slot": 0, "kind": "deconv"}], "unknown layer kind 'deconv'.*allowed: conv, inception, pool"),
    ([{"slot": 0}], "unknown layer kind None.*allowed: conv"),
    ([3], "unknown layer kind None in 3; allowed: conv")])
def test_unknown_layer_kinds_are_one_line_value_errors(spec, message):
    with pytest.raises(ValueError, match=message) as raised:
        build_model(spec, (1, 8, 8), 10)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(("key", "value"), [("linear_width", [16, 100_000_000]),
                                            ("conv_channels", [8, 100_000]),
                                            ("feature_slots", 65), ("dropout", [0.0, 1.0])])
def test_absurd_space_ranges_are_refused_by_the_config(key, value):
    from optuna_energy.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=rf"^\[space\] {key} must be"):
        load_config({"space": {key: value}})
