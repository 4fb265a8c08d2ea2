"""The fault suite: a damaged, incomplete, foreign-version or full database, a database that goes
away and comes back, a password that breaks its URL and a bad sampler seed.

Each probe asserts the one line the user gets, the exit code, that no traceback is printed and
that nothing stored is lost: the study's trials and attributes are identical before and after
wherever the database was intact, and a damaged database is left byte for byte as it was.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optuna_energy import run_study
from optuna_energy.cli import main
from optuna_energy.samplers import EvolutionSampler
from optuna_energy.store.budget import tally
from optuna_energy.store.storage import open_storage, storage_fault
from tests.helpers import tiny_config, write_toml
from tests.pg import PASSWORD, PostgresServer
from tests.test_workers_pg import STUDY, Watch, start, wait_for
from tests.test_workers_pg import tiny_config as tiny_pg_config


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file holding the finished two-trial study 'tiny'; probes work on copies."""
    folder = tmp_path_factory.mktemp("finished")
    run_study(tiny_config(folder, n_trials=2), show_progress_bar=False)
    return folder / "study.db"


@pytest.fixture
def copy(finished: Path, tmp_path: Path) -> Path:
    target = tmp_path / "study.db"
    shutil.copy(finished, target)
    write_toml(tmp_path / "tiny.toml", tiny_config(tmp_path))
    return target


def stored(url: str) -> list[tuple]:
    """Everything a study keeps: its attributes and every trial's state, values, parameters and
    attributes; not the package's summaries of its trials (``optuna_energy:`` system attributes:
    the ledger, the evolution population), which a run updates and a reader rebuilds when missing."""
    storage = open_storage(url, create=False)
    kept = []
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        study_id = storage.get_study_id_from_name(summary.study_name)
        summaries = {key: value for key, value in storage.get_study_system_attrs(study_id).items()
                     if not key.startswith("optuna_energy:")}
        kept.append((summary.study_name, study.user_attrs, summaries))
        kept += [(trial.number, trial.state, trial.values, trial.params, trial.user_attrs,
                  trial.system_attrs) for trial in study.get_trials(deepcopy=False)]
    return kept


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(capsys: pytest.CaptureFixture[str], argv: list[str], *, code: int = 2) -> str:
    """Run the command; assert its exit code and one error line on standard error (besides the
    progress bar and one-line warnings), no traceback."""
    assert main(argv) == code
    lines = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(lines)
    said = [line for line in lines  # the bar, its clearing, a failed trial's log line above it
            if line.strip() and not re.match(r"tiny: +\d+%|\[W |trial \d+ failed: ", line)]
    assert len(said) == 1 and "max length" not in "\n".join(lines), lines
    return said[0]


def report(path: Path) -> list[str]:
    return ["report", "--storage", f"sqlite:///{path}", "--out", str(path.parent / "report")]


