"""The sampler's settings: defaults, allowed ranges and their checks, in one place.

``EvolutionSampler`` validates its arguments here, and the study configuration's
``[evolution]`` section is this same dataclass, so a range is written once. Nothing here
imports the application (config, torch): the sampler is usable in any Optuna study.
"""

from __future__ import annotations

import dataclasses
from numbers import Real

SELECTIONS = ("hypervolume", "crowding")
"""How the sampler ranks trials within a front (see ``optuna_energy.samplers._selection``)."""

RATES = ("crossover_rate", "slot_toggle_rate", "type_change_rate", "gene_mutation_rate",
         "perturbation_scale")
"""The settings that are probabilities or fractions of a range: each must be in [0, 1]."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvolutionSettings:
    """Population and variation rates of ``EvolutionSampler`` (the ``[evolution]`` config section).

    The rates started at about one structural change per child, as in MENNDL: 32 slots toggled
    with 0.03 each, a type change with 0.05 per active layer, each hyperparameter perturbed
    with 0.1. On the digits benchmark's first round (commit 91e7a87) doubling all three raised the
    mean hypervolume from 0.47 to 0.56 and tripling gave 0.51, so the defaults are the doubled
    rates: about two slots switched, one layer retyped and a fifth of the numeric genes moved
    (a Gaussian step of 0.15 of the log range) per child. Less variation converged early:
    crossover at 0.3 instead of 0.9 dropped the hypervolume to 0.35. A population of 16, the
    first 16 trials random, leaves most of a 100-trial budget to evolution.

    Raises:
        ValueError: On construction, naming the first bad setting and what is allowed.
    """

    population_size: int = 16
    tournament_size: int = 2
    selection: str = "hypervolume"
    crossover_rate: float = 0.9
    slot_toggle_rate: float = 0.06
    type_change_rate: float = 0.1
    gene_mutation_rate: float = 0.2
    perturbation_scale: float = 0.15

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection is {self.selection!r}; allowed: {', '.join(SELECTIONS)}")
        # The config section's messages are these, prefixed with "[evolution] ": keep them stable.
        if not _is_int(self.population_size) or self.population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {self.population_size!r}")
        if not _is_int(self.tournament_size) or not 1 <= self.tournament_size <= self.population_size:
            raise ValueError(f"tournament_size must be between 1 and population_size "
                             f"({self.population_size}), got {self.tournament_size!r}")
        for name in RATES:
            value = getattr(self, name)
            # bool is a Real to Python, so exclude it; NaN and infinities fail the range test.
            if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")


def _is_int(value: object) -> bool:
    """An integer proper: ``True`` is an ``int`` to Python but no population size."""
    return isinstance(value, int) and not isinstance(value, bool)
