"""Many workers, one server: N worker processes on one PostgreSQL study through the node's PgBouncer.

Every worker is a process running the package's worker loop (``optimize_within_budget``: exact
budget, heartbeat every 5 s, recovery of dead workers' trials) with an objective that only
sleeps, connected through ``store.pooler`` (PgBouncer, transaction pooling, ``--pooler-connections``
to the server). The server is a throwaway local PostgreSQL with its default ``max_connections``
(100) unless ``--max-connections`` says otherwise. Prints trials/s, the most client connections
the server saw, its backends' CPU per trial, and the outcome of the budget.

    nice -n 10 python bench/scale_workers.py --workers 144 --trials-per-worker 3 --sleep 1
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import multiprocessing.synchronize
import os
import platform
import sys
import threading
import time
from pathlib import Path

import optuna
import psycopg
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optuna_energy.config import StorageSection
from optuna_energy.run.loop import optimize_within_budget
from optuna_energy.store.budget import tally
from optuna_energy.store.pooler import pooled_storage
from optuna_energy.store.storage import open_storage
from tests.pg import PostgresServer

SETTINGS = StorageSection(heartbeat_interval=5, grace_period=60, reconnect_timeout=120)
STUDY = "scale"


def worker(url: str, n_trials: int, sleep: float, barrier: multiprocessing.synchronize.Barrier) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY, storage=open_storage(url, SETTINGS),
                              sampler=optuna.samplers.RandomSampler())

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        time.sleep(sleep)
        return x

    barrier.wait()
    optimize_within_budget(study, objective, n_trials=n_trials, reconnect_timeout=SETTINGS.reconnect_timeout)


class Server:
    """The server's view: client connections to the study's database (most seen) and its backends' CPU."""

    def __init__(self, server: PostgresServer, database: str) -> None:
        self.server, self.database = server, database
        self.most = 0
        self.stopped = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(host=str(self.server.root), port=self.server.port, user="postgres",
                               dbname="postgres", autocommit=True)

    def _sample(self) -> None:
        with self._admin() as admin:
            while not self.stopped.wait(0.1):
                row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                                    "backend_type = 'client backend'", (self.database,)).fetchone()
                self.most = max(self.most, row[0] if row else 0)

    def cpu_seconds(self) -> float:
        """User + system CPU of the server's processes (the postmaster's children included)."""
        with self._admin() as admin:
            row = admin.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        postmaster = int(Path(f"/proc/{row[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return sum(_cpu_of(pid) for pid in [postmaster, *_children(postmaster)])


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _cpu_of(pid: int) -> float:
    """CPU seconds of a process and its reaped children (backends that have exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=144)
    parser.add_argument("--trials-per-worker", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds the objective sleeps")
    parser.add_argument("--pooler-connections", type=int, default=4)
    parser.add_argument("--max-connections", type=int, default=100, help="the server's limit")
    args = parser.parse_args()

    postgres = PostgresServer()
    postgres.start()
    try:
        postgres.sql(f"ALTER SYSTEM SET max_connections = {args.max_connections}")
        postgres.restart()
        url = postgres.new_database()
        n_trials = args.workers * args.trials_per_worker
        with pooled_storage(url, server_connections=args.pooler_connections) as pooled:
            study = optuna.create_study(study_name=STUDY, storage=open_storage(pooled, SETTINGS))
            server = Server(postgres, url.rsplit("/", 1)[1])
            context = multiprocessing.get_context("fork")
            barrier = context.Barrier(args.workers + 1)
            processes = [context.Process(target=worker, args=(pooled, n_trials, args.sleep, barrier))
                         for _ in range(args.workers)]
            for process in processes:
                process.start()
            barrier.wait(timeout=600)  # every worker has joined the study through the pooler
            server.sampler.start()
            cpu_before, start = server.cpu_seconds(), datetime.datetime.now()
            for process in processes:
                process.join()
            cpu = server.cpu_seconds() - cpu_before
            server.stopped.set()
            counted = tally(study)
            trials = study.get_trials(deepcopy=False)
        # Until the last trial was stored: workers linger a few seconds waiting for others' trials.
        seconds = (max(trial.datetime_complete or start for trial in trials) - start).total_seconds()
        print(f"# {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"Optuna {optuna.__version__}, PostgreSQL max_connections {args.max_connections}, "
              f"PgBouncer with {args.pooler_connections} server connections; objective sleeps "
              f"{args.sleep} s")
        print("| workers | trials | seconds | trials/s | most server connections | server CPU per trial (ms) "
              "| workers that failed | left RUNNING |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        failed = sum(process.exitcode != 0 for process in processes)
        running = sum(trial.state == TrialState.RUNNING for trial in trials)
        print(f"| {args.workers} | {counted.finished} of {n_trials} | {seconds:.1f} | {counted.finished / seconds:.1f} "
              f"| {server.most} | {1000 * cpu / max(counted.finished, 1):.1f} | {failed} | {running} |")
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
