"""Wiring: config + storage + sampler + data + meter -> a running Optuna study."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import torch

from optuna_energy.config import (
    SAMPLERS,
    ConfigError,
    EvolutionSection,
    StudyConfig,
    load_config,
)
from optuna_energy.data import ArraySplits, DeviceData, load_dataset
from optuna_energy.host.devices import resolve_device
from optuna_energy.measuring.measure import measure_idle_watts, open_meter, resolve_clock
from optuna_energy.reading.dashboard import study_callbacks, trained_model_hook
from optuna_energy.run.loop import Callback, optimize_within_budget
from optuna_energy.run.progress import TrialProgress, quiet_optuna
from optuna_energy.samplers import SeededAtFirstTrial, reads_whole_history_on_joining
from optuna_energy.samplers._optuna_compat import read_through, trial_by_number
from optuna_energy.store.ledger import StudyLedger
from optuna_energy.store.record import (
    TrialRecord,
    changed_trial_settings,
    config_record,
    store_carbon_intensity,
    store_config,
    stored_config,
)
from optuna_energy.store.storage import (
    StorageError,
    describe_error,
    mask_url,
    open_storage,
    storage_fault,
)
from optuna_energy.store.weights import weights_keeper
from optuna_energy.trial.early_stopping import claimed_budget
from optuna_energy.trial.objective import Objective, TrainedModelHook
from optuna_energy.trial.train import TrialFailure


def create_sampler(name: str, *, seed: int | None = None,
                   evolution: EvolutionSection | None = None) -> optuna.samplers.BaseSampler:
    """A sampler by its config name (:data:`optuna_energy.config.SAMPLERS`): ``auto`` (the
    default: Optuna's TPE for the first 1,000 trials, then ``EvolutionSampler``;
    :class:`~optuna_energy.samplers.HandoverSampler`), ``tpe`` (Optuna's multi-objective
    default), ``evolution`` (``EvolutionSampler``, configured by ``evolution``), ``nsga2``
    (generations of ``evolution.population_size``), ``random`` or ``gp`` (Optuna's
    ``GPSampler``). Every one but ``random`` ranks by the trials' constraints.

    Raises:
        ConfigError: ``name`` is none of them; the message lists them.
    """
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")
    return SAMPLERS[name](seed, evolution or EvolutionSection())


def create_or_load_study(config: StudyConfig, *, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Create the configured study, or load it when it exists with the same objectives.

    Without ``sampler``, the configured one is seeded for this process at its first trial
    (:class:`~optuna_energy.samplers.SeededAtFirstTrial`): two processes never share a stream.

    A worker joining a large study reads its saved ledger and the trials since, not the whole
    study: with the ``evolution`` or ``random`` sampler, which never read the whole history, the
    study reads its database directly rather than through Optuna's cache of every trial.
    """
    storage = open_storage(config.study.storage, config.storage)
    seed = config.study.seed
    if sampler is None:
        sampler = create_sampler(config.study.sampler, evolution=config.evolution) if seed is None else \
            SeededAtFirstTrial(lambda seed: create_sampler(config.study.sampler, seed=seed,
                                                           evolution=config.evolution), seed=seed)
    objectives = list(config.study.objectives)
    try:
        study = optuna.create_study(storage=storage, study_name=config.study.name, sampler=sampler,
                                    directions=config.directions,  # type: ignore[arg-type]
                                    load_if_exists=True)
    except optuna.exceptions.StorageInternalError as error:  # its text guesses "exceeding max length"
        raise storage_fault(error) or StorageError(
            f"cannot write to storage {mask_url(config.study.storage)}: "
            f"{describe_error(error.__cause__ or error, config.study.storage)}") from None
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
    built = sampler.sampler if isinstance(sampler, SeededAtFirstTrial) else sampler
    if not reads_whole_history_on_joining(built, study):
        read_through(study)
    previous = stored_config(study)
    if previous is not None and trial_by_number(study, 0) is not None:
        changed = changed_trial_settings(previous, config_record(config))
        if changed:
            raise ConfigError(
                f"study {study.study_name!r} was run with {'; '.join(changed)}; a resumed study "
                "keeps the settings that define its trials (it may change n_trials, timeout, "
                "sampler, device, [storage] and [evolution]): restore them or use another study name")
    else:  # export retrains with it; a first run that failed before any trial is not binding
        store_config(study, config)
    if config.carbon.intensity_g_per_kwh is not None:  # the report reads it from the study alone
        store_carbon_intensity(study, config.carbon.intensity_g_per_kwh)
    return study


def _timed_on(study: optuna.Study) -> str | None:
    """The clock that timed the study's trials (its first trial's: a study keeps one), ``None``
    before any trial measured; trials stored before the clock was recorded ran on the wall clock.
    A device, not the config, decides what ``auto`` means, so this is checked where the device
    is known rather than with the stored config."""
    first = trial_by_number(study, 0)
    if first is None:
        return None
    measured = TrialRecord.of(first)
    if measured.inference_clock is not None:
        return measured.inference_clock
    return "wall" if measured.inference_time_s is not None else None


