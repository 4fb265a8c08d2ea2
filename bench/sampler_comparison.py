"""Compare samplers on the digits study: hypervolume of the final Pareto front, best accuracy,
and the lowest energy within one accuracy point of it. Not a test; results go to
docs/BENCHMARKS.md.

    nice -n 10 python bench/sampler_comparison.py run --seeds 0 1 2 3 4 --trials 100 \
        --out bench/results/learned/all.json
    python bench/sampler_comparison.py report bench/results/learned/*.json

``run`` appends one record per (sampler, seed) to the JSON file as soon as that run ends and
skips runs the file already holds, so an interrupted benchmark resumes. Each study lives in
memory; every run uses the same data split (seed 0) and the run's seed for the sampler and the
trials' weights.

Hypervolume: accuracy becomes the error ``1 - accuracy`` (already in [0, 1]); inference time,
params and energy span orders of magnitude and are taken as log10, then min-max normalised over
every completed trial of every run in the files, so all samplers share one scale. The reference
point is 1.1 in every normalised objective. The main figure counts only the trials that learned
(the objective's ``learned`` constraint: better than always answering the most frequent class),
as ``study.best_trials`` does; the hypervolume of all completed trials is reported beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import optuna
import torch
from optuna._hypervolume import compute_hypervolume
from optuna.trial import TrialState

from optuna_energy.config import load_config
from optuna_energy.data import DeviceData, load_dataset
from optuna_energy.host.files import write_text
from optuna_energy.host.meters import EstimateMeter
from optuna_energy.model.arch import profile
from optuna_energy.model.space import sample_architecture, sample_training
from optuna_energy.study import create_sampler
from optuna_energy.trial.objective import Objective
from optuna_energy.trial.train import TrialFailure

CONFIG = Path(__file__).with_name("sampler_comparison.toml")
SAMPLERS = ("evolution", "nsga2", "tpe", "random")
REFERENCE = 1.1
ACCURACY_MARGIN = 0.01


def run(samplers: list[str], seeds: list[int], trials: int, out: Path, *,
        label: str | None = None, evolution: dict[str, str] | None = None) -> None:
    """Run every sampler for every seed; ``label`` names a variant set by ``evolution`` keys."""
    records = json.loads(out.read_text()) if out.exists() else []
    done = {(r["sampler"], r["seed"]) for r in records}
    config = load_config(CONFIG)
    if evolution:
        settings = {**dataclasses.asdict(config.evolution), **evolution}
        config = dataclasses.replace(config, evolution=load_config({"evolution": settings}).evolution)
    data = DeviceData(load_dataset(config.dataset, seed=0), torch.device("cpu"))
    for seed in seeds:
        for name in samplers:
            if (label or name, seed) in done:
                continue
            seeded = config.with_study(seed=seed, sampler=name, n_trials=trials)
            study = optuna.create_study(directions=seeded.directions,
                                        sampler=create_sampler(name, seed=seed,
                                                               evolution=seeded.evolution))
            start = time.perf_counter()
            study.optimize(Objective(seeded, data, meter=EstimateMeter()), n_trials=trials,
                           catch=(TrialFailure,))
            seconds = time.perf_counter() - start
            completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            records.append({
                "sampler": label or name, "seed": seed, "trials": trials, "seconds": seconds,
                "evolution": dataclasses.asdict(seeded.evolution) if name == "evolution" else None,
                "objectives": list(seeded.study.objectives),
                "values": [list(t.values) for t in completed],
                "feasible": [all(v <= 0 for v in t.constraints.values()) for t in completed],
                "energy_source": completed[0].user_attrs.get("energy_source") if completed else None,
            })
            out.parent.mkdir(parents=True, exist_ok=True)
            write_text(out, json.dumps(records))
            print(f"{label or name:10s} seed {seed}: {len(completed)} completed in {seconds:.0f} s", flush=True)


def report(paths: list[Path]) -> str:
    records = [record for path in paths for record in json.loads(path.read_text())]
    scale = pooled_scale(records)
    seeds = sorted({r["seed"] for r in records})
    per_seed = ["", "Hypervolume of the learned trials, by seed:", "",
                "| sampler | " + " | ".join(f"seed {seed}" for seed in seeds) + " |",
                "|---|" + "---|" * len(seeds)]
    lines = [
        "| sampler | runs | hypervolume, learned trials: mean ± sd | min – max "
        "| hypervolume, all trials | trials that learned % | best accuracy % mean ± sd "
        "| energy at best − 1 pt, nJ/image (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = dict.fromkeys([*SAMPLERS, *(r["sampler"] for r in records)])
    for name in [s for s in names if any(r["sampler"] == s for r in records)]:
        runs = [r for r in records if r["sampler"] == name]
        metrics = {key: np.array(column) for key, column in
                   zip(RunMetrics._fields, zip(*(_run_metrics(r, scale) for r in runs)))}
        by_seed = {r["seed"]: f"{v:.4f}" for r, v in zip(runs, metrics["learned_volume"])}
        per_seed.append(f"| {name} | " + " | ".join(by_seed.get(seed, "–") for seed in seeds) + " |")
        lines.append(
            f"| {name} | {len(runs)} | {_mean_sd(metrics['learned_volume'], 4)} "
            f"| {metrics['learned_volume'].min():.4f} – {metrics['learned_volume'].max():.4f} "
            f"| {_mean_sd(metrics['volume'], 4)} | {_mean_sd(100 * metrics['learned_share'], 0)} "
            f"| {_mean_sd(metrics['best_accuracy'], 2)} | {np.median(metrics['frugal_energy']):.1f} |")
    return "\n".join(lines + per_seed)


class Scale(NamedTuple):
    """The normalisation every run shares, and where accuracy and energy are among the objectives."""

    low: np.ndarray
    width: np.ndarray
    accuracy: int
    energy: int


def pooled_scale(records: list[dict]) -> Scale:
    """One normalisation over every completed trial of ``records`` (runs with the same
    objectives): error in [0, 1], costs min-max over their log10 values."""
    objectives = records[0]["objectives"]
    accuracy = objectives.index("accuracy")
    pooled = np.vstack([_losses(np.array(r["values"]), accuracy) for r in records])
    low, high = pooled.min(axis=0), pooled.max(axis=0)
    low[accuracy], high[accuracy] = 0.0, 1.0
    return Scale(low, np.where(high > low, high - low, 1.0), accuracy, objectives.index("energy"))


class RunMetrics(NamedTuple):
    volume: float           # hypervolume of every completed trial
    learned_volume: float   # hypervolume of the trials that beat chance (the feasible ones)
    learned_share: float
    best_accuracy: float    # percent
    frugal_energy: float    # nJ/image: lowest energy within ACCURACY_MARGIN of the best accuracy


def _run_metrics(record: dict, scale: Scale) -> RunMetrics:
    values = np.array(record["values"])
    learned = np.array(record["feasible"], dtype=bool)
    normalised = (_losses(values, scale.accuracy) - scale.low) / scale.width
    reference = np.full(len(scale.low), REFERENCE)
    top = values[:, scale.accuracy].max()
    near = values[values[:, scale.accuracy] >= top - ACCURACY_MARGIN]
    return RunMetrics(
        volume=compute_hypervolume(normalised, reference),
        learned_volume=compute_hypervolume(normalised[learned], reference) if learned.any() else 0.0,
        learned_share=float(learned.mean()),
        best_accuracy=100 * top,
        frugal_energy=1e9 * near[:, scale.energy].min(),
    )


def _mean_sd(values: np.ndarray, digits: int) -> str:
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.{digits}f} ± {sd:.{digits}f}"


def ask_time(trials: int, block: int) -> str:
    """Seconds the evolution sampler adds per trial as a study grows (no training: the objective
    only samples the space), to show that asking stays cheap in long studies."""
    config = load_config(CONFIG)
    input_shape = (1, 8, 8)
    rng = np.random.default_rng(0)

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        sample_training(trial, config.training)
        spec = sample_architecture(trial, config.space, input_shape).spec
        costs = profile(spec, input_shape, 10)
        return (float(rng.random()), 1.0 + rng.random(), float(costs.params + 1), 1.0 + rng.random())

    study = optuna.create_study(directions=config.directions,
                                sampler=create_sampler("evolution", seed=0, evolution=config.evolution))
    lines = ["| trials | seconds per trial (sampling included) |", "|---|---|"]
    for done in range(0, trials, block):
        start = time.perf_counter()
        study.optimize(objective, n_trials=block)
        lines.append(f"| {done + 1}–{done + block} | {(time.perf_counter() - start) / block:.4f} |")
    return "\n".join(lines)


def _losses(values: np.ndarray, accuracy: int) -> np.ndarray:
    """Objectives as minimised quantities: error for accuracy, log10 of the costs."""
    losses = np.log10(np.maximum(values, 1e-30))
    losses[:, accuracy] = 1.0 - values[:, accuracy]
    return losses


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run")
    run_parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    run_parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    run_parser.add_argument("--trials", type=int, default=100)
    run_parser.add_argument("--out", type=Path, required=True)
    run_parser.add_argument("--label", help="name of this variant in the results")
    run_parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                            help="[evolution] keys for this variant, e.g. crossover_rate=0.3")
    ask_parser = commands.add_parser("ask-time")
    ask_parser.add_argument("--trials", type=int, default=1000)
    ask_parser.add_argument("--block", type=int, default=200)
    report_parser = commands.add_parser("report")
    report_parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        torch.set_num_threads(1)  # one core per benchmark process on a shared machine
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        overrides = dict(item.split("=", 1) for item in args.set)
        run(args.samplers, args.seeds, args.trials, args.out, label=args.label,
            evolution={key: _number(value) for key, value in overrides.items()})
    elif args.command == "ask-time":
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        print(ask_time(args.trials, args.block))
    else:
        print(report(args.results))


if __name__ == "__main__":
    main()
