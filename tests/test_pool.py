"""Past the connection limit: many worker processes through the node's PgBouncer (``store.pooler``).

The server here allows 20 connections (17 for the study's user: 3 are kept for superusers) and
30 workers share it: the ratio of PostgreSQL's default 100 to the paper's 144 workers. Each
worker is a real process running the package's worker loop (``optimize_within_budget``: exact
budget, heartbeat, recovery of dead workers' trials) with an objective that only sleeps, forked
from this one so that 30 of them start in a second on a small machine.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import psycopg
import pytest
from optuna.trial import TrialState

from optuna_energy.cli import main
from optuna_energy.config import ConfigError, StorageSection, WorkersSection, load_config
from optuna_energy.run.loop import optimize_within_budget
from optuna_energy.store.pooler import pooled_storage
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.storage import StorageError, open_storage
from tests.pg import PASSWORD, PostgresServer
from tests.test_workers_pg import STUDY, Watch, assert_exact_budget, finish, load, start, tiny_config, wait_for

MAX_CONNECTIONS = 20
WORKERS = 30
SERVER_CONNECTIONS = 4
SETTINGS = StorageSection(heartbeat_interval=1, grace_period=4, reconnect_timeout=30)


@pytest.fixture(scope="module")
def small_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server that allows fewer connections than the workers would hold."""
    server = PostgresServer()
    try:
        server.start()
        server.sql(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS}")
        server.restart()
        yield server
    finally:
        server.stop()


def worker(url: str, sleep: float, n_trials: int, reports: multiprocessing.Queue,
           go: multiprocessing.synchronize.Event) -> None:
    """Join the study (reporting whether the server let it connect), then run trials when told."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=STUDY, storage=open_storage(url, SETTINGS),
                                  sampler=optuna.samplers.RandomSampler())
    except StorageError as error:
        reports.put(("refused", str(error)))
        return
    reports.put(("joined", os.getpid()))
    go.wait()

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        time.sleep(sleep)
        return x

    optimize_within_budget(study, objective, n_trials=n_trials, reconnect_timeout=SETTINGS.reconnect_timeout)


class Workers:
    """Forked worker processes and what they reported when they joined."""

    def __init__(self, url: str, count: int, *, sleep: float, n_trials: int) -> None:
        context = multiprocessing.get_context("fork")
        self.reports = context.Queue()
        self.go = context.Event()
        self.processes = {}
        for _ in range(count):
            process = context.Process(target=worker, args=(url, sleep, n_trials, self.reports, self.go))
            process.start()
            self.processes[process.pid] = process
        self.joined = [self.reports.get(timeout=120) for _ in range(count)]

    def refusals(self) -> list[str]:
        return [text for outcome, text in self.joined if outcome == "refused"]

    def finish(self, timeout: float = 240) -> list[int | None]:
        self.go.set()
        for process in self.processes.values():
            process.join(timeout)
        return [process.exitcode for process in self.processes.values()]

    def kill(self) -> None:
        for process in self.processes.values():
            if process.is_alive():
                process.kill()
            process.join()


class ServerConnections:
    """The most client connections the study's database had at once, sampled every 50 ms."""

    def __init__(self, server: PostgresServer, database: str) -> None:
        self.most = 0
        self.stopped = threading.Event()
        self.sampler = threading.Thread(target=self._sample, args=(server, database), daemon=True)
        self.sampler.start()

    def _sample(self, server: PostgresServer, database: str) -> None:
        with psycopg.connect(host=str(server.root), port=server.port, user="postgres", dbname="postgres",
                             autocommit=True) as admin:
            while not self.stopped.wait(0.05):
                row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                    "AND backend_type = 'client backend'", (database,)).fetchone()
                self.most = max(self.most, row[0] if row else 0)

    def stop(self) -> int:
        self.stopped.set()
        self.sampler.join()
        return self.most


def new_study(url: str) -> optuna.Study:
    return optuna.create_study(study_name=STUDY, storage=open_storage(url, SETTINGS))


