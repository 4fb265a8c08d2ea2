"""optuna-dashboard on a study made here: artifacts, the report note, and the page in headless Chromium."""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState
from PIL import Image

import optuna_energy
from optuna_energy.reading.dashboard import ARCHITECTURE_FILE, TOPOLOGY_FILE
from optuna_energy.store.weights import WEIGHTS_FILE, artifact_store
from tests.helpers import free_port, tiny_config

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--window-size=1600,1000"]
OBJECTIVES = ["accuracy", "inference_time", "params", "energy"]
USER_ATTRS = ["architecture_summary", "params", "macs", "energy_source", "energy_gross_j",
              "energy_net_j", "inference_time_s", "device", "constraints", "feasible"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dashboard")
    config = tiny_config(folder, artifact_dir=str(folder / "artifacts"))
    config["constraints"] = {"max_params": 10**9}  # never hit: feasibility is up to "learned"
    optuna_energy.run_study(config, show_progress_bar=False)
    storage = f"sqlite:///{folder / 'study.db'}"
    return folder, storage, optuna.load_study(study_name="tiny", storage=storage)


def test_each_completed_trial_uploads_its_drawing_architecture_and_weights(made, tmp_path):
    folder, _, study = made
    store = artifact_store(folder / "artifacts")
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        metas = {meta.filename: meta for meta in get_all_artifact_meta(trial, storage=study._storage)}
        assert set(metas) == {TOPOLOGY_FILE, ARCHITECTURE_FILE, WEIGHTS_FILE}  # one store for all
        with store.open_reader(metas[ARCHITECTURE_FILE].artifact_id) as reader:
            assert json.loads(reader.read()) == trial.user_attrs["architecture"]
        with store.open_reader(metas[TOPOLOGY_FILE].artifact_id) as reader, Image.open(reader) as image:
            assert image.format == "PNG" and image.height > 100


def test_study_note_shows_the_report_table(made):
    from optuna_dashboard import get_note

    note = get_note(made[2])
    assert "Highlighted models" in note and "| model | trial |" in note
    assert "energy/inference" in note and "The search spent" in note


def test_the_note_names_what_the_dashboard_marks_best_wrongly_in_the_papers_mode(tmp_path):
    """Infeasible trials that complete (here: no early stopping) are best to optuna-dashboard."""
    from optuna_dashboard import get_note

    from optuna_energy.reading.dashboard import dashboard_only_best

    config = tiny_config(tmp_path, artifact_dir=str(tmp_path / "artifacts"))
    config["early_stopping"] = {"enabled": False}
    study = optuna_energy.run_study(config, show_progress_bar=False)
    wrong = dashboard_only_best(study)
    assert wrong and not any(t.user_attrs["feasible"] for t in wrong)
    note = get_note(study)
    assert f"**Not best trials: {', '.join(str(t.number) for t in wrong)}.**" in note
    assert "does not read Optuna 5's constraints" in note


def test_constraints_are_mirrored_in_user_attributes(made):
    for trial in made[2].get_trials(states=(TrialState.COMPLETE,)):
        assert set(trial.constraints) == {"learned", "params"}
        assert trial.user_attrs["constraints"] == pytest.approx(trial.constraints)
        assert trial.user_attrs["feasible"] is (trial.constraints["learned"] <= 0)



def _wait_for(url: str, server: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"dashboard exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"dashboard did not answer {url} within {seconds} s")


def _chromium(*args: str) -> str:
    # The SPA renders after its API calls: virtual time lets them finish before the dump.
    result = subprocess.run(["chromium", *CHROMIUM_FLAGS, "--virtual-time-budget=20000", *args],
                            capture_output=True, text=True, timeout=180, check=True)
    return result.stdout


def _visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


@contextlib.contextmanager
def _dashboard(storage: str, log: Path) -> Iterator[str]:
    """``optuna-energy dashboard`` on a free loopback port; yields its base URL."""
    port = free_port()
    # Output to a file, not a pipe: a full pipe of request logs would block the server.
    with log.open("w") as output:
        # No --artifact-dir: the command finds the store the study recorded in its config.
        server = subprocess.Popen(
            [sys.executable, "-m", "optuna_energy", "dashboard", "--storage", storage, "--port", str(port)],
            stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_for(f"{base}/api/studies", server, log)
            yield base
        finally:
            server.terminate()
            server.wait(timeout=30)


def test_dashboard_page_in_headless_chromium(made, tmp_path):
    folder, storage, study = made
    log = tmp_path / "dashboard.log"
    with _dashboard(storage, log) as base:
        # The trials table (with user attributes as columns) is on the Smart Selection page.
        text = _visible_text(_chromium("--dump-dom", f"{base}/dashboard/studies/{study._study_id}/smartSelection"))
        assert "tiny" in text
        for name in OBJECTIVES + USER_ATTRS:
            assert name in text, f"{name!r} not rendered"
        assert "estimate" in text  # a user attribute's value, not only its column
        # The dashboard's best trials (the Pareto front of its COMPLETE trials, constraints not
        # read) are the study's plus exactly the ones the study's note names as not best.
        from optuna_energy.reading.dashboard import dashboard_only_best

        with urllib.request.urlopen(f"{base}/api/studies/{study._study_id}") as response:
            detail = json.loads(response.read())
        extra = [t.number for t in dashboard_only_best(study)]
        assert sorted(t["number"] for t in detail["best_trials"]) == sorted(
            [t.number for t in study.best_trials] + extra)
        if extra:
            from optuna_dashboard import get_note

            assert f"**Not best trials: {', '.join(map(str, extra))}.**" in get_note(study)
        shot = tmp_path / "dashboard.png"
        _chromium(f"--screenshot={shot}", f"{base}/dashboard/studies/{study._study_id}")
        with Image.open(shot) as image:
            assert image.size == (1600, 1000)
        kept = REPO / "out" / "test-artifacts"
        kept.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, kept / "dashboard.png")
        # The artifact store is wired in: a trial's drawing is served.
        assert f"(artifacts: {folder / 'artifacts'})" in log.read_text().splitlines()[0]
        trial = study.get_trials(states=(TrialState.COMPLETE,))[0]
        meta = next(m for m in get_all_artifact_meta(trial, storage=study._storage)
                    if m.filename == TOPOLOGY_FILE)
        url = f"{base}/artifacts/{study._study_id}/{trial._trial_id}/{meta.artifact_id}"
        with urllib.request.urlopen(url) as response:
            assert response.read(8) == b"\x89PNG\r\n\x1a\n"
