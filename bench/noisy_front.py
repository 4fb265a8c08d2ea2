"""The noise-aware front and ranks (``samplers._dominance``) against Optuna's, on synthetic
four-objective points like ``analysis_scaling.py``'s (accuracy and parameters exact, inference
time and energy with relative spreads drawn from [0, --spread]). Not a test; results in
docs/BENCHMARKS.md. Run:

    python bench/noisy_front.py [--sizes 1000 10000 100000] [--spread 0.3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from optuna_energy.samplers import noisy_non_domination_rank, noisy_pareto_mask
from optuna_energy.samplers._optuna_compat import is_pareto_front, non_domination_rank


def points(count: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bigger models are more accurate, slower and hungrier, with noise; losses and spreads."""
    rng = np.random.default_rng(seed)
    params = rng.lognormal(10, 1.5, count).round()
    accuracy = np.clip(0.1 + 0.85 * (1 - np.exp(-params / 3e4)) + rng.normal(0, 0.05, count), 0, 1)
    seconds = params * 1e-7 * rng.lognormal(0, 0.3, count)
    joules = params * 1e-10 * rng.lognormal(0, 0.3, count)
    losses = np.column_stack([1 - accuracy, seconds, params, joules])
    spreads = np.column_stack([np.zeros(count), rng.uniform(0, spread, count), np.zeros(count),
                               rng.uniform(0, spread, count)])
    return losses, spreads


def best_of(function, *args, repeats: int = 3) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return min(times), np.asarray(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--spread", type=float, default=0.3)
    args = parser.parse_args()
    print("| what | points | Optuna s | noise-aware s | front: Optuna | front: noise-aware |")
    print("|---|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        losses, spreads = points(size, args.spread)
        exact_s, exact = best_of(is_pareto_front, losses)
        noisy_s, noisy = best_of(noisy_pareto_mask, losses, spreads)
        print(f"| front | {size} | {exact_s:.4f} | {noisy_s:.4f} | {exact.sum()} | {noisy.sum()} |")
    for size in (48, 1001):  # a population and its newcomers; a rung's MAX_PEERS + 1
        losses, spreads = points(size, args.spread)
        exact_s, exact = best_of(non_domination_rank, losses)
        noisy_s, noisy = best_of(noisy_non_domination_rank, losses, spreads)
        print(f"| ranks | {size} | {exact_s:.4f} | {noisy_s:.4f} | {(exact == 0).sum()} | {(noisy == 0).sum()} |")


if __name__ == "__main__":
    main()
