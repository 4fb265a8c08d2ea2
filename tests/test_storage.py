"""Storage URLs: schemes, drivers, journal files, masking, and concurrent table creation."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import optuna
import pytest

from optuna_energy.config import StorageSection
from optuna_energy.store.storage import StorageError, mask_text, mask_url, open_storage


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://optuna:s3cret@db:5432/nas", "postgresql://optuna:***@db:5432/nas"),
    ("mysql+pymysql://u:p%40ss@host/db", "mysql+pymysql://u:***@host/db"),
    ("postgresql://optuna@db/nas", "postgresql://optuna@db/nas"),
    ("sqlite:///optuna_energy.db", "sqlite:///optuna_energy.db"),
])
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert mask_url(f"error for {url}: refused") == f"error for {masked}: refused"


@pytest.mark.parametrize(("url", "secrets"), [
    ("postgresql://user:SEC/RETPW@host/db", ["SEC/RETPW", "RETPW"]),
    ("postgresql://host/db?user=u&password=SECRETPW", ["SECRETPW"]),
    ("postgresql://host/db?sslmode=require&sslpassword=SECRETPW&x=1", ["SECRETPW"]),
    ("postgresql://user:SEC@RETPW@host/db", ["SEC@RETPW", "RETPW"]),
    ("postgresql://u:pa%25s:s?w#rd!@h:5/db", ["pa%25s:s?w#rd!", "s:s?w#rd", "w#rd!"]),
])
def test_mask_url_hides_passwords_holding_url_delimiters(url: str, secrets: list[str]) -> None:
    for text in (url, f"cannot open '{url}': refused", f"error for {url}\nnext line"):
        masked = mask_url(text)
        assert "***" in masked and not any(secret in masked for secret in secrets), masked


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


SPECIAL_PASSWORD = "S/E@C:R%E?T#pw"
"""Every character that ends a part of a URL: only ``@`` and ``%`` need percent-encoding."""


def _special_url(postgres, database: str) -> str:
    postgres.sql(f"ALTER ROLE optuna PASSWORD '{SPECIAL_PASSWORD}'")
    encoded = SPECIAL_PASSWORD.replace("%", "%25").replace("@", "%40")
    return f"postgresql://optuna:{encoded}@127.0.0.1:{postgres.port}/{database}"


def _forms(password: str) -> list[str]:
    from urllib.parse import quote

    return [password, password.replace("%", "%25").replace("@", "%40"), quote(password, safe=""),
            password.split("@")[1], "T#pw"]


def test_passwords_with_url_delimiters_connect_and_are_never_printed(postgres, capsys,
                                                                     monkeypatch) -> None:
    from optuna_energy.cli import main
    from tests.pg import PASSWORD

    database = postgres.new_database().rsplit("/", 1)[1]
    url = _special_url(postgres, database)
    try:
        optuna.create_study(storage=open_storage(url), study_name="real")  # it really connects
        outputs = []
        for argv in (["report", "--storage", url, "--study-name", "none", "--out", "x"],
                     ["export", "--storage", url, "--study-name", "none", "--trial", "0",
                      "--format", "onnx", "-o", "x.onnx"],
                     ["report", "--storage", url.replace(f":{postgres.port}/", ":1/"), "--out", "x"]):
            assert main(argv) == 2
            outputs.append(capsys.readouterr().err)
        monkeypatch.setenv("OPTUNA_ENERGY_STORAGE", url.rsplit("/", 1)[0] + "/no_such_db")
        assert main(["worker", "--n-trials", "1"]) == 2
        outputs.append(capsys.readouterr().err)
    finally:
        postgres.sql(f"ALTER ROLE optuna PASSWORD '{PASSWORD}'")
    assert all(output.count("\n") == 1 and "***" in output for output in outputs), outputs
    for output in outputs:
        assert not any(form in output for form in _forms(SPECIAL_PASSWORD)), output


def test_a_run_indexes_trials_by_state_and_a_reading_command_leaves_the_database_alone(tmp_path) -> None:
    import sqlite3

    from optuna_energy.store.storage import TRIAL_STATE_INDEX, open_storage

    def indexes(path) -> set[str]:
        with sqlite3.connect(path) as connection:
            return {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}

    plain = tmp_path / "plain.db"
    optuna.create_study(storage=f"sqlite:///{plain}")  # Optuna's own tables, as another tool made them
    open_storage(f"sqlite:///{plain}", create=False)
    assert TRIAL_STATE_INDEX not in indexes(plain)
    open_storage(f"sqlite:///{plain}")
    open_storage(f"sqlite:///{plain}")  # a second worker finds it made
    assert TRIAL_STATE_INDEX in indexes(plain)
