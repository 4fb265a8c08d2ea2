"""A trial's framework cost does not grow with the study (issue 21): a worker that joins a study
reads the saved population and ledger and the trials after them, and every ask, tell, budget
check, progress update and record write after that reads only the trials since the last one.

Proved by counting the trials the storage hands out (``RDBStorage._get_trials``, under every
read of a trial list, and ``get_trial``) to a fresh worker running a few trials of a study of 1,000
and of 2,000 bulk-loaded trials of the digits space, with its four objectives and ``learned``
constraint (the default sampler hands over to the evolution sampler at 1,000 trials).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.storages import RDBStorage

from optuna_energy.samplers import EvolutionSampler
from optuna_energy.store.ledger import StudyLedger
from optuna_energy.store.storage import open_storage
from tests.synthetic import DIRECTIONS, Worker, bulk_load, real_samples, sampled_objective

optuna.logging.set_verbosity(optuna.logging.WARNING)

NEW_TRIALS = 4


class HandedOut:
    """Counts the trials ``RDBStorage`` builds from the database, by every read there is."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.trials = 0
        get_trials, get_trial = RDBStorage._get_trials, RDBStorage.get_trial

        def counted_trials(storage: RDBStorage, *args: object, **kwargs: object) -> list:
            found = get_trials(storage, *args, **kwargs)  # type: ignore[arg-type]
            self.trials += len(found)
            return found

        def counted_trial(storage: RDBStorage, trial_id: int) -> optuna.trial.FrozenTrial:
            self.trials += 1
            return get_trial(storage, trial_id)

        monkeypatch.setattr(RDBStorage, "_get_trials", counted_trials)
        monkeypatch.setattr(RDBStorage, "get_trial", counted_trial)


@pytest.fixture(scope="module")
def samples() -> list[optuna.trial.FrozenTrial]:
    return real_samples(100)


@pytest.fixture
def in_memory_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder in RAM where there is one: SQLite syncs the disk at every commit (each suggested
    parameter), which costs seconds of waiting on a busy disk and is not what is counted here."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm) as folder:
        yield Path(folder)


# From 1,000 trials on the default sampler is the evolution sampler; TPE, before, reads every
# trial at each ask (tests/test_handover.py, bench/sampler_cost.py).
@pytest.fixture(params=[1000, 2000], ids=["1000-trials", "2000-trials"])
def big_study(request: pytest.FixtureRequest, samples: list, in_memory_dir: Path) -> Iterator[tuple[str, int]]:
    url = f"sqlite:///{in_memory_dir / 'big.db'}"
    # As if workers had grown it: the ledger and the population saved on it.
    bulk_load(open_storage(url), "big", n_trials=request.param, samples=samples, population_size=16)
    yield url, request.param


def test_a_joining_worker_reads_the_same_few_trials_per_trial_at_any_study_size(
        big_study: tuple[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    url, existing = big_study
    handed_out = HandedOut(monkeypatch)
    Worker.join(url, "big").run(existing + NEW_TRIALS)
    monkeypatch.undo()
    study = optuna.load_study(study_name="big", storage=url)
    assert len(study.trials) == existing + NEW_TRIALS
    # Each new trial is read a handful of times (ask, tell, budget, progress, population,
    # ledger); the population's 16 members once at start. Nothing scales with the 1,000 or 2,000.
    assert handed_out.trials <= 16 + 12 * NEW_TRIALS, handed_out.trials
    bred = [t for t in study.trials[existing:] if t.user_attrs["parents"]]
    assert len(bred) == NEW_TRIALS  # from the saved population, not at random


def test_the_ledger_answers_as_reading_every_trial_would(samples: list, in_memory_dir: Path) -> None:
    url = f"sqlite:///{in_memory_dir / 'ledger.db'}"
    study = bulk_load(open_storage(url), "ledger", n_trials=150, samples=samples)
    study.sampler = EvolutionSampler(seed=1, population_size=8)
    study.optimize(sampled_objective(1), n_trials=5)
    ledger = StudyLedger.of(study)
    ledger.save(study)
    study.optimize(sampled_objective(2), n_trials=5)
    joined = StudyLedger.of(study)  # from the saved ledger and the five trials after it
    ledger.refresh(study)
    bulk = bulk_load(open_storage(url), "bulk", n_trials=150, samples=samples, population_size=8)
    bulk.optimize(sampled_objective(1), n_trials=10)
    saved_in_bulk = StudyLedger.of(bulk)
    best = len(optuna.load_study(study_name="ledger", storage=url).best_trials)
    assert saved_in_bulk.pareto_front_size == len(bulk.best_trials)
    for current in (ledger, joined, saved_in_bulk):
        assert current.tally().finished == current.n_trials == 160
        assert current.counted_before(155) == 155
    assert ledger.pareto_front_size == joined.pareto_front_size == best
    assert list(DIRECTIONS) == [d.name.lower() for d in study.directions]
