"""The epoch budget across real worker processes sharing a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import TrialState

from optuna_energy.store.budget import counts
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.training_budget import spent
from tests.test_workers_pg import finish, load, start, tiny_config


def test_three_workers_spend_the_epoch_budget_exactly(postgres_url: str, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, n_trials=1000, min_window_seconds=0.02, epochs=3, max_train_epochs=20)
    finish([start("worker", config, postgres_url) for _ in range(3)])

    trials = load(postgres_url).get_trials(deepcopy=False)
    counted = [t for t in trials if counts(t)]
    assert spent(counted).epochs == 20
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert all(TrialRecord.of(t).epochs_trained <= TrialRecord.of(t).epochs_claimed for t in counted)
    assert len({TrialRecord.of(t).worker for t in counted}) > 1
