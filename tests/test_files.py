"""Every file the package writes: never over the study's storage under any name, whole or not at
all (a full disk, Ctrl-C), and a failure is one line naming the path and the cause."""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
from matplotlib.figure import Figure
from optuna.storages.journal import JournalFileBackend, JournalStorage

import optuna_energy
from optuna_energy.cli import main
from optuna_energy.host.files import OutputError, replacing, write_text
from optuna_energy.reading.report_files import REPORT_FILES
from optuna_energy.store.storage import storage_files
from tests.helpers import tiny_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A real study's database, made once; each test works on its own copy."""
    folder = tmp_path_factory.mktemp("made")
    optuna_energy.run_study(tiny_config(folder, n_trials=3), show_progress_bar=False)
    return folder / "study.db"


def _copy(made: Path, folder: Path, name: str = "study.db") -> Path:
    """The made study's database in ``folder``, with the weights its trials kept beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    if (made.parent / "artifacts").is_dir() and not (folder / "artifacts").exists():
        shutil.copytree(made.parent / "artifacts", folder / "artifacts")
    return Path(shutil.copy(made, folder / name))


def _trials(database: Path) -> list[tuple]:
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{database}")
    return [(trial.number, trial.state, trial.values, trial.user_attrs) for trial in study.trials]


def _completed_trial(database: Path) -> int:
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{database}")
    return next(trial.number for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE)


def _report(database: Path, out: Path | str) -> list[str]:
    return ["report", "--storage", f"sqlite:///{database}", "--out", str(out)]


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("optuna-energy: error: "), captured.err
    return lines[0]


def _symlink_at(name: str, *, to: str = "") -> object:
    def make(tmp_path: Path, database: Path) -> Path:
        out = tmp_path / "out"
        out.mkdir()
        (out / name).symlink_to(Path(str(database) + to))
        return out
    return make


def _hard_link_at(name: str) -> object:
    def make(tmp_path: Path, database: Path) -> Path:
        out = tmp_path / "out"
        out.mkdir()
        os.link(database, out / name)
        return out
    return make


def _symlinked_folder(tmp_path: Path, database: Path) -> Path:
    (tmp_path / "linked").symlink_to(database.parent, target_is_directory=True)
    return tmp_path / "linked"


def _dot_dot(tmp_path: Path, database: Path) -> Path:
    (database.parent / "sub").mkdir()
    return database.parent / "sub" / ".."


ALIASES = {
    "report.md symlink": ("study.db", _symlink_at("report.md")),
    "table.csv symlink": ("study.db", _symlink_at("table.csv")),
    "PNG symlink": ("study.db", _symlink_at("fig1_costs_vs_accuracy.png")),
    "symlink to the write-ahead log": ("study.db", _symlink_at("hypervolume.png", to="-wal")),
    "table.csv hard link": ("study.db", _hard_link_at("table.csv")),
    "report.md hard link": ("study.db", _hard_link_at("report.md")),
    "symlinked folder": ("report.md", _symlinked_folder),
    "dot-dot": ("table.csv", _dot_dot),
}


@pytest.mark.parametrize("alias", list(ALIASES))
def test_report_never_writes_over_the_study_database(made, tmp_path, capsys, alias):
    name, make = ALIASES[alias]
    database = _copy(made, tmp_path / "db", name)
    before, trials = database.read_bytes(), _trials(database)
    out = make(tmp_path, database)
    listed = sorted(os.listdir(out))

    assert main(_report(database, out)) == 2
    line = _one_error_line(capsys)
    assert "the study's own storage file" in line and "choose another path" in line
    assert database.read_bytes() == before
    assert _trials(database) == trials
    assert sorted(os.listdir(out)) == listed  # refused before anything was written
    assert not Path(str(database) + "-wal").exists()


def test_a_journal_log_and_its_lock_are_refused_under_any_name(tmp_path):
    log = tmp_path / "study.log"
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(log))))
    study.enqueue_trial({"x": 1})
    before = log.read_bytes()
    for name, target in (("link", log), ("lock", Path(f"{log}.lock")), ("up", None)):
        path = tmp_path / name
        if target is not None:
            path.symlink_to(target)
        else:
            path = tmp_path / "sub" / ".." / log.name
        with pytest.raises(OutputError, match="the study's own storage file"):
            write_text(path, "# report\n", protect=storage_files(study))
    assert log.read_bytes() == before
    assert not Path(f"{log}.lock").exists()


def test_a_symlink_to_another_file_is_written_through_atomically(tmp_path):
    real = tmp_path / "kept" / "report.md"
    real.parent.mkdir()
    real.write_text("old")
    real.chmod(0o640)
    (tmp_path / "link.md").symlink_to(real)
    write_text(tmp_path / "link.md", "new")
    assert (tmp_path / "link.md").is_symlink() and real.read_text() == "new"
    assert real.stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(real.parent)) == ["report.md"]


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture
def written(made, tmp_path, capsys):
    """A study copy and the folder of a first, successful report, each file marked so that any
    rewrite shows (a new report would have the same bytes)."""
    database = _copy(made, tmp_path / "db")
    out = tmp_path / "out"
    assert main(_report(database, out)) == 0
    capsys.readouterr()
    assert set(_files(out)) <= set(REPORT_FILES)
    for path in out.iterdir():
        path.write_bytes(b"previous " + path.read_bytes())
    return database, out


def test_a_full_disk_leaves_the_previous_report_and_says_so_in_one_line(written, capsys, monkeypatch):
    database, out = written
    before = _files(out)

    def full_disk(handle):  # the file system's answer when delayed allocation finds no room
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    assert main(_report(database, out)) == 2
    line = _one_error_line(capsys)
    assert f"cannot write {out / 'fig1_costs_vs_accuracy.png'}: No space left on device" in line
    assert _files(out) == before  # no temporary, partial or empty file either


def test_a_file_too_large_mid_write_fails_in_one_line_in_a_real_process(written):
    """The OS refuses the write itself (RLIMIT_FSIZE, as a quota or a full disk would): the
    figure's temporary file is half written when it fails."""
    database, out = written
    before = _files(out)

    small_files = ("import resource, runpy, signal, sys\n"
                   "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill\n"
                   "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))\n"
                   "sys.argv = ['optuna-energy', *sys.argv[1:]]\n"
                   "runpy.run_module('optuna_energy', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", small_files, *_report(database, out)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"optuna-energy: error: cannot write {out / 'fig1_costs_vs_accuracy.png'}: File too large"]
    assert _files(out) == before


