"""Wiring: config + storage + sampler + data + meter -> a running Optuna study."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from optuna_energy.config import SAMPLERS, ConfigError, EvolutionSection, StudyConfig, load_config
from optuna_energy.data import DeviceData, load_dataset
from optuna_energy.energy import select_meter
from optuna_energy.measure import measure_idle_watts
from optuna_energy.objective import FAILURE_REASON, Objective
from optuna_energy.progress import TrialProgress
from optuna_energy.samplers import EvolutionSampler
from optuna_energy.storage import open_storage
from optuna_energy.train import TrialFailure


def create_sampler(name: str, *, seed: int | None = None,
                   evolution: EvolutionSection | None = None) -> optuna.samplers.BaseSampler:
    """A sampler by its config name: ``tpe`` (Optuna's multi-objective default), ``nsga2``,
    ``random``, or ``evolution`` (``EvolutionSampler``, configured by ``evolution``)."""
    if name == "evolution":
        return EvolutionSampler(**dataclasses.asdict(evolution or EvolutionSection()), seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device is 'cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'")
    return torch.device(name)


def counted_trials(study: optuna.Study) -> int:
    """Trials that use up the budget: finished ones, deliberate failures, and those running.

    A trial failed by the heartbeat (its worker died) does not count: it is retried.
    """
    count = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
            count += 1
        elif trial.state == TrialState.FAIL and FAILURE_REASON in trial.user_attrs:
            count += 1
    return count


class _Budget:
    """Stops this process once the study as a whole has used its trial budget."""

    def __init__(self, n_trials: int) -> None:
        self.n_trials = n_trials

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if counted_trials(study) >= self.n_trials:
            study.stop()


def create_or_load_study(config: StudyConfig, *, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Create the configured study, or load it when it exists with the same objectives."""
    storage = open_storage(config.study.storage)
    sampler = sampler or create_sampler(config.study.sampler, seed=config.study.seed,
                                        evolution=config.evolution)
    objectives = list(config.study.objectives)
    study = optuna.create_study(storage=storage, study_name=config.study.name, sampler=sampler,
                                directions=config.directions, load_if_exists=True)
    stored = study.metric_names
    if stored is not None and stored != objectives:
        raise ConfigError(
            f"study {config.study.name!r} already exists with objectives {stored}; "
            f"the config asks for {objectives} (use another study name)"
        )
    if stored is None:
        with warnings.catch_warnings():  # metric names are what optuna-dashboard shows
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(objectives)
    return study


def run_study(config: str | Path | StudyConfig | dict[str, Any] | None = None, *,
              storage: str | None = None, study_name: str | None = None,
              n_trials: int | None = None, timeout: float | None = None,
              device: str | None = None, seed: int | None = None, sampler: str | None = None,
              objectives: list[str] | tuple[str, ...] | None = None,
              show_progress_bar: bool = True) -> optuna.Study:
    """Run (or resume) an energy-aware architecture search and return the Optuna study.

    ``n_trials`` is the study's total budget: a resumed or shared study runs only the trials it
    still lacks. Keyword arguments override the config's ``[study]`` section.

    Args:
        config: A TOML path, a mapping, a ``StudyConfig``, or ``None`` for the embedded default
            (``load_digits`` into ``sqlite:///optuna_energy.db``).
        storage: An RDB URL, e.g. ``sqlite:///search.db`` or ``postgresql://user@host/db``.
        study_name: The study to create or resume.
        n_trials: Total trials the study should have.
        timeout: Seconds after which this call stops starting trials.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        seed: Seeds the sampler and each trial's weights and batches.
        sampler: ``tpe``, ``nsga2``, ``random`` or ``evolution``.
        objectives: At least two of ``accuracy``, ``inference_time``, ``params``, ``energy``.
        show_progress_bar: Show a progress bar over the budget.

    Example:
        >>> import optuna_energy
        >>> study = optuna_energy.run_study("studies/digits.toml", n_trials=20)
        >>> [t.number for t in study.best_trials]
    """
    config = load_config(config).with_study(
        storage=storage, name=study_name, n_trials=n_trials, timeout=timeout, device=device,
        seed=seed, sampler=sampler, objectives=tuple(objectives) if objectives else None)
    study = create_or_load_study(config)
    remaining = config.study.n_trials - counted_trials(study)
    if remaining <= 0:
        return study
    torch_device = resolve_device(config.study.device)
    data = DeviceData(load_dataset(config.dataset, seed=config.study.seed or 0), torch_device)
    meter = select_meter(str(torch_device))
    try:
        idle = measure_idle_watts(meter, config.measure.idle_seconds) if meter else 0.0
        objective = Objective(config, data, meter=meter, idle_watts=idle)
        with TrialProgress(study, total=config.study.n_trials, enabled=show_progress_bar) as progress:
            study.optimize(objective, n_trials=remaining, timeout=config.study.timeout,
                           callbacks=[_Budget(config.study.n_trials), progress],
                           catch=(TrialFailure,))
    finally:
        if meter is not None:
            meter.close()
    return study
