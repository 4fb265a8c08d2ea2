"""A conditional, multi-objective, constrained search with ``EvolutionSampler``.

The objective stands in for a network of one to four stages, each with its own kind, depth
and width, asked for only when the stage exists: the parameters NSGA-II and multivariate TPE
leave to random sampling. It returns an error and a cost, both minimised, and sets the cost
limit as a constraint with ``trial.set_constraint``. ``block_of`` tells the sampler that a
stage's parameters belong together, so a child inherits whole stages from its parents.
"""

from __future__ import annotations

import math

import optuna
import optunahub


MAX_COST = 20_000.0


def stage_of(name: str) -> str:
    """The block of a parameter: ``stage2_width`` and ``stage2_depth`` are stage 2's."""
    return name.split("_")[0]


def objective(trial: optuna.Trial) -> tuple[float, float]:
    capacity, cost = 0.0, 0.0
    for stage in range(trial.suggest_int("stages", 1, 4)):
        kind = trial.suggest_categorical(f"stage{stage}_kind", ["plain", "residual"])
        depth = trial.suggest_int(f"stage{stage}_depth", 1, 4)
        width = trial.suggest_int(f"stage{stage}_width", 8, 256, log=True)
        # Width pays off less and less but costs its square; residual stages learn more per layer.
        capacity += depth * math.log2(width) * (1.5 if kind == "residual" else 1.0)
        cost += depth * width**2
    trial.set_constraint("cost", cost - MAX_COST)
    return math.exp(-capacity / 15), cost


module = optunahub.load_module("samplers/conditional_evolution")
sampler = module.EvolutionSampler(population_size=16, block_of=stage_of, seed=0)
study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
study.optimize(objective, n_trials=100)

# best_trials holds feasible trials only: those within MAX_COST.
for trial in sorted(study.best_trials, key=lambda trial: trial.values[1]):
    error, cost = trial.values
    print(f"error {error:.3f}  cost {cost:>6.0f}  parents {trial.user_attrs['parents']}")
