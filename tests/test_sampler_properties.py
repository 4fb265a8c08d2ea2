"""Properties of the sampler's pieces over generated inputs (Hypothesis).

Whatever the parents, rates and random draws, a child gene is a value its distribution
contains, and a slot stays consistent (a switched-off slot carries no genes; a layer's genes
are those of its type). Settings are accepted exactly in their documented ranges.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from optuna_energy.samplers._settings import EvolutionSettings
from optuna_energy.samplers._genome import Genome
from optuna_energy.samplers._variation import VariationRates, crossover, fit_to, mutate, perturb


def contains(distribution: BaseDistribution, value: Any) -> bool:
    try:
        return distribution._contains(distribution.to_internal_repr(value))
    except ValueError:  # Optuna refuses to even represent some values (0 on a log scale)
        return False


@st.composite
def numeric_distributions(draw: st.DrawFn) -> FloatDistribution | IntDistribution:
    """Int or float, plain, log or stepped, with ranges from a point to many decades."""
    kind = draw(st.sampled_from(["int", "float"]))
    shape = draw(st.sampled_from(["plain", "log", "step"]))
    if kind == "int":
        low = draw(st.integers(1 if shape == "log" else -1000, 1000))
        high = draw(st.integers(low, low + 10_000))
        step = draw(st.integers(1, 7)) if shape == "step" else 1
        high = low + (high - low) // step * step  # Optuna needs high on the step grid
        return IntDistribution(low, high, log=shape == "log", step=step)
    if shape == "log":
        low = draw(st.floats(1e-8, 1e3))
        return FloatDistribution(low, draw(st.floats(low, low * 1e6)), log=True)
    if shape == "step":
        # On a grid near 0: far from it, Optuna's own check of the grid (a tolerance of 1e-8
        # steps) rejects its own high end, e.g. 131072.001 with a step of 0.001.
        step = draw(st.sampled_from([0.001, 0.1, 0.25, 1.0]))
        low = round(draw(st.integers(-1000, 1000)) * step, 9)  # 2.8, not 28 * 0.1 = 2.8000000000000003
        return FloatDistribution(low, round(low + draw(st.integers(0, 1000)) * step, 9), step=step)
    low = draw(st.floats(-1e6, 1e6))
    return FloatDistribution(low, draw(st.floats(low, low + 1e6)))


any_value = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**9, 10**9),
                      st.booleans(), st.text(max_size=3), st.none())


@given(distribution=numeric_distributions(), value=any_value)
@example(distribution=IntDistribution(1, 3), value=math.nan)  # rounding NaN used to raise
@example(distribution=FloatDistribution(0.0, 1.0), value=math.nan)  # and NaN passed for a float
@example(distribution=IntDistribution(1, 3, log=True), value=math.inf)
def test_fit_to_gives_a_value_inside_the_distribution_or_none(
        distribution: BaseDistribution, value: Any) -> None:
    fitted = fit_to(value, distribution)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
        assert fitted is not None and contains(distribution, fitted)
        # A value already inside comes back as it was (no drift from clipping or rounding).
        if contains(distribution, value):
            assert fitted == pytest.approx(value)
    else:
        assert fitted is None  # booleans, text, None and NaN are drawn fresh instead


@given(distribution=numeric_distributions(), seed=st.integers(0, 2**32 - 1),
       scale=st.floats(0.0, 1.0), position=st.floats(0.0, 1.0))
def test_perturb_stays_inside_the_distribution(distribution: FloatDistribution | IntDistribution,
                                               seed: int, scale: float, position: float) -> None:
    start = fit_to(distribution.low + position * (distribution.high - distribution.low), distribution)
    moved = perturb(start, distribution, np.random.default_rng(seed), scale=scale)
    assert contains(distribution, moved)
    assert isinstance(moved, int if isinstance(distribution, IntDistribution) else float)


# Genomes in the space's naming: slots with on/off, a type and that type's genes; training genes.
LAYER_GENES: dict[str, dict[str, BaseDistribution]] = {
    "conv": {"width": IntDistribution(4, 256, log=True), "kernel": IntDistribution(1, 7, step=2)},
    "pool": {"size": CategoricalDistribution([2, 3])},
    "dropout": {"p": FloatDistribution(0.0, 0.8, step=0.1)},
}
TYPE = CategoricalDistribution(sorted(LAYER_GENES))
ON = CategoricalDistribution([False, True])
TRAINING: dict[str, BaseDistribution] = {
    "train_lr": FloatDistribution(1e-5, 1e-1, log=True),
    "train_optimizer": CategoricalDistribution(["sgd", "adam"]),
}


@st.composite
def genomes(draw: st.DrawFn) -> Genome:
    genome = Genome.of({}, {})
    for slot in range(draw(st.integers(0, 4))):
        block = f"s{slot:02d}"
        genome.values[f"{block}_on"], genome.distributions[f"{block}_on"] = draw(st.booleans()), ON
        if genome.values[f"{block}_on"]:
            kind = draw(st.sampled_from(TYPE.choices))
            genome.values[f"{block}_type"], genome.distributions[f"{block}_type"] = kind, TYPE
            for gene, distribution in LAYER_GENES[kind].items():
                name = f"{block}_{kind}_{gene}"
                genome.distributions[name] = distribution
                genome.values[name] = draw(st.sampled_from(distribution.choices)) \
                    if isinstance(distribution, CategoricalDistribution) else \
                    fit_to(draw(st.floats(distribution.low, distribution.high)), distribution)
    for name, distribution in TRAINING.items():
        genome.distributions[name] = distribution
        genome.values[name] = draw(st.sampled_from(distribution.choices)) \
            if isinstance(distribution, CategoricalDistribution) else \
            draw(st.floats(distribution.low, distribution.high))
    return genome


rates = st.builds(VariationRates, crossover_rate=st.floats(0, 1), slot_toggle_rate=st.floats(0, 1),
                  type_change_rate=st.floats(0, 1), gene_mutation_rate=st.floats(0, 1),
                  perturbation_scale=st.floats(0, 1))


@settings(max_examples=200)
@given(mother=genomes(), father=genomes(), rates=rates, seed=st.integers(0, 2**32 - 1))
def test_children_keep_every_gene_inside_its_distribution_and_slots_consistent(
        mother: Genome, father: Genome, rates: VariationRates, seed: int) -> None:
    rng = np.random.default_rng(seed)
    child = crossover(mother, father, rng)
    mutate(child, father, rates, rng)
    assert set(child.values) == set(child.distributions)
    for name, value in child.values.items():
        assert contains(child.distributions[name], value), (name, value)
    for block, names in child.blocks().items():
        if not block.startswith("s"):
            continue
        if not child.values[f"{block}_on"]:
            assert names == [f"{block}_on"]  # an off slot keeps nothing but its switch
        kind = child.values.get(f"{block}_type")
        assert all(name.startswith(f"{block}_{kind}_") for name in names
                   if name not in (f"{block}_on", f"{block}_type"))


@given(name=st.sampled_from(["crossover_rate", "slot_toggle_rate", "type_change_rate",
                             "gene_mutation_rate", "perturbation_scale"]),
       value=st.floats(allow_nan=True, allow_infinity=True))
def test_rates_are_accepted_exactly_in_zero_to_one(name: str, value: float) -> None:
    if 0.0 <= value <= 1.0:
        assert getattr(EvolutionSettings(**{name: value}), name) == value
    else:
        with pytest.raises(ValueError, match=f"^{name} must be between 0 and 1"):
            EvolutionSettings(**{name: value})
