"""Samplers of this package; Optuna's own samplers are used as they are."""

from optuna_energy.samplers._sampler import PARENTS_ATTR, EvolutionSampler

__all__ = ["EvolutionSampler", "PARENTS_ATTR"]