def load_device_data(config: StudyConfig, device: torch.device,
                     dataset: ArraySplits | None = None) -> DeviceData:
    """The configured dataset (or ``dataset``, when given) on ``device``, with the training switches."""
    splits = dataset if dataset is not None else load_dataset(config.dataset, seed=config.study.seed or 0)
    training = config.training
    return DeviceData(splits, device, channels_last=training.channels_last, augment=training.augment,
                      crop_padding=training.crop_padding)


def run_study(config: str | Path | StudyConfig | dict[str, Any] | None = None, *,
              storage: str | None = None, study_name: str | None = None,
              n_trials: int | None = None, timeout: float | None = None,
              device: str | None = None, seed: int | None = None, sampler: str | None = None,
              objectives: list[str] | tuple[str, ...] | None = None,
              dataset: ArraySplits | None = None, show_progress_bar: bool = True) -> optuna.Study:
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
        sampler: ``evolution``, ``tpe``, ``nsga2``, ``random`` or ``gp``.
        objectives: At least two of ``accuracy``, ``inference_time``, ``params``, ``energy``.
        dataset: Your own data in place of the config's ``[dataset]``, from
            ``optuna_energy.data.from_tensors`` or ``from_datasets``.
        show_progress_bar: Show a progress bar over the budget. While it shows, Optuna's INFO log
            lines are off (its verbosity goes from INFO to WARNING for the call; any other
            verbosity set with ``optuna.logging.set_verbosity`` is kept), as in the CLI.

    Example:
        >>> import optuna_energy
        >>> study = optuna_energy.run_study("studies/digits.toml", n_trials=20)
        >>> [t.number for t in study.best_trials]
    """
    if isinstance(objectives, str):
        raise ConfigError(f"objectives must be a list of names such as ['accuracy', 'energy'], "
                          f"got the string {objectives!r}")
    config = load_config(config).with_study(
        storage=storage, name=study_name, n_trials=n_trials, timeout=timeout, device=device,
        seed=seed, sampler=sampler, objectives=None if objectives is None else tuple(objectives))
    with quiet_optuna(show_progress_bar):  # the bar says it; Optuna's INFO lines would repeat it
        study = create_or_load_study(config)
        optimize_study(study, config, dataset=dataset, show_progress_bar=show_progress_bar)
    return study


def _trained_model_hooks(study: optuna.Study, config: StudyConfig) -> TrainedModelHook | None:
    """What happens to each trained model before its trial completes: its weights kept for
    export (``store.weights``), its drawings uploaded for the dashboard (``artifact_dir``)."""
    hooks = [hook for hook in (weights_keeper(study, config.study), trained_model_hook(config))
             if hook is not None]
    if not hooks:
        return None

    def run_hooks(trial: optuna.Trial, model: torch.nn.Module) -> None:
        for hook in hooks:
            hook(trial, model)

    return run_hooks


def optimize_study(study: optuna.Study, config: StudyConfig, *, dataset: ArraySplits | None = None,
                   show_progress_bar: bool = False, callbacks: Sequence[Callback] = ()) -> None:
    """Run trials of a created or loaded study until it has ``config.study.n_trials``.

    Safe to call from many processes on one study: the budget is the study's, and exact.
    """
    ledger = StudyLedger.of(study)
    if ledger.tally().finished >= config.study.n_trials:
        return
    torch_device = resolve_device(config.study.device)
    try:
        clock = resolve_clock(config.measure.clock, torch_device)  # before the first trial, not in each
    except ValueError as error:
        raise ConfigError(f"[measure] {error}") from None
    timed = _timed_on(study)
    if timed is not None and timed != clock:
        raise ConfigError(f"study {study.study_name!r} timed its trials on the {timed} clock and this run "
                          f"would time them on the {clock} clock ({torch_device}); a study keeps one clock: "
                          f"set [measure] clock = {timed!r} where {torch_device.type} allows it, or use "
                          "another study name")
    data = load_device_data(config, torch_device, dataset)
    meter = open_meter(torch_device, settings=config.measure.meters.values(), meter=config.measure.meter)
    try:
        idle = measure_idle_watts(meter, config.measure.idle_seconds) if meter.counts_hardware else 0.0
        with TrialProgress(study, total=config.study.n_trials, enabled=show_progress_bar,
                           training=claimed_budget(config), ledger=ledger) as progress:
            objective = Objective(config, data, meter=meter, idle_watts=idle,
                                  on_trained=_trained_model_hooks(study, config), on_stage=progress.stage,
                                  ledger=ledger)
            optimize_within_budget(study, objective, n_trials=config.study.n_trials,
                                   timeout=config.study.timeout,
                                   callbacks=[progress, *callbacks,
                                              *study_callbacks(config)],
                                   catch=(TrialFailure,),
                                   reconnect_timeout=config.storage.reconnect_timeout,
                                   training=objective.training_budget, ledger=ledger)
    finally:
        meter.close()
