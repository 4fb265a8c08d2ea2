"""Storage throughput: how many trials per second a shared study sustains, per storage.

Every worker is a process running ``optimize_within_budget`` (the worker's own loop: exact
budget, heartbeat, retries) with an objective that only sleeps; whatever time a trial takes
beyond the sleep is storage and bookkeeping. PostgreSQL is a throwaway local server (the test
fixture's) unless ``--postgres URL`` names one.

    nice -n 10 python bench/storage_throughput.py --workers 1 2 4 8 16 --sleep 0.05
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import multiprocessing.synchronize
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optuna_energy.config import StorageSection
from optuna_energy.run.loop import optimize_within_budget
from optuna_energy.store.budget import tally
from optuna_energy.store.storage import mask_url, open_storage

SETTINGS = StorageSection(heartbeat_interval=60)


def worker(url: str, name: str, n_trials: int, sleep: float,
           barrier: multiprocessing.synchronize.Barrier) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=open_storage(url, SETTINGS),
                              sampler=optuna.samplers.RandomSampler())

    def objective(trial: optuna.Trial) -> float:
        time.sleep(sleep)
        return trial.suggest_float("x", 0.0, 1.0)

    barrier.wait()
    optimize_within_budget(study, objective, n_trials=n_trials)


def measure(url: str, *, workers: int, n_trials: int, sleep: float) -> dict[str, float]:
    name = f"bench-{workers}-{time.time_ns()}"
    study = optuna.create_study(study_name=name, storage=open_storage(url, SETTINGS))
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(workers + 1)
    processes = [context.Process(target=worker, args=(url, name, n_trials, sleep, barrier))
                 for _ in range(workers)]
    for process in processes:
        process.start()
    cpu_before = _children_cpu_seconds()
    barrier.wait()
    start = datetime.datetime.now()
    for process in processes:
        process.join()
    # Until the last trial was stored: a worker may linger a few seconds waiting for others.
    seconds = (max(trial.datetime_complete for trial in study.trials) - start).total_seconds()
    finished = tally(study).finished
    assert finished == n_trials and all(p.exitcode == 0 for p in processes), (finished, n_trials)
    return {"trials_per_s": n_trials / seconds, "seconds": seconds,
            "overhead_ms": 1000 * (workers * seconds / n_trials - sleep),
            "cpu_ms": 1000 * (_children_cpu_seconds() - cpu_before) / n_trials}


def _children_cpu_seconds() -> float:
    """CPU time of finished worker processes (their start-up included, a few % of the total)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--trials-per-worker", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=0.05, help="seconds the objective sleeps")
    parser.add_argument("--postgres", help="a PostgreSQL URL (default: a throwaway local server)")
    args = parser.parse_args()

    server = None
    if args.postgres is None:
        from tests.pg import PostgresServer

        server = PostgresServer()
        server.start()
    scratch = Path(tempfile.mkdtemp(prefix="storage-bench-"))
    print(f"# {platform.node()}: {multiprocessing.cpu_count()} CPUs, {platform.python_version()}, "
          f"optuna {optuna.__version__}; objective sleeps {args.sleep * 1000:.0f} ms; "
          f"{args.trials_per_worker} trials per worker")
    print("| storage | workers | trials | seconds | trials/s | overhead per trial (ms) "
          "| worker CPU per trial (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    try:
        for backend in ("postgresql", "sqlite"):
            for workers in args.workers:
                if backend == "sqlite":
                    url = f"sqlite:///{scratch}/bench-{workers}.db"
                else:
                    url = args.postgres or server.new_database()
                n_trials = workers * args.trials_per_worker
                result = measure(url, workers=workers, n_trials=n_trials, sleep=args.sleep)
                print(f"| {backend} | {workers} | {n_trials} | {result['seconds']:.1f} | "
                      f"{result['trials_per_s']:.1f} | {result['overhead_ms']:.0f} | {result['cpu_ms']:.0f} |",
                      flush=True)
    finally:
        if server is not None:
            server.stop()
    print(f"# PostgreSQL: {mask_url(args.postgres) if args.postgres else 'throwaway local server'}")


if __name__ == "__main__":
    main()
