"""Your own model family, searched for accuracy and energy with the evolution sampler.

The model is a small ResNet-like network defined here, not by optuna-energy: one to three
stages, each with its own depth, width and kernel, sampled only when the stage exists (a
conditional space). ``EvolutionSampler(block_of=...)`` is told that a stage's parameters belong
together, so children inherit whole stages from their parents. ``EnergyMonitor`` measures each
trained model and ``record_measurement`` stores it; the study ends with ``optuna-energy report``.

    python examples/own_model_family.py OUT_DIR [--trials 12]

Searches scikit-learn's digits on the CPU; a progress bar counts the trials as they end (each
trains a small network for a few epochs: seconds on an idle machine, longer on a busy one).
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

EPOCHS = 4


class Residual(nn.Module):
    def __init__(self, width: int, kernel: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, kernel, padding=kernel // 2),
                                  nn.BatchNorm2d(width), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def build(trial: optuna.Trial) -> nn.Module:
    """A variable-depth residual network: the stages, and per stage its blocks, width and kernel."""
    layers: list[nn.Module] = []
    channels = 1
    for stage in range(trial.suggest_int("stages", 1, 3)):
        width = trial.suggest_categorical(f"stage{stage}_width", [4, 8, 16])
        kernel = trial.suggest_categorical(f"stage{stage}_kernel", [1, 3])
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        layers += [Residual(width, kernel) for _ in range(trial.suggest_int(f"stage{stage}_blocks", 1, 2))]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))


def stage_block(name: str) -> str:
    """Parameters ``stageN_...`` move together in crossover; any other is a block of its own."""
    return name.split("_", 1)[0] if name.startswith("stage") else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the study database and the report")
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.manual_seed(0)
    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
    y = torch.tensor(labels)
    train = torch.utils.data.TensorDataset(x[:1400], y[:1400])
    test_x, test_y = x[1400:], y[1400:]
    monitor = optuna_energy.EnergyMonitor(device="cpu")

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        model = build(trial)
        optimizer = torch.optim.Adam(model.parameters(), lr=trial.suggest_float("lr", 3e-3, 3e-2, log=True))
        loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True)
        monitor.begin_window("training")
        model.train()
        for _ in range(EPOCHS):
            for inputs, targets in loader:
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(inputs), targets).backward()
                optimizer.step()
        training = monitor.end_window("training", model=model, example=x[:64], n_inputs=EPOCHS * len(train))
        model.eval()
        with torch.no_grad():
            accuracy = (model(test_x).argmax(dim=1) == test_y).float().mean().item()
        inference = monitor.measure_inference(model, test_x, min_window_seconds=0.05)
        summary = ", ".join(f"stage{s}: {trial.params[f'stage{s}_blocks']}x{trial.params[f'stage{s}_width']}"
                            for s in range(trial.params["stages"]))
        # A model that learned nothing is no trade-off: keep it off the fronts and the report.
        return optuna_energy.record_measurement(trial, inference, accuracy=accuracy, training=training,
                                                epochs=EPOCHS, constraints={"learned": 0.2 - accuracy},
                                                summary=summary)

    storage = f"sqlite:///{args.out / 'study.db'}"
    sampler = optuna_energy.EvolutionSampler(block_of=stage_block, population_size=6, seed=0)
    study = optuna_energy.create_study(objectives=["accuracy", "energy"], storage=storage,
                                       study_name="resnet-family", sampler=sampler, load_if_exists=True)
    study.optimize(objective, n_trials=args.trials, callbacks=[optuna_energy.ReportNote()],
                   show_progress_bar=True)  # on stderr; Ctrl-C fails the running trial and stops
    print(f"{len(study.trials)} trials; the report:", flush=True)
    command = shutil.which("optuna-energy")
    cli = [command] if command else [sys.executable, "-m", "optuna_energy.cli"]
    subprocess.run([*cli, "report", "--storage", storage, "--study-name", study.study_name,
                    "--out", str(args.out / "report")], check=True)


if __name__ == "__main__":
    main()
