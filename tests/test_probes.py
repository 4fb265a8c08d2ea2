"""The probes once never seen to finish on a loaded machine (issue 20): a worker killed with
heartbeats off, no HOME, an unwritable dataset cache, a closed standard output and a worker
stopped while it holds the GPU-sharing lock.

Each asserts what the user gets (one line, or the command simply working), the exit code, no
traceback, and that nothing stored is lost: the study's trials and attributes are identical
before and after, apart from what the event itself must change.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torchvision
from optuna.trial import TrialState

from optuna_energy import run_study
from optuna_energy.cli import main
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.storage import open_storage
from tests.helpers import tiny_config, write_toml
from tests.test_data_sources import accept_written_files, write_cifar10
from tests.test_faults import one_line, stored
from tests.test_gpu_share import events, intervals
from tests.test_gpu_share import start as start_sharer
from tests.test_gpu_share import wait_for as wait_for_event

REPO = Path(__file__).resolve().parent.parent
_PROGRESS_BAR = re.compile(r"^tiny: +\d+%")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``tiny.toml`` (heartbeats off) and its finished two-trial study; probes
    work on copies."""
    folder = tmp_path_factory.mktemp("finished")
    config = tiny_config(folder, learns=True, n_trials=2)
    config["storage"] = {"heartbeat_interval": 0}
    write_toml(folder / "tiny.toml", config)
    run_study(folder / "tiny.toml", show_progress_bar=False)
    return folder


@pytest.fixture
def study(finished: Path, tmp_path: Path) -> Path:
    """A copy of the finished study and its config; returns the config's path."""
    for name in ("study.db", "tiny.toml"):
        shutil.copy(finished / name, tmp_path / name)
    text = (tmp_path / "tiny.toml").read_text().replace(str(finished), str(tmp_path))
    (tmp_path / "tiny.toml").write_text(text)
    return tmp_path / "tiny.toml"


def url(config: Path) -> str:
    return f"sqlite:///{config.parent / 'study.db'}"


def command(*args: str, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """``optuna-energy ARGS`` as a user starts it, in its own process."""
    env = {**(os.environ if env is None else env), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "optuna_energy", *args], env=env, text=True,
                            stderr=subprocess.PIPE, **popen)


def said(stderr: str) -> list[str]:
    """The lines on standard error besides the progress bar; none may be a traceback's."""
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    return [line for line in re.split(r"[\r\n]", stderr) if line.strip() and not _PROGRESS_BAR.match(line)]


def test_a_worker_killed_with_heartbeats_off_is_recovered_by_the_next_run(study: Path, capsys,
                                                                         caplog) -> None:
    before = stored(url(study))
    storage = open_storage(url(study))
    study_id = storage.get_study_id_from_name("tiny")
    worker = command("run", str(study), "--n-trials", "3", stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not [trial for trial in storage.get_all_trials(study_id, states=(TrialState.RUNNING,))
               if TrialRecord.of(trial).worker]:  # in its objective, as an OOM kill finds it
        assert worker.poll() is None and time.monotonic() < deadline, "no trial started"
        time.sleep(0.02)
    worker.kill()  # SIGKILL: nothing of it runs any more
    worker.communicate()

    assert main(["run", str(study), "--n-trials", "3"]) == 0

    assert "Traceback" not in capsys.readouterr().err
    recovered = [message for message in caplog.messages if "belonged to worker" in message]
    assert recovered == [f"trial 2 belonged to worker {socket.gethostname()}:{worker.pid}, a process of this "
                         "machine that no longer exists (killed?); failed it and queued its retry"]
    after = stored(url(study))
    assert after[:len(before)] == before
    trials = storage.get_all_trials(study_id)
    assert [trial.state for trial in trials[:3]] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL]
    assert trials[3].state in (TrialState.COMPLETE, TrialState.PRUNED)  # trained (PRUNED: at chance)
    # the killed trial's retry (with the parameters it had sampled), and the budget exact
    assert trials[2].params.items() <= trials[3].params.items()


