"""Early stopping in a multi-objective study (accuracy against parameter count).

Optuna's pruners read ``trial.report``, which a multi-objective study refuses. ``EarlyStopper``
is asked instead, after every epoch of the objective's own training loop: at each rung it ranks
the trial's accuracy and costs against the trials that reached the same rung, and stops it if it
is still at chance or outside the best third.

The training here is a stand-in (an accuracy curve per network) so the example runs in seconds;
in a real objective, train one epoch and evaluate where the curve is computed.
"""

from __future__ import annotations

import math

import optuna
import optunahub


EPOCHS = 9
CLASSES = 10
EVAL_IMAGES = 500

module = optunahub.load_module("pruners/multi_objective_early_stopping")
# Rungs after 1 and 3 epochs (factor 3); chance is always answering the commonest of 10 classes.
stopper = module.EarlyStopper(
    epochs=EPOCHS,
    factor=3,
    chance_accuracy=1 / CLASSES,
    eval_images=EVAL_IMAGES,
    objectives=["accuracy", "params"],
)


def objective(trial: optuna.Trial) -> tuple[float, float]:
    width = trial.suggest_int("width", 4, 256, log=True)
    learning_rate = trial.suggest_float("learning_rate", 1e-4, 1.0, log=True)
    params = 800 * width
    # Too high a learning rate diverges (stays at chance); wider networks reach higher accuracy.
    ceiling = 1 / CLASSES if learning_rate > 0.3 else 0.99 - 0.6 / math.sqrt(width)
    accuracy = 1 / CLASSES
    for epoch in range(1, EPOCHS + 1):
        progress = 1 - math.exp(-epoch * min(learning_rate, 0.3) * 5)
        accuracy = 1 / CLASSES + (ceiling - 1 / CLASSES) * progress
        if stopper.should_stop(trial, epoch=epoch, accuracy=accuracy, costs=[params]):
            raise optuna.TrialPruned()
    return accuracy, params


study = optuna.create_study(
    directions=["maximize", "minimize"], sampler=optuna.samplers.TPESampler(seed=0)
)
study.optimize(objective, n_trials=40)

stopped = study.get_trials(states=[optuna.trial.TrialState.PRUNED])
print(f"{len(stopped)} of {len(study.trials)} trials stopped early; the front:")
for trial in sorted(study.best_trials, key=lambda trial: trial.values[1]):
    accuracy, params = trial.values
    print(f"accuracy {accuracy:.3f}  params {params:>7.0f}  {trial.params}")