def _garbage_over_the_second_page(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.seek(4096)
        handle.write(os.urandom(4096))


def _drop_trial_values(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TABLE trial_values")


@pytest.mark.parametrize(("damage", "expected"), [
    (_garbage_over_the_second_page, "the study's database is damaged (database disk image is malformed): "
                                    "restore it from a backup (sqlite3's .recover command may save its trials)"),
    (_drop_trial_values, "the study's database {path} lacks Optuna's table trial_values: it was damaged or "
                         "edited; restore it from a backup (Optuna would recreate it empty)"),
])
def test_a_damaged_database_is_one_line_and_left_as_it_was(copy: Path, capsys, damage, expected: str) -> None:
    damage(copy)
    before = digest(copy)

    error = one_line(capsys, report(copy))

    assert error == "optuna-energy: error: " + expected.format(path=copy)
    assert digest(copy) == before


def test_a_schema_of_another_optuna_version_is_one_line(copy: Path, capsys) -> None:
    with sqlite3.connect(copy) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'v9.9.9.z'")
    before = digest(copy)

    error = one_line(capsys, ["run", str(copy.parent / "tiny.toml"), "--storage", f"sqlite:///{copy}"])

    assert error.startswith(f"optuna-energy: error: the study database sqlite:///{copy} has Optuna's table "
                            "schema v9.9.9.z; this Optuna needs")
    assert "run `optuna storage upgrade --storage URL`" in error
    assert digest(copy) == before


def test_a_garbage_journal_beside_a_valid_database_is_discarded(copy: Path, capsys) -> None:
    before = stored(f"sqlite:///{copy}")
    Path(f"{copy}-journal").write_bytes(os.urandom(4096))

    assert main(report(copy)) == 0

    assert "not a SQLite database" not in capsys.readouterr().err
    assert (copy.parent / "report" / "report.md").is_file()
    assert stored(f"sqlite:///{copy}") == before


def _resume(copy: Path) -> list[str]:
    return ["run", str(copy.parent / "tiny.toml"), "--storage", f"sqlite:///{copy}", "--n-trials", "4"]


def test_a_full_disk_under_sqlite_is_one_line_and_keeps_every_trial(
        copy: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    with sqlite3.connect(copy) as connection:
        connection.execute("VACUUM")  # no free pages left to write into
    before = stored(f"sqlite:///{copy}")
    connect = sqlite3.connect

    def on_a_full_disk(*args, **kwargs) -> sqlite3.Connection:
        # SQLite's answer to ENOSPC is SQLITE_FULL; a page limit at the file's size gives the same.
        connection = connect(*args, **kwargs)
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")
        return connection

    monkeypatch.setattr(sqlite3.dbapi2, "connect", on_a_full_disk)  # the module SQLAlchemy calls
    error = one_line(capsys, _resume(copy))
    monkeypatch.undo()

    assert error.startswith("optuna-energy: error: the study's database has no space left (database or "
                            "disk is full): free some disk space, then run the same command again")
    after = stored(f"sqlite:///{copy}")
    assert after[:len(before)] == before
    assert not [kept for kept in after[len(before):] if kept[1] == TrialState.COMPLETE]


def test_a_full_disk_under_journal_storage_is_one_line_and_keeps_every_trial(
        tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"journal:///{tmp_path / 'study.log'}"
    write_toml(tmp_path / "tiny.toml", tiny_config(tmp_path))
    assert main(["run", str(tmp_path / "tiny.toml"), "--storage", url, "--n-trials", "1"]) == 0
    capsys.readouterr()
    before = stored(url)

    def no_space(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)  # the journal syncs every append
    error = one_line(capsys, ["run", str(tmp_path / "tiny.toml"), "--storage", url, "--n-trials", "3"])
    monkeypatch.undo()

    assert error == (f"optuna-energy: error: the study's database has no space left ({tmp_path / 'study.log'}: "
                     "No space left on device): free some disk space, then run the same command again "
                     "(finished trials are stored)")
    assert stored(url)[:len(before)] == before


def test_a_full_disk_elsewhere_is_not_blamed_on_the_database() -> None:
    assert storage_fault(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "model.onnx")) is None
    assert storage_fault(sqlite3.OperationalError("database or disk is full")) is not None


@pytest.mark.parametrize("password", ["S3C/RE@T:P%W", "Qz9@Kx7w", "Zq/W2@Jv8"])
def test_a_raw_at_sign_or_slash_in_a_password_says_to_percent_encode_it(password: str, capsys) -> None:
    error = one_line(capsys, ["report", "--out", "r", "--storage", f"postgresql://u:{password}@127.0.0.1:5432/db"])

    assert error.startswith("optuna-energy: error: the user name or password in postgresql://u:***@127.0.0.1"
                            ":5432/db holds a raw '@' or '/', which ends that part of a URL: percent-encode")
    assert not any(piece in error for piece in (password, *password.replace("/", "@").split("@")) if len(piece) > 2)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "7"])
def test_a_sampler_seed_outside_numpys_range_names_the_argument(seed: object) -> None:
    with pytest.raises(ValueError, match=rf"^seed must be an integer from 0 to {2**32 - 1}, or None, got "):
        EvolutionSampler(seed=seed)  # type: ignore[arg-type]
    assert EvolutionSampler(seed=2**32 - 1).reseed_rng() is None


def test_a_database_that_goes_away_and_comes_back_costs_no_traceback(
        postgres: PostgresServer, postgres_url: str, tmp_path: Path) -> None:
    config = tiny_pg_config(tmp_path, n_trials=6, min_window_seconds=1.0)
    launcher = start("launch", config, postgres_url, "--workers", "2")
    watch = Watch(postgres_url)
    running: Callable[[], bool] = lambda: bool(  # noqa: E731
        watch.trials(TrialState.COMPLETE) and watch.trials(TrialState.RUNNING))
    wait_for(running, "a finished trial and one in flight", timeout=150)
    watch.storage.engine.dispose()  # type: ignore[attr-defined]
    postgres.go_away()
    time.sleep(8)  # several heartbeats (interval 1 s) fail meanwhile
    postgres.come_back()
    output, _ = launcher.communicate(timeout=300)

    assert launcher.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "Exception in thread" not in output, output[-6000:]
    assert PASSWORD not in output and "[SQL:" not in output
    study = optuna.load_study(study_name=STUDY, storage=open_storage(postgres_url))
    # Finished and counted: trained (COMPLETE, or PRUNED at chance) or failed on its own (diverged).
    assert tally(study).finished == 6
