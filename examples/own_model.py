"""Your own model family with what the built-in search has: costs first, multi-objective early
stopping, a training budget in epochs (and, optionally, in grams of CO2e), energy reported as
carbon, and GPU sharing under ``optuna-energy launch --per-gpu``.

The family is a multilayer perceptron defined here (one to three hidden layers, each with its
own width, and the activation), not the 32-slot space. Each trial measures its untrained model
first (``measure_costs_first``: a model over ``--max-params`` is never trained), trains as many
epochs as the budget lets it claim, and asks ``EarlyStopper`` at every epoch whether it can still
reach the Pareto front of accuracy and energy per inference. The study ends with
``optuna-energy report``, whose savings line counts what early stopping saved.

    python examples/own_model.py OUT_DIR [--trials 16] [--epochs 9] [--max-train-epochs 60]
        [--carbon-intensity 400] [--max-train-co2e-g GRAMS]

Searches scikit-learn's digits; ``--first-rung`` equal to ``--epochs`` trains every trial fully
(no rung to stop at). Seconds per trial on the CPU.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import torch
from sklearn.datasets import load_digits
from torch import nn

import optuna_energy


def build(trial: optuna.Trial) -> nn.Module:
    """An MLP on the 64 pixels: its hidden layers, each layer's width, and the activation."""
    activation = {"relu": nn.ReLU, "tanh": nn.Tanh}[trial.suggest_categorical("activation", ["relu", "tanh"])]
    layers: list[nn.Module] = [nn.Flatten()]
    width = 64
    for layer in range(trial.suggest_int("layers", 1, 3)):
        out = trial.suggest_int(f"width{layer}", 4, 256, log=True)
        layers += [nn.Linear(width, out), activation()]
        width = out
    return nn.Sequential(*layers, nn.Linear(width, 10))


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the study database and the report")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=9, help="full training")
    parser.add_argument("--first-rung", type=int, default=1, help="epochs before the first decision")
    parser.add_argument("--max-train-epochs", type=int, default=60, help="the study's epoch budget")
    parser.add_argument("--max-params", type=float, default=20_000, help="larger models are never trained")
    parser.add_argument("--carbon-intensity", type=float, default=400.0,
                        help="grams of CO2e per kWh of your electricity (your grid's or supplier's figure)")
    parser.add_argument("--max-train-co2e-g", type=float, help="the study's training budget in grams of CO2e")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-report", action="store_true", help="stop after the search")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    args.out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = torch.device(args.device)
    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images, dtype=torch.float32, device=device) / 16
    y = torch.tensor(labels, device=device)
    train_x, train_y, test_x, test_y = x[:1400], y[:1400], x[1400:], y[1400:]
    chance = torch.bincount(test_y).max().item() / len(test_y)  # always answering the commonest digit
    monitor = optuna_energy.EnergyMonitor(device=device, idle_seconds=0.5)
    stopper = optuna_energy.EarlyStopper(epochs=args.epochs, first_rung=args.first_rung, factor=3,
                                         chance_accuracy=chance, eval_images=len(test_y),
                                         max_train_epochs=args.max_train_epochs,
                                         max_train_energy=None if args.max_train_co2e_g is None else  # a carbon
                                         optuna_energy.joules_of_co2e(args.max_train_co2e_g,  # budget is joules
                                                                      intensity_g_per_kwh=args.carbon_intensity))

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        epochs = stopper.claim(trial)  # first: a trial the budget cannot pay costs nothing (pruned)
        torch.manual_seed(args.seed + trial.number)
        model = build(trial).to(device)
        optuna_energy.measure_costs_first(trial, model, test_x, monitor=monitor, min_window_seconds=0.05,
                                          limits={"max_params": args.max_params})  # pruned if over
        optimizer = torch.optim.Adam(model.parameters(), lr=trial.suggest_float("lr", 1e-3, 3e-2, log=True))
        windows = []
        with optuna_energy.gpu_share.training(device):  # other workers' measuring windows stay out
            for epoch in range(1, epochs + 1):
                monitor.begin_window("epoch")
                model.train()
                for batch in torch.randperm(len(train_x), device=device).split(64):
                    optuna_energy.gpu_share.step()
                    optimizer.zero_grad()
                    nn.functional.cross_entropy(model(train_x[batch]), train_y[batch]).backward()
                    optimizer.step()
                windows.append(monitor.end_window("epoch", model=model, example=train_x[:64],
                                                  n_inputs=len(train_x)))
                model.eval()
                with torch.no_grad():
                    accuracy = (model(test_x).argmax(dim=1) == test_y).float().mean().item()
                if stopper.should_stop(trial, epoch=epoch, accuracy=accuracy,
                                       train_energy_j=sum(window.joules for window in windows)):
                    raise optuna.TrialPruned()  # its rung, reason and joules are on its record
        return optuna_energy.record_measurement(trial, accuracy=accuracy, training=windows, epochs=epoch,
                                                constraints={"learned": stopper.learned - accuracy})

    storage = f"sqlite:///{args.out / 'study.db'}"
    study = optuna_energy.create_study(objectives=["accuracy", "energy"], storage=storage, study_name="mlp-family",
                                       sampler=optuna.samplers.TPESampler(seed=args.seed), load_if_exists=True,
                                       carbon_intensity_g_per_kwh=args.carbon_intensity)  # the report's grams
    study.optimize(objective, n_trials=args.trials)
    print(f"{len(study.trials)} trials", flush=True)
    if args.no_report:
        return
    command = shutil.which("optuna-energy")
    cli = [command] if command else [sys.executable, "-m", "optuna_energy.cli"]
    subprocess.run([*cli, "report", "--storage", storage, "--study-name", study.study_name,
                    "--out", str(args.out / "report")], check=True)


if __name__ == "__main__":
    main()
