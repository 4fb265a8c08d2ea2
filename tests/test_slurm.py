"""studies/slurm/search.sbatch, submitted to a real one-node Slurm cluster (tests/slurm.py).

The recipe runs as a user would submit it, with sbatch's command line shrinking its #SBATCH
shape (24 nodes x 6 GPUs) to this machine (1 node, no GPU, 2 CPUs) and ``launch`` options for
CPU workers; the study lives on the throwaway PostgreSQL server of the other worker tests.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from optuna_energy.store.budget import tally
from optuna_energy.store.record import TrialRecord
from tests.pg import PASSWORD
from tests.slurm import KILL_WAIT, SlurmCluster
from tests.test_workers_pg import STUDY, Watch, load, tiny_config, wait_for

RECIPE = Path(__file__).parents[1] / "studies" / "slurm" / "search.sbatch"
JOB_SECONDS = 120.0
"""Longest a job may take here (a few trials of a tiny network, two CPU workers)."""


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    """A running one-node cluster; fails (never skips) when it cannot be started."""
    try:
        cluster = SlurmCluster()
    except RuntimeError as error:
        pytest.fail(f"cannot start the test Slurm cluster: {error}", pytrace=False)
    try:
        try:
            cluster.start()
        except (RuntimeError, OSError) as error:
            pytest.fail(f"cannot start the test Slurm cluster: {error}", pytrace=False)
        yield cluster
    finally:
        cluster.stop()


def submit(slurm: SlurmCluster, config: Path, url: str, tmp_path: Path) -> int:
    """The recipe as a user submits it, resized to this machine: 1 node, no GPU, 2 CPU workers."""
    env = {"OPTUNA_ENERGY_STORAGE": url,
           # `optuna-energy` from this interpreter's environment, as `source venv/bin/activate`
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return slurm.sbatch("--nodes=1", "--gpus-per-node=0", f"--cpus-per-task={slurm.cpus}",
                        "--time=5", f"--chdir={tmp_path}", f"--output={tmp_path}/job-%j.out",
                        str(RECIPE), str(config), STUDY, "--workers", "2", env=env)


def job_output(tmp_path: Path, job: int) -> str:
    output = (tmp_path / f"job-{job}.out").read_text()
    assert PASSWORD not in output
    return output


def test_recipe_runs_the_exact_budget_under_slurm(slurm: SlurmCluster, postgres_url: str,
                                                  tmp_path: Path) -> None:
    config = tiny_config(tmp_path, n_trials=6, min_window_seconds=0.05)
    job = submit(slurm, config, postgres_url, tmp_path)

    state = slurm.wait(job, JOB_SECONDS)

    output = job_output(tmp_path, job)
    assert state == "COMPLETED", output[-3000:]
    assert "[cpu0] " in output and "[cpu1] " in output  # srun --label: "0: [cpu0] ..."
    study = load(postgres_url)
    states = Counter(trial.state for trial in study.trials)
    # Finished and counted: trained (COMPLETE, or PRUNED at chance) or failed on its own (diverged).
    assert states[TrialState.COMPLETE] >= 1 and tally(study).finished == 6
    assert states[TrialState.RUNNING] == states[TrialState.WAITING] == 0


def test_scancel_leaves_no_running_trial_and_the_next_job_resumes(
        slurm: SlurmCluster, postgres_url: str, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, n_trials=4, min_window_seconds=3.0)
    job = submit(slurm, config, postgres_url, tmp_path)
    watch = Watch(postgres_url)

    def both_running() -> bool:  # both sampled (the architecture is stored) and past ask()
        running = watch.trials(TrialState.RUNNING)
        return len([trial for trial in running if "architecture" in trial.user_attrs]) == 2

    wait_for(both_running, "both workers of the job in a trial", timeout=JOB_SECONDS)
    cancelled = time.monotonic()
    slurm.client("scancel", str(job))
    assert slurm.wait(job, KILL_WAIT + 30) == "CANCELLED"
    output = job_output(tmp_path, job)
    # Stopped cleanly on Slurm's SIGTERM, well before its SIGKILL after KillWait.
    assert time.monotonic() - cancelled < KILL_WAIT, output[-3000:]
    assert "[launch] SIGTERM: stopping 2 workers" in output

    study = load(postgres_url)
    assert not study.get_trials(states=(TrialState.RUNNING,)), output[-3000:]
    # Stopped by the signal; a trial that failed on its own (a diverged loss) says why, is
    # counted and is not run again.
    stopped = [t for t in study.get_trials(states=(TrialState.FAIL,))
               if not TrialRecord.of(t).failure_reason]
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert len(stopped) == 2
    assert sorted(trial.system_attrs["failed_trial"] for trial in queued) == sorted(
        trial.number for trial in stopped)

    again = submit(slurm, config, postgres_url, tmp_path)
    assert slurm.wait(again, JOB_SECONDS) == "COMPLETED", job_output(tmp_path, again)[-3000:]
    study = load(postgres_url)
    # Finished and counted: trained (COMPLETE, or PRUNED at chance) or failed on its own (diverged).
    assert tally(study).finished == 4
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    retried = {trial.system_attrs.get("failed_trial") for trial in study.trials  # any outcome
               if trial.state.is_finished()}
    assert {trial.number for trial in stopped} <= retried
