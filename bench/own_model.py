"""Your own model with and without early stopping, at an equal epoch budget.

Not a test; results go to docs/BENCHMARKS.md.

    nice -n 10 python bench/own_model.py run --seeds 400 401 402 403 404 405 406 407 408 409 \
        --out bench/results/own_model.json
    python bench/own_model.py report bench/results/own_model.json

``run`` runs ``examples/own_model.py`` (an MLP family of its own on digits, TPE, objectives
accuracy and energy per inference) once per (arm, seed), each arm with the same budget of
training epochs: ``early stopping`` (rungs at 1 and 3 of 9 epochs, ``EarlyStopper``) and ``full
training`` (``--first-rung 9``: no rung). Every run gets more trials than the budget pays, so
the budget, not the trial count, ends it. One record per (arm, seed) is appended to the JSON file
(an interrupted run resumes). Hypervolume as in ``bench/sampler_comparison.py`` (``1 -
accuracy`` and log10 energy, min-max normalised over every completed trial of every run,
reference 1.1, learned trials only); architectures per 1,000 epochs counts the trials that were
measured (costs first) and trained at least one epoch or refused over a limit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).parent))
from sampler_comparison import _mean_sd, _run_metrics, pooled_scale

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "own_model.py"
ARMS = {"early stopping": ["--first-rung", "1"], "full training": ["--first-rung", "9"]}
SETTINGS = ["--epochs", "9", "--max-train-epochs", "150", "--trials", "80", "--max-params", "20000"]


def run_arm(arm: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, str(EXAMPLE), out, *SETTINGS, *ARMS[arm], "--seed", str(seed),
                        "--no-report"], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                       stdout=subprocess.DEVNULL)
        study = optuna.load_study(study_name="mlp-family", storage=f"sqlite:///{out}/study.db")
        trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if not t.user_attrs.get("over_budget")]
    completed = [t for t in counted if t.state == TrialState.COMPLETE]
    return {"arm": arm, "seed": seed, "objectives": ["accuracy", "energy"],
            "values": [list(t.values) for t in completed],
            "feasible": [all(v <= 0 for v in t.constraints.values()) for t in completed],
            "epochs": sum(t.user_attrs.get("epochs_trained", 0) for t in counted),
            "architectures": len(counted)}


def run(seeds: list[int], out: Path) -> None:
    records = json.loads(out.read_text()) if out.exists() else []
    done = {(r["arm"], r["seed"]) for r in records}
    for seed in seeds:
        for arm in ARMS:
            if (arm, seed) not in done:
                records.append(run_arm(arm, seed))
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(records, indent=1))
                print(f"{arm} seed {seed}: {records[-1]['architectures']} architectures, "
                      f"{records[-1]['epochs']} epochs", flush=True)


def report(path: Path) -> None:
    records = json.loads(path.read_text())
    scale = pooled_scale(records)
    print("| arm | runs | hypervolume (learned) | architectures / 1,000 epochs | best accuracy (%) |")
    print("| --- | --- | --- | --- | --- |")
    for arm in ARMS:
        mine = [r for r in records if r["arm"] == arm]
        metrics = [_run_metrics(r, scale) for r in mine]
        volume = np.array([m.learned_volume for m in metrics])
        rate = np.array([1000 * r["architectures"] / r["epochs"] for r in mine])
        best = np.array([m.best_accuracy for m in metrics])
        print(f"| {arm} | {len(mine)} | {_mean_sd(volume, 3)} | {_mean_sd(rate, 0)} | {_mean_sd(best, 1)} |")
    volumes = {(r["arm"], r["seed"]): _run_metrics(r, scale).learned_volume for r in records}
    early, full = ARMS
    gains = np.array([volumes[early, seed] - volumes[full, seed] for arm, seed in volumes
                      if arm == early and (full, seed) in volumes])
    print(f"\nhypervolume, {early} minus {full}, seed by seed: {_mean_sd(gains, 3)} "
          f"(higher in {int((gains > 0).sum())} of {len(gains)} seeds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    running = commands.add_parser("run")
    running.add_argument("--seeds", type=int, nargs="+", required=True)
    running.add_argument("--out", type=Path, required=True)
    reporting = commands.add_parser("report")
    reporting.add_argument("path", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run(args.seeds, args.out)
    else:
        report(args.path)


if __name__ == "__main__":
    main()
