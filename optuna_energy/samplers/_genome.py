"""A trial's parameters seen as a genome: blocks of genes that belong together.

The search space (``optuna_energy.space``) prefixes every gene of layer slot N with ``sNN_``:
``sNN_on``, ``sNN_type`` and the genes of that type, ``sNN_<type>_<name>``. Training genes share
the prefix ``train_``. A block is what crossover moves as a whole; any other parameter name is a
block of its own, so the sampler still works on spaces that follow no convention.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from optuna.distributions import BaseDistribution

from optuna_energy.space import slot_of, slot_prefix

TRAINING_PREFIX = "train_"


def block_of(name: str) -> str:
    """The block a gene belongs to: ``"s03"`` for slot 3, ``"train"``, or the name itself."""
    slot = slot_of(name)
    if slot is not None:
        return slot_prefix(slot).rstrip("_")
    if name.startswith(TRAINING_PREFIX):
        return TRAINING_PREFIX.rstrip("_")
    return name


def on_gene(block: str) -> str:
    return f"{block}_on"


def type_gene(block: str) -> str:
    return f"{block}_type"


def type_genes_prefix(block: str, kind: Any) -> str:
    """Prefix of the hyperparameters that belong to layer type ``kind`` in a slot block."""
    return f"{block}_{kind}_"


def is_slot_block(block: str) -> bool:
    return slot_of(block + "_") is not None


@dataclasses.dataclass
class Genome:
    """Gene values with the distributions they were drawn from, grouped into blocks."""

    values: dict[str, Any]
    distributions: dict[str, BaseDistribution]

    @classmethod
    def of(cls, params: dict[str, Any], distributions: dict[str, BaseDistribution]) -> Genome:
        return cls(values=dict(params), distributions=dict(distributions))

    def blocks(self) -> dict[str, list[str]]:
        """Gene names by block, in the order the genes were first drawn."""
        grouped: dict[str, list[str]] = {}
        for name in self.values:
            grouped.setdefault(block_of(name), []).append(name)
        return grouped

    def block(self, block: str) -> dict[str, Any]:
        return {name: value for name, value in self.values.items() if block_of(name) == block}

    def copy_block(self, source: Genome, block: str) -> None:
        """Replace this genome's block by ``source``'s (which may lack it: then it is empty)."""
        self.drop(lambda name: block_of(name) == block)
        for name, value in source.values.items():
            if block_of(name) == block:
                self.values[name] = value
                self.distributions[name] = source.distributions[name]

    def drop(self, predicate: Callable[[str], bool]) -> None:
        for name in [name for name in self.values if predicate(name)]:
            del self.values[name]
            del self.distributions[name]