def test_without_home_run_and_report_work(study: Path, tmp_path: Path) -> None:
    # This user has an entry in the password database, which Python and matplotlib fall back on.
    env = {name: value for name, value in os.environ.items()
           if name not in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR")}
    before = stored(url(study))
    for args in (["run", str(study), "--n-trials", "3"], ["report", str(study), "--out", str(tmp_path / "r")]):
        done = command(*args, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL)
        _, err = done.communicate(timeout=240)
        assert done.returncode == 0 and not [line for line in said(err) if "error" in line], err
    assert stored(url(study))[:len(before)] == before
    assert len(stored(url(study))) == len(before) + 1
    assert (tmp_path / "r" / "report.md").is_file()


@pytest.fixture
def cifar_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A finished two-trial study of a tiny CIFAR-10 (decoded through the cache); its config."""
    root = tmp_path / "data"
    write_cifar10(root, per_batch=4, test=10)
    accept_written_files(monkeypatch, torchvision.datasets.CIFAR10, root)
    config = tiny_config(tmp_path, n_trials=2)
    config["dataset"] = {"name": "cifar10", "root": str(root), "cache_dir": str(tmp_path / "cache")}
    path = write_toml(tmp_path / "tiny.toml", config)
    assert main(["run", str(path)]) == 0
    assert list((tmp_path / "cache").glob("cifar10-train-*.pt"))
    return path


def _with_cache_dir(config: Path, cache_dir: str | None) -> Path:
    lines = [line for line in config.read_text().splitlines() if not line.startswith("cache_dir")]
    if cache_dir is not None:
        lines.insert(lines.index("[dataset]") + 1, f"cache_dir = {cache_dir!r}".replace("'", '"'))
    config.write_text("\n".join(lines) + "\n")
    return config


def test_an_unwritable_cache_folder_is_one_line_before_any_trial(cifar_study: Path, capsys) -> None:
    # Tests run as root, who may write into any folder: a folder under a regular file cannot be
    # made by anyone (ENOTDIR), as a read-only one cannot by its user.
    (cifar_study.parent / "afile").write_text("")
    unwritable = cifar_study.parent / "afile" / "cache"
    before = stored(url(cifar_study))
    capsys.readouterr()

    error = one_line(capsys, ["run", str(_with_cache_dir(cifar_study, str(unwritable))), "--n-trials", "3"])

    assert error == (f"optuna-energy: error: cannot write the dataset cache in {unwritable} ([Errno 20] Not a "
                     f"directory: '{unwritable}'); set [dataset] cache_dir to a writable folder")
    assert stored(url(cifar_study)) == before


def test_no_home_folder_at_all_is_one_line_naming_what_to_set(
        cifar_study: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    # An arbitrary user id in a container: HOME unset and no entry in the password database.
    before = stored(url(cifar_study))
    capsys.readouterr()
    for name in ("HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    error = one_line(capsys, ["run", str(_with_cache_dir(cifar_study, None)), "--n-trials", "3"])

    assert error == ("optuna-energy: error: no folder for the dataset cache: HOME is not set and this user has "
                     "no home folder; set [dataset] cache_dir (or XDG_CACHE_HOME) to a writable folder")
    assert stored(url(cifar_study)) == before


def test_a_reader_gone_from_standard_output_costs_no_traceback_and_no_trial(study: Path) -> None:
    # `optuna-energy run ... | head -1`, head gone before the summary is printed.
    before = stored(url(study))
    run = command("run", str(study), "--n-trials", "3", stdout=subprocess.PIPE)
    run.stdout.close()  # type: ignore[union-attr]
    _, err = run.communicate(timeout=240)

    assert run.returncode == 0
    assert not [line for line in said(err) if "error" in line], err
    after = stored(url(study))
    assert after[:len(before)] == before and len(after) == len(before) + 1
    assert after[-1][1] in (TrialState.COMPLETE, TrialState.PRUNED)  # trained (PRUNED: at chance)


def test_launch_with_standard_output_closed_finishes_the_study(study: Path) -> None:
    # `optuna-energy launch ... >&-`, as a daemon or a cron job may start it: the workers'
    # prefixed lines have nowhere to go, and the study goes on all the same.
    before = stored(url(study))
    launch = command("launch", str(study), "--workers", "1", "--n-trials", "3", stdout=subprocess.DEVNULL,
                     preexec_fn=lambda: os.close(1))
    _, err = launch.communicate(timeout=240)

    assert launch.returncode == 0 and said(err) == [], err
    after = stored(url(study))
    assert after[:len(before)] == before
    # One trial trained (PRUNED: still at chance after its epoch).
    assert [kept[1] for kept in after[len(before):]] in ([TrialState.COMPLETE], [TrialState.PRUNED])


def test_a_worker_stopped_in_its_window_holds_the_others_until_it_continues(tmp_path: Path) -> None:
    # As Slurm's job suspension (SIGSTOP, then SIGCONT) does: its window resumes whole, with no
    # other worker's training inside it, and then the others go on.
    log, locks = tmp_path / "events.log", tmp_path / "gpu0"
    holder = start_sharer("hold", log, locks)
    wait_for_event(lambda: any(event == "window-open" for _, _, event in events(log)), "the window to open")
    holder.send_signal(signal.SIGSTOP)
    trainer = start_sharer("train", log, locks, rounds=50)
    try:
        wait_for_event(lambda: _opened(trainer.pid, locks / "turn"), "the trainer at the lock", timeout=120)
        time.sleep(1.5)  # longer than the holder's window
        assert not any(event == "step-begin" for _, _, event in events(log))
    finally:
        holder.send_signal(signal.SIGCONT)
    assert holder.wait(timeout=60) == 0 and trainer.wait(timeout=60) == 0

    [(_, opened, closed)] = intervals(log, "window-open", "window-close")
    steps = intervals(log, "step-begin", "step-end")
    assert len(steps) == 50 and all(begin > closed for _, begin, _ in steps), (opened, closed, steps[:3])


def _opened(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (a trainer opens its locks just before it waits)."""
    folder = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(link) == str(path) for link in folder.iterdir())
    except OSError:  # a descriptor closed meanwhile
        return False
