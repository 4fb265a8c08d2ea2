"""Progress inside a trial: the objective tells each stage, the bar shows it with its elapsed
time, and log lines never glue to the bar."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import optuna
import pytest
import torch

from optuna_energy.config import load_config
from optuna_energy.measuring.measure import open_meter
from optuna_energy.run import progress
from optuna_energy.run.progress import TrialProgress
from optuna_energy.study import create_or_load_study, load_device_data
from optuna_energy.trial.objective import Objective
from optuna_energy.trial.stopping import LEARNED, ChanceLevel
from tests.helpers import tiny_config


def test_the_objective_tells_every_stage_of_a_trial_and_records_its_chance_level(tmp_path: Path) -> None:
    config = load_config({**tiny_config(tmp_path), "training": {"epochs": 2, "batch_sizes": [128]},
                          "early_stopping": {"first_rung": 1, "factor": 2, "min_peers": 3}})
    data = load_device_data(config, torch.device("cpu"))
    stages: list[tuple[int, str]] = []
    meter = open_meter(data.device, settings=config.measure.meters.values(), meter="estimate")
    objective = Objective(config, data, meter=meter, on_stage=lambda number, stage: stages.append((number, stage)))
    study = create_or_load_study(config)
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    told = ["measuring", "training epoch 1/2", "evaluating after 1 epoch", "rung decision"]
    if trial.state == optuna.trial.TrialState.COMPLETE:  # else it stopped at chance after 1 epoch
        told += ["training epoch 2/2", "evaluating after 2 epochs"]
        chance = ChanceLevel.of(data)
        assert trial.constraints[LEARNED] == pytest.approx(chance.learned_threshold - trial.values[0])
    assert stages == [(0, stage) for stage in told]
    assert trial.user_attrs["eval_images"] == len(data.eval_y) == 360
    assert trial.user_attrs["chance_accuracy"] == data.chance_accuracy


def test_the_bar_shows_the_stage_and_logs_above_it(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "STAGE_REFRESH_SECONDS", 0.01)
    console = logging.StreamHandler(sys.stderr)  # a console handler, as a user's logging has
    logging.getLogger().addHandler(console)
    try:
        study = optuna.create_study(study_name="s", directions=["maximize", "minimize"])
        with TrialProgress(study, total=2) as bar:
            bar.stage(3, "training epoch 2/6")
            logging.getLogger("optuna_energy.test").warning("trial 2 failed: out of memory")
    finally:
        logging.getLogger().removeHandler(console)
    err = capsys.readouterr().err
    assert "trial 3=training epoch 2/6 (0 s)" in err
    lines = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line).split("\r")[-1] for line in err.split("\n")]
    assert "trial 2 failed: out of memory" in lines  # a line of its own


@pytest.mark.parametrize(("seconds", "shown"), [(0.4, "0 s"), (42, "42 s"), (185, "3:05"), (3723, "1:02:03")])
def test_elapsed_times_are_short(seconds: float, shown: str) -> None:
    assert progress._duration(seconds) == shown
