"""A trial's parameters seen as a genome: blocks of genes that belong together.

The search space (``optuna_energy.model.space``) prefixes every gene of layer slot N with ``sNN_``:
``sNN_on``, ``sNN_type`` and the genes of that type, ``sNN_<type>_<name>``. Training genes share
the prefix ``train_``. A block is what crossover moves as a whole; any other parameter name is a
block of its own, so the sampler still works on spaces that follow no convention. A space of
one's own declares its blocks with a function from parameter name to block key
(``EvolutionSampler(block_of=...)``); :func:`block_of` is the default.

The naming is read here rather than imported from ``optuna_energy.model.space``, which builds models
(torch) and reads the application's config: the sampler works in any Optuna study and imports
neither. ``tests/test_evolution.py`` checks that this reading agrees with the space's writing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from optuna.distributions import BaseDistribution

TRAINING_PREFIX = "train_"
_SLOT_BLOCK = re.compile(r"^(s\d+)_")  # "s03" of "s03_conv_kh": what the space writes per slot


BlockOf = Callable[[str], str]
"""A function from a parameter's name to its block's key: parameters with one key move together."""


def block_of(name: str) -> str:
    """The block a gene belongs to: ``"s03"`` for slot 3, ``"train"``, or the name itself.

    The default ``BlockOf``: the search space's ``sNN_`` rule.
    """
    slot = _SLOT_BLOCK.match(name)
    if slot is not None:
        return slot.group(1)
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
    return _SLOT_BLOCK.match(block + "_") is not None


@dataclasses.dataclass
class Genome:
    """Gene values with the distributions they were drawn from, grouped into blocks."""

    values: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    block_of: BlockOf = block_of
    """How gene names group into blocks."""

    @classmethod
    def of(cls, params: dict[str, Any], distributions: dict[str, BaseDistribution], *,
           block_of: BlockOf = block_of) -> Genome:
        return cls(values=dict(params), distributions=dict(distributions), block_of=block_of)

    def blocks(self) -> dict[str, list[str]]:
        """Gene names by block, in the order the genes were first drawn."""
        grouped: dict[str, list[str]] = {}
        for name in self.values:
            grouped.setdefault(self.block_of(name), []).append(name)
        return grouped

    def block(self, block: str) -> dict[str, Any]:
        return {name: value for name, value in self.values.items() if self.block_of(name) == block}

    def copy_block(self, source: Genome, block: str) -> None:
        """Replace this genome's block by ``source``'s (which may lack it: then it is empty)."""
        self.drop(lambda name: self.block_of(name) == block)
        for name, value in source.values.items():
            if self.block_of(name) == block:
                self.values[name] = value
                self.distributions[name] = source.distributions[name]

    def drop(self, predicate: Callable[[str], bool]) -> None:
        for name in [name for name in self.values if predicate(name)]:
            del self.values[name]
            del self.distributions[name]
