"""Reading a study for analysis (reading/study_trials.py): the light read of an SQLite study gives
the same answers as Optuna's full read, reads no trial's parameters, and a refresh reads only the
trials that are new or were unfinished, however many the study has."""

from __future__ import annotations

import math
import warnings

import numpy as np
import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from optuna_energy.reading import study_trials
from optuna_energy.reading.analysis import (
    hypervolume_history,
    pareto_front,
    pareto_trials,
)
from optuna_energy.reading.dashboard import ReportNote, dashboard_only_best, note_markdown
from optuna_energy.reading.report import build_report, payback_text, table_csv
from optuna_energy.reading.savings import savings
from optuna_energy.reading.study_trials import ANALYSED_FIELDS, StudyTrials

OBJECTIVES = ["accuracy", "inference_time", "params", "energy"]
DIRECTIONS = ["maximize", "minimize", "minimize", "minimize"]


def new_study(storage: str | None) -> optuna.Study:
    study = optuna.create_study(storage=storage, directions=DIRECTIONS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(OBJECTIVES)
    return study


def add_trials(study: optuna.Study, rng: np.random.Generator, count: int, *,
               state: TrialState | None = None) -> None:
    """Trials as the objective ends them: completed (a few infeasible or with an infinite
    cost), stopped early, failed on purpose, or still running."""
    for _ in range(count):
        size = float(rng.lognormal(8, 1.5))
        accuracy = float(np.clip(1 - np.exp(-size / 3e3) + rng.normal(0, 0.05), 0, 1))
        seconds = size * 1e-7 if rng.random() > 0.05 else math.inf
        joules = size * 1e-9 * float(rng.lognormal(0, 0.3))
        attrs = {"accuracy": accuracy, "inference_time_s": seconds, "params": size,
                 "energy_per_inference_j": joules, "train_energy_j": size * 1e-3, "macs": 2 * size,
                 "energy_source": "estimate", "architecture": [{"kind": "linear", "width": 16}],
                 "architecture_summary": "linear16", "epochs_trained": 3}
        chosen = state or TrialState(int(rng.choice([1, 1, 1, 2, 4])))  # COMPLETE, PRUNED, FAIL
        params = {"train_lr": float(rng.uniform(1e-4, 1e-2))}
        distributions = {"train_lr": FloatDistribution(1e-4, 1e-2)}
        if chosen == TrialState.PRUNED:
            attrs["stop_reason"] = "outranked at 1 epoch"
        if chosen == TrialState.FAIL:
            attrs["failure_reason"] = "out of memory"
        study.add_trial(create_trial(
            state=chosen, params=params, distributions=distributions, user_attrs=attrs,
            values=[accuracy, seconds, size, joules] if chosen == TrialState.COMPLETE else None,
            system_attrs={"constraints:learned": 0.2 - accuracy} if chosen == TrialState.COMPLETE else {}))


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'study.db'}"


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), count=st.integers(1, 40))
def test_the_light_read_gives_what_optunas_full_read_gives(tmp_path_factory, seed, count):
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'study.db'}"
    study = new_study(url)
    add_trials(study, np.random.default_rng(seed), count)
    add_trials(study, np.random.default_rng(seed), 1, state=TrialState.COMPLETE)  # one usable at least
    light, full = StudyTrials(study).trials, study.get_trials(deepcopy=False)
    assert [(t.number, t.state, t.values, t.constraints) for t in light] == \
        [(t.number, t.state, t.values, t.constraints) for t in full]
    assert [t.user_attrs for t in light] == \
        [{key: value for key, value in t.user_attrs.items() if key in ANALYSED_FIELDS} for t in full]

    copy = new_study(None)  # the same trials in memory, where the analysis reads Optuna's trials
    copy.add_trials(full)
    if not StudyTrials(copy).usable:  # the one completed trial is infeasible: nothing to report
        return
    report, expected = build_report(study), build_report(copy)
    assert table_csv(report) == table_csv(expected)
    assert payback_text(report) == payback_text(expected)
    assert savings(study) == savings(copy)
    assert hypervolume_history(study) == hypervolume_history(copy)
    assert note_markdown(study) == note_markdown(copy)
    for listed in (pareto_front, pareto_trials, dashboard_only_best):
        assert [t.number for t in listed(study)] == [t.number for t in listed(copy)]
    # What a result names is the full trial, parameters included.
    assert [t.params for t in pareto_trials(study)] == [t.params for t in pareto_trials(copy)]
    assert {t.number for t in pareto_trials(study)} == {t.number for t in study.best_trials}


def test_the_report_reads_no_trials_through_optuna(sqlite_url, monkeypatch):
    study = new_study(sqlite_url)
    add_trials(study, np.random.default_rng(0), 30)
    calls = []
    original = optuna.Study.get_trials

    def counted(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "get_trials", counted)
    note_markdown(study)
    pareto_trials(study)
    hypervolume_history(study)
    assert calls == []


def test_the_dashboard_note_reads_only_new_and_unfinished_trials(sqlite_url, monkeypatch):
    """Two study sizes, the same number of trials read per update: the note's cost per trial
    does not grow with the study."""
    read_counts = []
    original = study_trials._optuna_compat.read_trials_without_params

    def counted(*args, **kwargs):
        found = original(*args, **kwargs)
        read_counts.append(len(found))
        return found

    from optuna_dashboard import get_note

    monkeypatch.setattr(study_trials._optuna_compat, "read_trials_without_params", counted)
    study = new_study(sqlite_url)
    rng = np.random.default_rng(1)
    note = ReportNote()
    for size in (20, 200):
        add_trials(study, rng, size - len(study.get_trials(deepcopy=False)), state=TrialState.COMPLETE)
        running = study.ask()
        add_trials(study, rng, 1, state=TrialState.COMPLETE)
        note(study, study.get_trials(deepcopy=False)[-1])  # the first update reads the study
        read_counts.clear()
        study.tell(running, [0.5, 1e-4, 10.0, 1e-6])
        add_trials(study, rng, 1, state=TrialState.COMPLETE)
        note(study, study.get_trials(deepcopy=False)[-1])
        assert read_counts == [2]  # the trial that was running, and the new one
        usable = len(StudyTrials(study).usable)
        assert f"## Highlighted models ({usable} completed, feasible trials)" in get_note(study)
