"""How the analysis scales with the number of trials, on synthetic four-objective studies.

Times the Pareto front, the report (what `optuna-energy report` computes before drawing), the
study note (what the dashboard callback recomputes after every trial) and the hypervolume
history. The history is also computed the naive way, recomputing the front's volume whenever
it changes, as the baseline the incremental method replaced (only up to --baseline-max trials:
it grows fast). Trials are made with `create_trial`, so no training runs. With ``--spread S``
each trial records an inference time and energy spread drawn from [0, S], so the front is the
noise-aware one (``samplers.noisy_pareto_mask``) rather than Optuna's. Run:

    python bench/analysis_scaling.py [--sizes 100 300 1000] [--baseline-max 300] [--spread 0.3]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume
from optuna.trial import create_trial

from optuna_energy.reading.analysis import (
    hypervolume_history,
    metric_names,
    normalised_losses,
    pareto_front,
    pareto_mask,
    usable_trials,
)
from optuna_energy.reading.dashboard import note_markdown
from optuna_energy.reading.report import build_report

OBJECTIVES = ["accuracy", "inference_time", "params", "energy"]


def synthetic_study(n_trials: int, seed: int = 0, *, spread: float = 0.0) -> optuna.Study:
    """Bigger models are more accurate, slower and hungrier, with noise: a realistic front."""
    rng = np.random.default_rng(seed)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(OBJECTIVES)
    for _ in range(n_trials):
        params = float(rng.lognormal(10, 1.5))
        accuracy = float(np.clip(0.1 + 0.85 * (1 - np.exp(-params / 3e4)) + rng.normal(0, 0.05), 0, 1))
        seconds = params * 1e-7 * float(rng.lognormal(0, 0.3))
        joules = params * 1e-10 * float(rng.lognormal(0, 0.3))
        spreads = {"inference_time_spread": float(rng.uniform(0, spread)),
                   "energy_spread": float(rng.uniform(0, spread))} if spread else {}
        study.add_trial(create_trial(
            values=[accuracy, seconds, params, joules],
            user_attrs={"accuracy": accuracy, "inference_time_s": seconds, "params": params,
                        "energy_per_inference_j": joules, "train_energy_j": 1.0,
                        "energy_source": "estimate", "architecture": [], "architecture_summary": "",
                        **spreads}))
    return study


def naive_hypervolume_history(study: optuna.Study) -> list[float]:
    names = metric_names(study)
    trials = usable_trials(study)
    losses = np.column_stack([[1 - t.values[0] for t in trials],
                              *([t.values[i] for t in trials] for i in range(1, len(names)))])
    normal = normalised_losses(losses)
    reference = np.full(len(names), 1.1)
    volumes, volume = [], 0.0
    for index in range(len(trials)):
        seen = normal[: index + 1]
        if pareto_mask(seen)[-1]:
            volume = float(compute_hypervolume(seen[pareto_mask(seen)], reference, assume_pareto=True))
        volumes.append(volume)
    return volumes


def seconds(function, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--baseline-max", type=int, default=300)
    parser.add_argument("--spread", type=float, default=0.0,
                        help="largest relative spread of inference time and energy (0: none)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print("| trials | front | pareto_front s | build_report s | note s | hypervolume history s | naive history s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        study = synthetic_study(size, spread=args.spread)
        front_s, front = seconds(pareto_front, study)
        report_s, _ = seconds(build_report, study)
        note_s, _ = seconds(note_markdown, study)
        history_s, history = seconds(hypervolume_history, study)
        naive = "-"
        if size <= args.baseline_max:
            naive_s, volumes = seconds(naive_hypervolume_history, study)
            assert np.allclose([v for _, v in history], volumes), "the two histories differ"
            naive = f"{naive_s:.3f}"
        print(f"| {size} | {len(front)} | {front_s:.3f} | {report_s:.3f} | {note_s:.3f} | "
              f"{history_s:.3f} | {naive} |")


if __name__ == "__main__":
    main()
