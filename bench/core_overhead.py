"""Trials per minute and per-trial overhead of the embedded default study.

Overhead is everything a trial's wall time holds besides training and measuring (evaluation
plus the inference window): sampling, building the model, storage writes, the sampler's work
between trials. Run (each sampler in turn, in one invocation, so their rows compare):

    python bench/core_overhead.py [studies/digits.toml] [--samplers evolution tpe]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

import optuna_energy


def trial_time_split(trials: list[FrozenTrial]) -> dict[str, float]:
    """Medians, in seconds, of a trial's wall time and of its training, measuring and overhead.

    A trial's wall time runs from its start to the next trial's start, so the sampler's work
    between trials counts as overhead; the last trial, with no successor, is left out of the
    wall time and the overhead.
    """
    trials = sorted(trials, key=lambda t: t.number)
    starts = [t.datetime_start for t in trials]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
    overhead = [gap - t.user_attrs.get("train_seconds", 0) - t.user_attrs.get("measure_seconds", 0)
                for gap, t in zip(gaps, trials)]
    return {"trial": statistics.median(gaps) if gaps else float("nan"),
            "training": statistics.median(t.user_attrs.get("train_seconds", 0) for t in trials),
            "measuring": statistics.median(t.user_attrs.get("measure_seconds", 0) for t in trials),
            "overhead": statistics.median(overhead) if overhead else float("nan")}


def measure(config_path: str, sampler: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        study = optuna_energy.run_study(config_path, storage=f"sqlite:///{tmp}/bench.db",
                                        sampler=sampler, show_progress_bar=False)
        wall = time.perf_counter() - start
    trials = study.trials
    median = trial_time_split(trials)
    print(f"sampler: {sampler or 'as configured'}")
    print(f"trials: {len(trials)}  wall: {wall:.1f} s  trials/min: {60 * len(trials) / wall:.1f}")
    print(f"median trial wall: {median['trial']:.3f} s  median train: {median['training']:.3f} s  "
          f"median measure: {median['measuring']:.3f} s")
    print(f"median overhead outside training and measuring: {median['overhead']:.3f} s "
          f"({100 * median['overhead'] / median['trial']:.1f} % of a trial)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(Path(__file__).parents[1] / "studies" / "digits.toml"))
    parser.add_argument("--samplers", nargs="+", default=[None], help="default: the config's")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for sampler in args.samplers:
        measure(args.config, sampler)


if __name__ == "__main__":
    main()
