"""``HandoverSampler`` and the default ``sampler = "auto"``: TPE for a study's first trials, the
evolution sampler after, which starts from what TPE found and lets the study skip Optuna's
cache of every trial."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.storages._cached_storage import _CachedStorage
from optuna.testing.pytest_samplers import BasicSamplerTestCase, MultiObjectiveSamplerTestCase

from optuna_energy.config import load_config
from optuna_energy.samplers import (
    HANDOVER_TRIALS,
    PARENTS_ATTR,
    EvolutionSampler,
    HandoverSampler,
    reads_whole_history,
)
from optuna_energy.study import create_or_load_study, create_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _tpe_then_evolution(handover_trials: int, *, population_size: int = 2) -> HandoverSampler:
    return HandoverSampler(TPESampler(seed=0), EvolutionSampler(seed=0, population_size=population_size),
                           handover_trials=handover_trials)


# Optuna's generic suite on both sides of a handover after three trials (its studies have 3 to 20).
class TestOptunaSamplerSuite(BasicSamplerTestCase, MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: _tpe_then_evolution(3)


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    x, y = trial.suggest_float("x", 0, 1), trial.suggest_int("y", 0, 10)
    return x, abs(y - 5) + (1 - x)


def test_the_first_sampler_proposes_until_the_handover_then_evolution_breeds_from_its_trials() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=_tpe_then_evolution(6))
    study.optimize(_objective, n_trials=12)
    before, after = study.trials[:6], study.trials[6:]
    assert all(PARENTS_ATTR not in t.user_attrs for t in before)  # TPE's: no parents recorded
    # The evolution sampler breeds from the first trial it proposes: its population is TPE's trials.
    assert all(t.user_attrs[PARENTS_ATTR] for t in after)
    assert set(after[0].user_attrs[PARENTS_ATTR]) <= {t.number for t in before}


def test_the_default_sampler_is_tpe_then_evolution_after_a_thousand_trials() -> None:
    config = load_config({})
    assert config.study.sampler == "auto"
    sampler = create_sampler("auto", seed=0, evolution=config.evolution)
    assert isinstance(sampler, HandoverSampler) and sampler.handover_trials == HANDOVER_TRIALS == 1000
    assert isinstance(sampler.sampler_for(999), TPESampler)
    evolution = sampler.sampler_for(1000)
    assert isinstance(evolution, EvolutionSampler) and evolution.settings.population_size == 16
    assert reads_whole_history(sampler, next_trial=999) and not reads_whole_history(sampler, next_trial=1000)
    assert not reads_whole_history(RandomSampler(), next_trial=0)


@pytest.mark.parametrize("existing, cached", [(2, True), (3, False)], ids=["before", "after"])
def test_a_worker_joining_after_the_handover_reads_the_database_not_a_copy_of_every_trial(
        tmp_path: Path, existing: int, cached: bool) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    config = load_config({"study": {"name": "joined", "storage": url, "objectives": ["accuracy", "params"]}})
    first = create_or_load_study(config, sampler=_tpe_then_evolution(3))
    first.optimize(_objective, n_trials=existing)
    joined = create_or_load_study(config, sampler=_tpe_then_evolution(3))
    assert isinstance(joined._storage, _CachedStorage) is cached


def test_a_worker_that_crosses_the_handover_drops_its_cache(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", sampler=_tpe_then_evolution(3),
                                directions=["minimize", "minimize"])
    study.optimize(_objective, n_trials=3)
    assert isinstance(study._storage, _CachedStorage)  # TPE reads every trial at each ask
    study.optimize(_objective, n_trials=2)
    assert not isinstance(study._storage, _CachedStorage)
    assert len(study.trials) == 5 and all(t.user_attrs[PARENTS_ATTR] for t in study.trials[3:])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_a_handover_that_is_not_a_positive_count_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=rf"^handover_trials must be a positive integer, got {bad!r}$"):
        HandoverSampler(RandomSampler(), RandomSampler(), handover_trials=bad)  # type: ignore[arg-type]
