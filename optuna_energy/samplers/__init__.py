"""Samplers of this package; Optuna's own samplers are used as they are.

Nothing here imports the rest of the application (config, torch): ``EvolutionSampler`` works
in any Optuna study.
"""

from optuna_energy.samplers._dominance import (
    SPREAD_SUFFIX,
    dominates,
    noisy_non_domination_rank,
    noisy_pareto_mask,
)
from optuna_energy.samplers._handover import (
    HANDOVER_TRIALS,
    HandoverSampler,
    reads_whole_history,
    reads_whole_history_on_joining,
)
from optuna_energy.samplers._optuna_compat import hypervolume
from optuna_energy.samplers._sampler import PARENTS_ATTR, EvolutionSampler
from optuna_energy.samplers._seeding import MAX_SEED, SeededAtFirstTrial
from optuna_energy.samplers._selection import REFERENCE, normalised_losses
from optuna_energy.samplers._settings import SELECTIONS, EvolutionSettings

__all__ = ["HANDOVER_TRIALS", "MAX_SEED", "PARENTS_ATTR", "REFERENCE", "SELECTIONS", "SPREAD_SUFFIX",
           "EvolutionSampler", "EvolutionSettings", "HandoverSampler", "SeededAtFirstTrial", "dominates",
           "hypervolume", "noisy_non_domination_rank", "noisy_pareto_mask", "normalised_losses",
           "reads_whole_history", "reads_whole_history_on_joining"]
