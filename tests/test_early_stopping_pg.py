"""The epoch budget across real worker processes sharing a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import TrialState

from optuna_energy.budget import counts
from optuna_energy.record import TrialRecord
from optuna_energy.training_budget import spent
from tests.test_workers_pg import STUDY, finish, load, start


def test_three_workers_spend_the_epoch_budget_exactly(postgres_url: str, tmp_path: Path) -> None:
    config = tmp_path / "epochs.toml"
    config.write_text(f"""
[study]
name = "{STUDY}"
sampler = "random"
n_trials = 1000
max_train_epochs = 20
device = "cpu"
[training]
epochs = 3
batch_sizes = [128]
[space]
feature_slots = 2
classifier_slots = 1
conv_channels = [4, 8]
kernel_size = [1, 3]
linear_width = [8, 16]
[measure]
batch_size = 50
warmup_batches = 0
min_window_seconds = 0.02
idle_seconds = 0.0
meter = "estimate"
[storage]
heartbeat_interval = 1
grace_period = 10
""")
    finish([start("worker", config, postgres_url) for _ in range(3)])

    trials = load(postgres_url).get_trials(deepcopy=False)
    counted = [t for t in trials if counts(t)]
    assert spent(counted).epochs == 20
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert all(TrialRecord.of(t).epochs_trained <= TrialRecord.of(t).epochs_claimed for t in counted)
    assert len({TrialRecord.of(t).worker for t in counted}) > 1
