"""SIGINT, SIGTERM and SIGHUP at each moment of a command: one line, the documented exit code,
no trial left RUNNING, every stored trial kept (issue 20). Real processes, real signals."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from optuna.trial import FrozenTrial, TrialState

from optuna_energy.config import load_config
from optuna_energy.store.storage import open_storage
from optuna_energy.study import run_study
from tests.test_workers_pg import STUDY
from tests.test_workers_pg import tiny_config as worker_config

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 130, signal.SIGHUP: 129}  # docs/errors.md
_PROGRESS_BAR = re.compile(r"^\S+: +\d+%\|")
_WARNING = "optuna-energy: warning: "  # said at start-up (no energy meter on this machine), not of the stop
_WRAPPED = "  "  # a warning wrapped to 100 columns goes on indented
_RETRY = "database unavailable, retrying"  # a wait for the database (run.recovery), not of the stop


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config and a SQLite study beside it with two finished trials; each test copies both."""
    folder = tmp_path_factory.mktemp("stored")
    config = worker_config(folder, n_trials=2, min_window_seconds=0.5)  # a trial lasts over 0.5 s
    run_study(load_config(config).with_study(storage=f"sqlite:///{folder / 'study.db'}"),
              show_progress_bar=False)
    return folder


def _as_a_terminal_gives_them() -> None:
    """The default action for SIGINT and SIGHUP, whatever the test runner inherited (a CI job
    started in the background or under nohup ignores them, and the package keeps an ignored one
    ignored)."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


class Child:
    """``optuna-energy COMMAND`` on a copy of the stored study, its output collected as it comes."""

    def __init__(self, stored: Path, folder: Path, *args: str) -> None:
        shutil.copy(stored / "study.db", folder / "study.db")
        self.storage = open_storage(f"sqlite:///{folder / 'study.db'}")
        self.before = self.trials()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "optuna_energy", *args, str(stored / "tiny.toml"),
             "--storage", f"sqlite:///{folder / 'study.db'}"],
            env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=_as_a_terminal_gives_them)
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [threading.Thread(target=self._read, args=stream, daemon=True)
                        for stream in ((self.process.stdout, self.out), (self.process.stderr, self.err))]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(source, lines: list[str]) -> None:
        lines.extend(source)

    def trials(self) -> list[FrozenTrial]:
        study_id = self.storage.get_study_id_from_name(STUDY)
        return self.storage.get_all_trials(study_id)

    def wait_for(self, moment: Callable[[], bool], what: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not moment():
            assert self.process.poll() is None, f"ended before {what}: {''.join(self.err)[-2000:]}"
            assert time.monotonic() < deadline, f"no {what} in {timeout} s"
            time.sleep(0.05)  # as gently as a dashboard: the watcher must not be what the child waits on

    def handles_signals(self) -> bool:
        """Whether the entry point has caught SIGTERM and SIGHUP: the heavy import then begins."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        caught = int(re.search(r"SigCgt:\s*([0-9a-f]+)", status).group(1), 16)  # type: ignore[union-attr]
        return all(caught >> (sig - 1) & 1 for sig in (signal.SIGTERM, signal.SIGHUP))

    def stop(self, sig: signal.Signals, *, within: float = 120) -> str:
        """Send ``sig``, wait for the end; the one line on stderr (a progress bar and start-up
        warnings aside)."""
        os.kill(self.process.pid, sig)
        self.process.wait(timeout=within)
        for reader in self.readers:
            reader.join(timeout=10)
        err = "".join(self.err)
        assert "Traceback" not in err and "Exception ignored" not in err, err
        assert self.process.returncode == EXIT_CODES[sig], err
        lines = [line for line in re.split(r"[\r\n]", err)
                 if line.strip() and not _PROGRESS_BAR.match(line)
                 and not line.startswith((_WARNING, _WRAPPED, _RETRY))]
        assert len(lines) == 1, err
        assert lines[0].startswith("optuna-energy: interrupted"), err
        return lines[0]

    def assert_nothing_lost(self) -> None:
        """The stored trials unchanged; a trial this process ran is finished, or failed with its
        copy queued; none is left RUNNING."""
        after = self.trials()
        assert after[:len(self.before)] == self.before
        new = after[len(self.before):]
        assert not [trial for trial in new if trial.state == TrialState.RUNNING]
        queued = [trial.params for trial in new if trial.state == TrialState.WAITING]
        for failed in (trial for trial in new if trial.state == TrialState.FAIL):
            assert failed.params in queued, (failed.number, [(t.number, t.state) for t in new])


