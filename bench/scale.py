"""Scale: a trial's framework cost and a joining worker's start-up, at 1k, 10k and 100k trials.

Each study is bulk-loaded (``tests/synthetic.py``): copies of real samples of the digits space
with four objectives and the ``learned`` constraint, with the ledger and evolution population
that workers save on a study as it grows. A fresh worker process then joins it as ``run`` does
and reports, in CPU seconds (the machine may be shared; wall seconds would measure the others):

* ``start``: CPU seconds and extra memory (peak RSS) from before it opens the study to the end
  of its first trial;
* ``per_trial_space``: CPU seconds per trial of the worker loop with an objective that samples
  the real space (its ~70 parameters are written one by one, as Optuna's define-by-run does)
  and draws the measurements instead of training;
* ``per_trial_framework``: the same with an objective of one parameter: what ask, tell, the
  budget, the progress bar and the trial record cost, nothing else.

    python bench/scale.py --sizes 1000 10000 100000 --storages sqlite postgresql
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optuna_energy.store import record  # noqa: E402
from optuna_energy.store.storage import open_storage  # noqa: E402
from tests.synthetic import Worker, bulk_load, real_samples  # noqa: E402

STUDY = "scale"
POPULATION = 16


def framework_only(trial: optuna.Trial) -> list[float]:
    """One parameter and the record fields a trial writes: the framework's cost alone."""
    x = trial.suggest_float("train_lr", 1e-4, 1e-1, log=True)
    record.write(trial, accuracy=0.5, inference_time_s=x, energy_per_inference_j=x, epochs_trained=1)
    trial.set_constraint("learned", -0.3)
    return [0.5, x, 1000.0 * x, x]


def worker(url: str, existing: int, trials: int) -> dict[str, float]:
    """Join the study, run one trial, then ``trials`` of each kind; CPU seconds and memory."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rss_before = _memory_mb("VmRSS")
    cpu = time.process_time()
    joined = Worker.join(url, STUDY)
    joined.run(existing + 1)
    start = time.process_time() - cpu
    start_peak = _memory_mb("VmHWM")
    cpu = time.process_time()
    joined.run(existing + 1 + trials)
    space = (time.process_time() - cpu) / trials
    cpu = time.process_time()
    joined.run(existing + 1 + 2 * trials, objective=framework_only)
    framework = (time.process_time() - cpu) / trials
    return {"start_cpu_s": start, "start_extra_mb": start_peak - rss_before,
            "per_trial_space_cpu_s": space, "per_trial_framework_cpu_s": framework}


def _memory_mb(field: str) -> float:
    """This process's resident memory now (``VmRSS``) or at its peak (``VmHWM``), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(url: str, *, size: int, trials: int, samples: list) -> dict[str, object]:
    cpu = time.process_time()
    bulk_load(open_storage(url), STUDY, n_trials=size, samples=samples, population_size=POPULATION)
    load = time.process_time() - cpu
    output = subprocess.run([sys.executable, __file__, "--worker", url, str(size), str(trials)],
                            capture_output=True, text=True, check=True).stdout
    return {"trials": size, "bulk_load_cpu_s": load, **json.loads(output.splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--storages", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql"])
    parser.add_argument("--trials", type=int, default=10, help="measured trials of each kind")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale")
    parser.add_argument("--worker", nargs=3, metavar=("URL", "EXISTING", "TRIALS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, existing, trials = args.worker
        print(json.dumps(worker(url, int(existing), int(trials))))
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samples = real_samples(200)
    args.out.mkdir(parents=True, exist_ok=True)
    for storage in args.storages:
        server = None
        if storage == "postgresql":
            from tests.pg import PostgresServer

            server = PostgresServer()
            server.start()
        try:
            for size in args.sizes:
                with tempfile.TemporaryDirectory() as folder:
                    url = server.new_database() if server else f"sqlite:///{folder}/scale.db"
                    result = {"storage": storage, "machine": platform.machine(),
                              "python": platform.python_version(), "optuna": optuna.__version__,
                              **measure(url, size=size, trials=args.trials, samples=samples)}
                print(json.dumps(result), flush=True)
                (args.out / f"{storage}-{size}.json").write_text(json.dumps(result, indent=2) + "\n")
        finally:
            if server:
                server.stop()


if __name__ == "__main__":
    main()
