"""Optuna's private hypervolume and non-dominated sort against moocore's (issue: one module for
Optuna's private APIs; consider moocore). Not a test; results in docs/BENCHMARKS.md.

    pip install moocore && python bench/hypervolume_backends.py

Both compute the same numbers (checked here); the question is speed at the sizes this package
uses: the sampler's population (16 points, 2-5 objectives) and a report's study (up to 1,000).
"""

from __future__ import annotations

import time

import moocore
import numpy as np

from optuna_energy.samplers._optuna_compat import hypervolume, non_domination_rank

SIZES = [(16, 4), (50, 3), (200, 4), (1000, 4)]


def _per_call(function, *args, repeats: int = 20, **kwargs):
    start = time.perf_counter()
    for _ in range(repeats):
        result = function(*args, **kwargs)
    return (time.perf_counter() - start) / repeats, result


def main() -> None:
    rng = np.random.default_rng(0)
    print("| points x objectives | hypervolume: Optuna | moocore | non-dominated sort: Optuna | moocore |")
    print("|---|---:|---:|---:|---:|")
    for n, k in SIZES:
        points, reference = rng.random((n, k)), np.full(k, 1.1)
        optuna_hv, a = _per_call(hypervolume, points, reference)
        moocore_hv, b = _per_call(moocore.hypervolume, points, ref=reference)
        optuna_rank, r = _per_call(non_domination_rank, points)
        moocore_rank, s = _per_call(moocore.pareto_rank, points)
        assert np.isclose(a, b) and np.array_equal(r, s)
        print(f"| {n} x {k} | {1e3 * optuna_hv:.2f} ms | {1e3 * moocore_hv:.2f} ms "
              f"| {1e3 * optuna_rank:.2f} ms | {1e3 * moocore_rank:.2f} ms |")


if __name__ == "__main__":
    main()