def test_more_workers_than_connections_are_refused_directly_and_all_run_through_the_pooler(
        small_server: PostgresServer) -> None:
    direct = small_server.new_database()
    new_study(direct).optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    refused = Workers(direct, WORKERS, sleep=0.1, n_trials=WORKERS)
    refused.kill()
    assert len(refused.refusals()) >= WORKERS - MAX_CONNECTIONS
    assert all("too many clients" in text or "connection slots are reserved" in text
               for text in refused.refusals())
    assert not any(PASSWORD in text for text in refused.refusals())

    url = small_server.new_database()
    database = url.rsplit("/", 1)[1]
    n_trials = 2 * WORKERS
    with pooled_storage(url, server_connections=SERVER_CONNECTIONS) as pooled:
        new_study(pooled)
        connections = ServerConnections(small_server, database)
        workers = Workers(pooled, WORKERS, sleep=0.2, n_trials=n_trials)
        assert workers.refusals() == []
        assert workers.finish() == [0] * WORKERS
        assert connections.stop() <= SERVER_CONNECTIONS
        study = optuna.load_study(study_name=STUDY, storage=open_storage(pooled))
        assert_exact_budget(study, n_trials)
    with psycopg.connect(url) as connection:  # every trial's heartbeat thread wrote through the pooler
        beats = connection.execute("SELECT count(DISTINCT trial_id) FROM trial_heartbeats").fetchone()
    assert beats is not None and beats[0] >= n_trials


def test_a_killed_workers_trial_is_recovered_through_the_pooler(small_server: PostgresServer) -> None:
    url = small_server.new_database()
    n_trials = 12
    with pooled_storage(url, server_connections=2) as pooled:
        new_study(pooled)
        workers = Workers(pooled, 3, sleep=1.0, n_trials=n_trials)
        workers.go.set()
        watch = Watch(pooled)

        def running_in_a_worker() -> optuna.trial.FrozenTrial | None:
            return next((trial for trial in watch.trials(TrialState.RUNNING)
                         if trial.params and int((TrialRecord.of(trial).worker or ":0").rsplit(":", 1)[1])
                         in workers.processes), None)

        victim = wait_for(running_in_a_worker, "a trial running in a worker")
        pid = int(str(TrialRecord.of(victim).worker).rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        workers.processes.pop(pid).join()
        assert workers.finish() == [0, 0]

    study = load(url)
    killed = study.trials[victim.number]
    assert killed.state == TrialState.FAIL
    retries = [trial for trial in study.trials if trial.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].state.is_finished()  # trained, or diverged on its own
    assert retries[0].params == killed.params
    assert_exact_budget(study, n_trials)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage", "ignore::optuna.exceptions.ExperimentalWarning")
def test_optunas_heartbeat_fails_a_silent_trial_through_the_pooler(small_server: PostgresServer) -> None:
    """The heartbeat path alone: a trial that beat once, then went silent, as on another node."""
    url = small_server.new_database()
    with pooled_storage(url, server_connections=2) as pooled:
        study = new_study(pooled)
        silent = study.ask()
        study._storage.record_heartbeat(silent._trial_id)
        time.sleep(SETTINGS.grace_period + 1)
        optuna.storages.fail_stale_trials(optuna.load_study(study_name=STUDY, storage=open_storage(pooled, SETTINGS)))
        trials = study.get_trials(deepcopy=False)
    assert [trial.state for trial in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].system_attrs["failed_trial"] == silent.number


def test_launch_runs_its_workers_and_itself_through_the_pooler(small_server: PostgresServer,
                                                               tmp_path: Path) -> None:
    url = small_server.new_database()
    connections = ServerConnections(small_server, url.rsplit("/", 1)[1])
    config = tiny_config(tmp_path, n_trials=6, min_window_seconds=0.05)
    launcher = start("launch", config, url, "--workers", "2", "--pooler", "pgbouncer")
    finish([launcher])
    assert connections.stop() <= WorkersSection().pooler_connections
    assert_exact_budget(load(url), 6)


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:///study.db", "serves postgresql:// storages only"),
    ("postgresql://optuna@db.example.org/nas", "needs the user and password"),
    ("postgresql://optuna:pw@db.example.org/nas?application_name=x", "cannot pass on the URL parameter"),
    ("postgresql://optuna:pw@db.example.org/n%20as", "cannot serve the database name"),
    ("postgresql://optuna:pw@db.example.org/nas?sslmode=require&x=1", "cannot pass on the URL parameter"),
])
def test_what_the_pooler_cannot_serve_is_one_line_naming_it(url: str, expected: str) -> None:
    with pytest.raises(StorageError, match=expected) as raised, pooled_storage(url, server_connections=2):
        pass
    assert "\n" not in str(raised.value) and ":pw@" not in str(raised.value)


def test_pooler_choice_is_checked_by_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["launch", "--pooler", "pgpool"])
    assert "invalid choice: 'pgpool'" in capsys.readouterr().err


@pytest.mark.parametrize(("workers", "expected"), [
    ({"pooler": "pgpool"}, "[workers] pooler is 'pgpool'; allowed: none, pgbouncer"),
    ({"pooler": "pgbouncer", "pooler_connections": 1}, "[workers] pooler_connections must be >= 2, got 1"),
])
def test_the_configs_pooler_settings_are_checked(workers: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"workers": workers})
    assert expected in str(raised.value)