def test_ctrl_c_inside_a_writer_leaves_the_previous_file(written, capsys, monkeypatch):
    database, out = written
    before = _files(out)
    original = Figure.savefig

    def interrupted(figure, path, **kwargs):
        original(figure, path, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:100])  # half written
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    assert main(_report(database, out)) == 130
    assert _files(out) == before


def test_an_error_inside_the_block_is_not_renamed_into_place(tmp_path):
    target = tmp_path / "model.pt2"
    target.write_bytes(b"previous")
    with pytest.raises(ValueError, match="checked and wrong"), replacing(target) as draft:
        draft.write_bytes(b"half")
        raise ValueError("checked and wrong")
    assert _files(tmp_path) == {"model.pt2": b"previous"}


def test_an_unwritable_folder_is_one_line():
    # Root writes into read-only folders: as root, a forked child drops to the user 'nobody'.
    folder = Path(tempfile.mkdtemp(prefix="unwritable-", dir="/tmp"))
    folder.chmod(0o555)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            try:
                write_text(folder / "a.md", "x")
                os.write(write_end, b"written")
            except OutputError as error:
                os.write(write_end, str(error).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end) as said:
        message = said.read()
    folder.chmod(0o700)
    shutil.rmtree(folder)
    assert message == f"cannot write {folder / 'a.md'}: Permission denied"


def test_export_into_a_file_instead_of_a_folder_says_so(made, tmp_path, capsys):
    database = _copy(made, tmp_path / "db")
    (tmp_path / "afile").write_text("mine")
    assert main(["export", "--storage", f"sqlite:///{database}", "--trial", str(_completed_trial(database)),
                 "-o", str(tmp_path / "afile" / "e.pt2")]) == 2
    line = _one_error_line(capsys)
    assert f"'{tmp_path / 'afile'}' in output" in line and "is a file, not a folder" in line
    assert (tmp_path / "afile").read_text() == "mine"


def test_export_onto_a_full_disk_is_one_line_and_leaves_no_file(made, tmp_path, capsys, monkeypatch):
    database = _copy(made, tmp_path / "db")
    number = _completed_trial(database)
    out = tmp_path / "out"
    out.mkdir()

    def full_disk(handle):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    assert main(["export", "--storage", f"sqlite:///{database}", "--trial", str(number),
                 "--format", "onnx", "-o", str(out / "m.onnx")]) == 2
    assert f"cannot write {out / 'm.onnx'}: No space left on device" in _one_error_line(capsys)
    assert os.listdir(out) == []
