"""Genome-aware variation: crossover by block, mutation of slots, types and genes, clipping.

Crossover never splits a block, so a child's layer in slot N is always a whole layer of one
parent: its on/off state, its type and that type's hyperparameters together. Mutation acts at
three levels, mirroring MENNDL's: a slot is switched on or off, a layer changes type, and a
hyperparameter is perturbed inside its distribution. A gene a mutation removes (a slot switched
on, a new type whose hyperparameters neither parent has) is left out of the child and drawn
fresh from the distribution the objective asks for.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from optuna_energy.samplers._genome import (
    Genome,
    is_slot_block,
    on_gene,
    type_gene,
    type_genes_prefix,
)


@dataclasses.dataclass(frozen=True)
class VariationRates:
    """Probabilities of the variation operators (see ``EvolutionSampler`` for the defaults)."""

    crossover_rate: float
    slot_toggle_rate: float
    type_change_rate: float
    gene_mutation_rate: float
    perturbation_scale: float


def crossover(first: Genome, second: Genome, rng: np.random.Generator) -> Genome:
    """Uniform crossover by block: each block of the child comes whole from one parent."""
    child = Genome.of({}, {}, block_of=first.block_of)
    for block in dict.fromkeys([*first.blocks(), *second.blocks()]):
        child.copy_block(first if rng.random() < 0.5 else second, block)
    return child


def mutate(child: Genome, other: Genome, rates: VariationRates, rng: np.random.Generator) -> None:
    """Mutate ``child`` in place; ``other`` is the second parent, a source of whole layers."""
    for block, names in child.blocks().items():
        structural: tuple[str, ...] = ()
        if is_slot_block(block) and on_gene(block) in child.values:
            if rng.random() < rates.slot_toggle_rate:
                _toggle_slot(child, block)
                continue
            if (type_gene(block) in child.values and rng.random() < rates.type_change_rate
                    and _change_type(child, other, block, rng)):
                continue
            structural = (on_gene(block), type_gene(block))  # changed only by the two above
        for name in names:
            if name not in structural and rng.random() < rates.gene_mutation_rate:
                child.values[name] = perturb(child.values[name], child.distributions[name],
                                             rng, scale=rates.perturbation_scale)


def _toggle_slot(child: Genome, block: str) -> None:
    """Switch a slot off, or on with a type and hyperparameters left to be drawn fresh."""
    was_on = bool(child.values[on_gene(block)])
    child.drop(lambda name: child.block_of(name) == block and name != on_gene(block))
    child.values[on_gene(block)] = not was_on


def _change_type(child: Genome, other: Genome, block: str, rng: np.random.Generator) -> bool:
    """Give the slot another layer type; hyperparameters come from ``other`` when it has that type."""
    current = child.values[type_gene(block)]
    distribution = child.distributions[type_gene(block)]
    assert isinstance(distribution, CategoricalDistribution)
    choices = [choice for choice in distribution.choices if choice != current]
    if not choices:
        return False
    new = choices[rng.integers(len(choices))]
    child.drop(lambda name: name.startswith(type_genes_prefix(block, current)))
    child.values[type_gene(block)] = new
    if other.values.get(type_gene(block)) == new:
        prefix = type_genes_prefix(block, new)
        for name, value in other.values.items():
            if name.startswith(prefix):
                child.values[name] = value
                child.distributions[name] = other.distributions[name]
    return True


def perturb(value: Any, distribution: BaseDistribution, rng: np.random.Generator, *,
            scale: float) -> Any:
    """A nearby value inside ``distribution``: Gaussian steps for numbers, another choice otherwise.

    The step's standard deviation is ``scale`` times the range, on the log scale for log
    distributions, so a mutation explores as far in relative terms at 8 channels as at 128.
    """
    if isinstance(distribution, CategoricalDistribution):
        others = [choice for choice in distribution.choices if choice != value]
        return others[rng.integers(len(others))] if others else value
    if isinstance(distribution, (FloatDistribution, IntDistribution)):
        log = distribution.log
        low, high = distribution.low, distribution.high
        warp = math.log if log else float
        position = warp(value) + rng.normal(0.0, scale * (warp(high) - warp(low)))
        stepped = math.exp(position) if log else position
        return fit_to(stepped, distribution)
    return value


def fit_to(value: Any, distribution: BaseDistribution) -> Any | None:
    """``value`` made valid for ``distribution``: clipped and rounded to its step, or ``None``.

    ``None`` means the value cannot be used at all (a choice the distribution lacks, a number
    where a category is asked for, NaN) and the gene must be drawn fresh.
    """
    if isinstance(distribution, CategoricalDistribution):
        return value if value in distribution.choices else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None  # NaN has no place in any range; infinities clip to its ends
    if isinstance(distribution, IntDistribution):
        steps = round((min(max(value, distribution.low), distribution.high) - distribution.low)
                      / distribution.step)
        return min(distribution.low + steps * distribution.step, distribution.high)
    if isinstance(distribution, FloatDistribution):
        clipped = min(max(float(value), distribution.low), distribution.high)
        if distribution.step is None:
            return clipped
        steps = round((clipped - distribution.low) / distribution.step)
        return min(distribution.low + steps * distribution.step, distribution.high)
    return None
