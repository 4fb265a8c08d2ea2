"""The built-in 32-slot search space inside a training loop of your own.

Each trial samples an architecture and its training hyperparameters from optuna-energy's space,
trains it with a plain PyTorch loop written here, measures its inference time and energy per
image with ``EnergyMonitor`` (training metered in a window) and records them, so that
``optuna-energy report`` reads the study as it reads a built-in one.

    python examples/builtin_space_own_loop.py OUT_DIR [--trials 10]

Searches scikit-learn's digits on the CPU; a progress bar counts the trials as they end (each
trains a small network for a few epochs: seconds on an idle machine, longer on a busy one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import optuna
import torch
from sklearn.datasets import load_digits
from torch import nn

import optuna_energy

EPOCHS = 3


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits as (N, 1, 8, 8) floats in [0, 1]: the first 1400 images to train, the rest to test."""
    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
    y = torch.tensor(labels)
    return x[:1400], y[:1400], x[1400:], y[1400:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the study database")
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.manual_seed(0)
    train_x, train_y, test_x, test_y = digits()
    space = optuna_energy.SpaceSection(conv_channels=(4, 32), linear_width=(16, 128))
    monitor = optuna_energy.EnergyMonitor(device="cpu")  # the meter and idle power: once

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        params = optuna_energy.suggest_training(trial)
        spec = optuna_energy.suggest_architecture(trial, (1, 8, 8), 10, space=space)
        model = optuna_energy.build_model(spec, (1, 8, 8), 10)
        optimizer = torch.optim.AdamW(model.parameters(), lr=params.learning_rate,
                                      weight_decay=params.weight_decay)
        monitor.begin_window("training")
        model.train()
        for _ in range(EPOCHS):
            for batch in torch.randperm(len(train_x)).split(params.batch_size):
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(train_x[batch]), train_y[batch]).backward()
                optimizer.step()
        training = monitor.end_window("training", model=model, example=train_x[:params.batch_size],
                                      n_inputs=EPOCHS * len(train_x))
        model.eval()
        with torch.no_grad():
            accuracy = (model(test_x).argmax(dim=1) == test_y).float().mean().item()
        inference = monitor.measure_inference(model, test_x, min_window_seconds=0.05)
        return optuna_energy.record_measurement(trial, inference, accuracy=accuracy,
                                                training=training, epochs=EPOCHS)

    study = optuna_energy.create_study(objectives=["accuracy", "energy"],
                                       storage=f"sqlite:///{args.out / 'study.db'}",
                                       study_name="builtin-space", load_if_exists=True,
                                       sampler=optuna_energy.EvolutionSampler(population_size=6, seed=0))
    study.optimize(objective, n_trials=args.trials,
                   show_progress_bar=True)  # on stderr; Ctrl-C fails the running trial and stops
    print(f"Pareto front of {study.study_name!r} ({len(study.best_trials)} of {len(study.trials)} trials):")
    print(optuna_energy.format_table(study, optuna_energy.pareto_trials(study)))


if __name__ == "__main__":
    main()
