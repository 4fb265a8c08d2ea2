"""A sampler's CPU seconds per trial as a study grows: why ``sampler = "auto"`` hands TPE's
proposals over to the evolution sampler after 1,000 trials.

Each study is in memory, filled with copies of real samples of the digits space
(``tests/synthetic.py``: four objectives and the ``learned`` constraint), so what is measured is
the sampler and Optuna's ask and tell, not a database. Five more trials are then run with an
objective that samples the real space and draws its measurements.

    python bench/sampler_cost.py --sizes 300 1000 3000 --samplers tpe evolution auto
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optuna_energy.study import create_sampler  # noqa: E402
from tests.synthetic import DIRECTIONS, real_samples, sampled_objective  # noqa: E402


def cpu_seconds_per_trial(name: str, *, size: int, samples: list, trials: int) -> float:
    """CPU seconds per trial of ``trials`` new trials of a study that already has ``size``."""
    study = optuna.create_study(directions=list(DIRECTIONS), sampler=create_sampler(name, seed=0))
    pick = random.Random(0)
    study.add_trials([pick.choice(samples) for _ in range(size)])
    objective = sampled_objective(seed=1)
    start = time.process_time()
    study.optimize(objective, n_trials=trials)
    return (time.process_time() - start) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 3000])
    parser.add_argument("--samplers", nargs="+", default=["tpe", "evolution", "auto"])
    parser.add_argument("--trials", type=int, default=5, help="measured trials per study")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sampler_cost.json")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    samples = real_samples(200)
    rows = []
    for name in args.samplers:
        for size in args.sizes:
            seconds = cpu_seconds_per_trial(name, size=size, samples=samples, trials=args.trials)
            rows.append({"sampler": name, "trials_in_study": size, "cpu_s_per_trial": seconds})
            print(f"{name:10} {size:>7,} trials: {seconds:.3f} CPU s per trial", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"python": platform.python_version(), "optuna": optuna.__version__,
                                    "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