@pytest.mark.parametrize(("command", "sig"), [
    (["run"], signal.SIGINT), (["run"], signal.SIGHUP),
    (["worker"], signal.SIGTERM), (["launch", "--workers", "2"], signal.SIGTERM)],
    ids=["run-SIGINT", "run-SIGHUP", "worker-SIGTERM", "launch-SIGTERM"])
def test_a_signal_while_importing_is_one_line(stored: Path, tmp_path: Path, command: list[str],
                                              sig: signal.Signals) -> None:
    child = Child(stored, tmp_path, *command)
    child.wait_for(child.handles_signals, "signal handler")
    line = child.stop(sig)
    assert line.endswith("while starting; nothing was run")
    assert child.trials() == child.before


def test_launch_stopped_while_starting_workers_stops_them_in_one_line(stored: Path, tmp_path: Path) -> None:
    child = Child(stored, tmp_path, "launch", "--workers", "2")
    child.wait_for(lambda: any("started worker" in line for line in child.out), "worker started")
    line = child.stop(signal.SIGTERM, within=180)
    assert "interrupted by SIGTERM" in line
    out = "".join(child.out)
    assert "[launch] SIGTERM: stopping" in out and "Traceback" not in out, out
    assert child.trials() == child.before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda sig: sig.name)
def test_a_signal_in_a_trial_fails_and_requeues_it(stored: Path, tmp_path: Path, sig: signal.Signals) -> None:
    child = Child(stored, tmp_path, "run", "--n-trials", "4")
    child.wait_for(lambda: any(trial.state == TrialState.RUNNING for trial in child.trials()),
                   "RUNNING trial")
    line = child.stop(sig)
    assert "finished trials are stored, run the same command to resume" in line
    assert "Pareto front of study" in "".join(child.out)  # what the study has so far
    child.assert_nothing_lost()
    assert [trial.state for trial in child.trials()[len(child.before):]] == [TrialState.FAIL, TrialState.WAITING]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=lambda sig: sig.name)
def test_a_signal_while_writing_the_report_ends_it_at_once(stored: Path, tmp_path: Path,
                                                           sig: signal.Signals) -> None:
    child = Child(stored, tmp_path, "report", "--out", str(tmp_path / "report"))
    child.wait_for(lambda: any("trained" in line for line in child.out), "summary printed")
    time.sleep(0.1)  # drawing the figures (a second or more)
    child.stop(sig, within=30)
    assert child.trials() == child.before


def test_a_hangup_ignored_by_nohup_stays_ignored() -> None:
    code = ("import os, signal; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
            "from optuna_energy.host.interrupts import handle_stop_signals; handle_stop_signals(); "
            "os.kill(os.getpid(), signal.SIGHUP); print('still running')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert (done.returncode, done.stdout) == (0, "still running\n"), done.stderr


def test_a_stop_swallowed_by_a_finalizer_still_stops_the_command() -> None:
    # Raised inside a __del__ (matplotlib's, PIL's while a report is drawn), Python only printed
    # "Exception ignored in ..." and the command went on for minutes.
    code = ("import os, signal, time; from optuna_energy.host.interrupts import exit_code, "
            "handle_stop_signals\n"
            "class Finalized:\n"
            "    def __del__(self):\n"
            "        os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.2)\n"
            "handle_stop_signals()\n"
            "start = time.monotonic()\n"
            "try:\n"
            "    Finalized()\n"
            "    time.sleep(30); print('went on')\n"
            "except KeyboardInterrupt as stop:\n"
            "    print('stopped', exit_code(stop), 'at once' if time.monotonic() - start < 10 else 'late')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert (done.stdout, done.stderr) == ("stopped 130 at once\n", "")
