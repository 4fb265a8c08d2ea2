"""Storage URLs: schemes, drivers, journal files, masking, and concurrent table creation."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import optuna
import pytest

from optuna_energy.config import StorageSection
from optuna_energy.storage import StorageError, mask_text, mask_url, open_storage


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://optuna:s3cret@db:5432/nas", "postgresql://optuna:***@db:5432/nas"),
    ("mysql+pymysql://u:p%40ss@host/db", "mysql+pymysql://u:***@host/db"),
    ("postgresql://optuna@db/nas", "postgresql://optuna@db/nas"),
    ("sqlite:///optuna_energy.db", "sqlite:///optuna_energy.db"),
])
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert mask_url(f"error for {url}: refused") == f"error for {masked}: refused"


def test_mask_text_hides_a_password_repeated_outside_the_url() -> None:
    url = "postgresql://optuna:s3cret@db/nas"
    assert mask_text("auth failed for password s3cret", url) == "auth failed for password ***"


def test_journal_url_opens_a_file_relative_or_absolute(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = optuna.create_study(storage=open_storage("journal:///relative.log"), study_name="r")
    absolute = optuna.create_study(storage=open_storage(f"journal:///{tmp_path}/absolute.log"),
                                   study_name="a")
    relative.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    absolute.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    assert (tmp_path / "relative.log").stat().st_size > 0 and (tmp_path / "absolute.log").exists()
    reopened = optuna.load_study(study_name="r", storage=open_storage("journal:///relative.log"))
    assert len(reopened.trials) == 2


@pytest.mark.parametrize(("url", "message"), [
    ("redis://host/0", "allowed schemes: sqlite://, postgresql://, mysql://, journal://"),
    ("journal://", "needs a file"),
    ("journal:////no/such/dir/x.log", "cannot open journal file '/no/such/dir/x.log'"),
    ("mysql://u:pw-XYZ@127.0.0.1/db", "pip install 'optuna-energy[mysql]'"),
    ("postgresql+psycopg2://u:pw-XYZ@127.0.0.1/db", "'psycopg2' is not installed"),
])
def test_bad_urls_give_one_line_without_password(url: str, message: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymysql", None)  # the mysql extra not installed
    with pytest.raises(StorageError) as raised:
        open_storage(url)
    assert message in str(raised.value)
    assert "pw-XYZ" not in str(raised.value) and "\n" not in str(raised.value)


def test_heartbeat_settings_reach_the_rdb_storage(tmp_path: Path) -> None:
    settings = StorageSection(heartbeat_interval=5, grace_period=20, max_retry=2)
    storage = open_storage(f"sqlite:///{tmp_path}/h.db", settings)
    assert storage.get_heartbeat_interval() == 5 and storage.grace_period == 20
    assert storage.get_heartbeat_stale_trial_callback()._max_retry == 2
    off = open_storage(f"sqlite:///{tmp_path}/h.db", StorageSection(heartbeat_interval=0))
    assert off.get_heartbeat_interval() is None


def test_workers_opening_an_empty_postgres_database_together_all_succeed(postgres_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def open_together() -> None:
        barrier.wait()
        try:
            open_storage(postgres_url)
        except BaseException as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=open_together) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    optuna.create_study(storage=open_storage(postgres_url), study_name="after-race")
