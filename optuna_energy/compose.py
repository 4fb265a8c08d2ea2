"""The pieces for your own objective: the search space as suggest functions, a study named for
the report, costs first for any model (``measure_costs_first``), and one call that records a
measurement where report, dashboard and export read it.

The built-in objective (``optuna_energy.trial.objective``) is made of these same pieces, so a trial of
your objective stores what one of ``run_study`` stores: the architecture and its costs when it
comes from the 32-slot space, the measured costs under the registry's field names
(``optuna_energy.metrics``), the training energy the payback line adds up.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import optuna
import torch
from torch import nn

from optuna_energy.carbon import check_intensity
from optuna_energy.config import TrainingSection
from optuna_energy.measuring.monitor import EnergyMonitor, InferenceResult, WindowResult
from optuna_energy.metrics import DEFAULT_OBJECTIVES, METRICS, check_limits, limit_violations
from optuna_energy.model.arch import ArchProfile, ArchSpec, Shape, profile, summarize
from optuna_energy.model.space import (
    SampledArchitecture,
    SpaceSection,
    TrainingParams,
    sample_architecture,
    sample_training,
)
from optuna_energy.store import record

__all__ = ["create_study", "measure_costs_first", "record_measurement", "suggest_architecture",
           "suggest_training"]


def _check_shape(input_shape: Any, n_classes: Any) -> Shape:
    if (isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence)
            or len(input_shape) != 3
            or not all(isinstance(size, int) and not isinstance(size, bool) and size > 0
                       for size in input_shape)):
        raise ValueError(f"input_shape must be one input's (channels, height, width) as positive "
                         f"integers, got {input_shape!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    return tuple(input_shape)


def record_architecture(trial: optuna.Trial, sampled: SampledArchitecture, input_shape: Shape,
                        n_classes: int) -> ArchProfile:
    """Store a sampled architecture and its static costs on the trial; the costs."""
    costs = profile(sampled.spec, input_shape, n_classes)
    record.write(trial, architecture=sampled.spec, architecture_summary=summarize(sampled.spec),
                 skipped_slots=sampled.skipped_slots, params=costs.params, macs=costs.macs)
    return costs


def suggest_architecture(trial: optuna.Trial, input_shape: Sequence[int], n_classes: int, *,
                         space: SpaceSection = SpaceSection()) -> ArchSpec:
    """Sample an architecture of the 32-slot space, as the built-in objective does.

    Every slot's on/off, type and that type's hyperparameters are suggested on ``trial``
    (parameters ``sNN_...``, which ``EvolutionSampler`` evolves slot by slot), with kernel and
    pooling ranges narrowed to the feature map so every architecture computes. The trial stores
    ``architecture``, ``architecture_summary``, ``skipped_slots``, ``params`` and ``macs``, as
    built-in trials do, so the report draws its topology and ``build_model`` rebuilds it from
    the database alone.

    Args:
        trial: The trial of your objective.
        input_shape: One input's ``(channels, height, width)``, e.g. ``(1, 8, 8)`` for digits.
        n_classes: Classes of the final head.
        space: The ranges (the config's ``[space]``); the paper's by default.

    Returns:
        The spec: ``optuna_energy.build_model(spec, input_shape, n_classes)`` builds the model.

    Raises:
        ValueError: A bad ``input_shape`` or ``n_classes``, naming it.

    Example:
        >>> def objective(trial):
        ...     spec = optuna_energy.suggest_architecture(trial, (1, 8, 8), 10)
        ...     model = optuna_energy.build_model(spec, (1, 8, 8), 10)
        ...     ...
    """
    shape = _check_shape(input_shape, n_classes)
    if not isinstance(space, SpaceSection):
        raise ValueError(f"space must be an optuna_energy.SpaceSection, got {type(space).__name__}")
    sampled = sample_architecture(trial, space, shape)
    record_architecture(trial, sampled, shape, n_classes)
    return sampled.spec


def suggest_training(trial: optuna.Trial, *, training: TrainingSection = TrainingSection()) -> TrainingParams:
    """Sample the training hyperparameters, as the built-in objective does.

    Suggests ``train_lr`` (log), ``train_optimizer``, ``train_batch_size`` and
    ``train_weight_decay`` (log) from ``training``'s ranges and stores them as the trial's
    ``training`` record.

    Args:
        trial: The trial of your objective.
        training: The ranges (the config's ``[training]``); the defaults by default.

    Returns:
        ``learning_rate``, ``optimizer`` (``adam``, ``adamw`` or ``sgd``), ``batch_size`` and
        ``weight_decay``.

    Raises:
        ValueError: ``training`` is not a ``TrainingSection``.

    Example:
        >>> params = optuna_energy.suggest_training(trial)
        >>> optimizer = torch.optim.AdamW(model.parameters(), lr=params.learning_rate)
    """
    if not isinstance(training, TrainingSection):
        raise ValueError(f"training must be an optuna_energy.TrainingSection, got {type(training).__name__}")
    params = sample_training(trial, training)
    record.write(trial, training=dataclasses.asdict(params))
    return params


def create_study(*, objectives: Sequence[str] = DEFAULT_OBJECTIVES,
                 storage: str | optuna.storages.BaseStorage | None = None,
                 study_name: str | None = None, sampler: optuna.samplers.BaseSampler | None = None,
                 load_if_exists: bool = False,
                 carbon_intensity_g_per_kwh: float | None = None) -> optuna.Study:
    """``optuna.create_study`` with the directions and metric names of registry objectives.

    ``report``, ``dashboard`` and ``export`` read a study's objectives by their names, so a study
    for :func:`record_measurement` needs them: this sets both from the names.

    Args:
        objectives: Two or more of ``accuracy``, ``inference_time``, ``params``, ``energy``,
            ``memory``, in the order your objective returns them.
        storage, study_name, sampler, load_if_exists: As for ``optuna.create_study``.
        carbon_intensity_g_per_kwh: Grams of CO2e your electricity emits per kWh: the report and
            the savings line show the training energy in grams of CO2e too (stored on the study;
            ``None`` keeps what it stored, joules only for a new one).

    Raises:
        ValueError: Unknown or repeated ``objectives``, or fewer than two; a stored study of that
            name with other objectives; an intensity that is not a number in
            ``(0, optuna_energy.carbon.MAX_INTENSITY_G_PER_KWH]``.

    Example:
        >>> study = optuna_energy.create_study(objectives=["accuracy", "energy"],
        ...                                    storage="sqlite:///mine.db", study_name="mine")
    """
    names = [objectives] if isinstance(objectives, str) else list(objectives)
    unknown = [name for name in names if name not in METRICS]
    if unknown or len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"objectives must be two or more distinct names from: {', '.join(METRICS)}; "
                         f"got {names}")
    intensity = None if carbon_intensity_g_per_kwh is None else check_intensity(carbon_intensity_g_per_kwh)
    study = optuna.create_study(storage=storage, study_name=study_name, sampler=sampler,
                                directions=[METRICS[name].direction for name in names],  # type: ignore[misc]
                                load_if_exists=load_if_exists)
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
    elif list(study.metric_names) != names:
        raise ValueError(f"objectives are {names}, but study {study.study_name!r} is stored with "
                         f"{list(study.metric_names)}: use another study_name")
    if intensity is not None:
        record.store_carbon_intensity(study, intensity)
    return study


def study_objectives(study: optuna.Study) -> list[str]:
    """The study's metric names, checked against the registry.

    Raises:
        ValueError: The study has no metric names, or one is not a registry objective.
    """
    names = study.metric_names
    if not names:
        raise ValueError("the trial's study has no metric names, so the report cannot read it: make "
                         "it with optuna_energy.create_study(objectives=[...]) or call "
                         f"study.set_metric_names([...]) with names from: {', '.join(METRICS)}")
    for name, direction in zip(names, study.directions):
        if name not in METRICS or METRICS[name].direction != direction.name.lower():
            raise ValueError(f"the study's objective {name!r} ({direction.name.lower()}) is not one "
                             f"of the registry's: {', '.join(f'{n} ({m.direction})' for n, m in METRICS.items())}")
    return list(names)


def record_measurement(trial: optuna.Trial, inference: InferenceResult | None = None, *,
                       accuracy: float | None = None,
                       training: WindowResult | Sequence[WindowResult] | None = None,
                       epochs: int | None = None, constraints: Mapping[str, float] | None = None,
                       summary: str | None = None) -> tuple[float, ...]:
    """Write what your objective measured onto ``trial``, where report, dashboard and export read it.

    The inference measurement becomes the trial's ``inference_time_s``, ``energy_per_inference_j``
    (with ``energy_source``, gross, net and the window), ``memory_bytes``, ``params`` and ``macs``
    (unless ``suggest_architecture`` stored the spec's) and the field of every other registered
    metric (``optuna_energy.metrics.register``); the training window its
    ``train_energy_j``, which the report's payback line adds up. Return the result: the values
    of the study's objectives, in order.

    Args:
        trial: The trial of your objective, in a study with registry metric names
            (:func:`create_study`).
        inference: From ``EnergyMonitor.measure_inference``.
        accuracy: Fraction correct on your evaluation data (0 to 1).
        training: From ``EnergyMonitor.end_window`` around the training, or a list of such
            windows (one per epoch), added up: the search's own cost.
        epochs: Epochs trained, for the report's training summary.
        constraints: Constraint name -> violation (> 0 violated), as Optuna's constraint API
            takes them: a violating trial stays off the fronts and the report. Added to those
            :func:`measure_costs_first` set.
        summary: A one-line description of the model for tables (the spec's topology by default).

    Returns:
        The objective values, in the order of ``trial.study.metric_names``.

    Raises:
        ValueError: The study has no registry metric names, an objective has no value (naming
            the argument that gives it), or a bad argument, naming it.

    Example:
        >>> def objective(trial):
        ...     ...
        ...     measured = monitor.measure_inference(model, test_images)
        ...     return optuna_energy.record_measurement(trial, measured, accuracy=accuracy)
    """
    names = study_objectives(trial.study)
    if inference is not None and not isinstance(inference, InferenceResult):
        raise ValueError(f"inference must be an InferenceResult from EnergyMonitor.measure_inference, "
                         f"got {type(inference).__name__}")
    windows = [training] if isinstance(training, WindowResult) else list(training or ())
    if not all(isinstance(window, WindowResult) for window in windows):
        raise ValueError(f"training must be a WindowResult from EnergyMonitor.end_window or a list of "
                         f"them, got {type(training).__name__}")
    if accuracy is not None and not (isinstance(accuracy, (int, float)) and 0 <= accuracy <= 1):
        raise ValueError(f"accuracy must be a fraction between 0 and 1, got {accuracy!r}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0):
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")
    stored = record.TrialRecord.of(trial)
    fields: dict[str, Any] = {} if inference is None else _inference_fields(inference, stored)
    if windows:
        seconds = sum(window.seconds for window in windows)
        fields |= {"train_energy_j": sum(window.joules for window in windows),
                   "train_window_s": seconds, "train_seconds": seconds}
        fields.setdefault("energy_source", windows[0].source)
    if epochs is not None:
        fields["epochs_trained"] = epochs
    if accuracy is not None:
        fields["accuracy"] = float(accuracy)
    if summary is not None:
        fields["architecture_summary"] = summary
    values = []
    for name in names:
        field = METRICS[name].field
        value = fields.get(field, stored.get(field))
        if value is None or not math.isfinite(float(value)):
            given = "inference" if name != "accuracy" else "accuracy"
            raise ValueError(f"objective {name!r} has no value ({field}): pass {given}=")
        values.append(float(value))
    if constraints is not None:
        fields |= _constrain(trial, constraints, before=stored.constraints)
    record.write(trial, **fields)
    return tuple(values)


def _inference_fields(inference: InferenceResult, stored: record.TrialRecord) -> dict[str, Any]:
    """The record fields of an inference measurement (the spec's counts kept where stored)."""
    fields = inference.fields | {"device": inference.device}
    if stored.params is None:  # else keep the counts suggest_architecture took from the spec
        fields["macs"] = inference.macs
    else:
        fields.pop("params", None)
    return fields


def _constrain(trial: optuna.Trial, constraints: Mapping[str, float], *,
               before: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Set Optuna's constraints; the record fields that mirror them, with those set ``before``,
    for optuna-dashboard."""
    given = {str(key): float(value) for key, value in constraints.items()}
    for key, violation in given.items():
        trial.set_constraint(key, violation)
    violations = {**(before or {}), **given}
    return {"constraints": violations, "feasible": all(v <= 0 for v in violations.values())}


def measure_costs_first(trial: optuna.Trial, model: nn.Module, inputs: torch.Tensor | Iterable[Any], *,
                        monitor: EnergyMonitor, limits: Mapping[str, float | None] | None = None,
                        batch_size: int | None = None, warmup_batches: int = 2,
                        min_window_seconds: float = 1.0, energy: str = "net") -> InferenceResult:
    """Measure an untrained model's costs, record them, and prune it if it breaks a limit.

    Costs first: inference time, energy per input, parameters, memory and every registered cost
    do not depend on the weights' values, so they are measured before training (the built-in
    objective's order, ``EnergyMonitor.measure_inference``'s protocol), a model over a limit is
    never trained, and :class:`~optuna_energy.EarlyStopper` ranks the trial by exact costs. The
    measurement is recorded as :func:`record_measurement` records it, so the objective ends with
    ``record_measurement(trial, accuracy=..., training=..., epochs=...)``.

    Args:
        trial: The trial of your objective, in a study with registry metric names.
        model: The untrained model, on the monitor's device.
        inputs: Its inputs, as ``EnergyMonitor.measure_inference`` takes them.
        monitor: The process's ``EnergyMonitor``.
        limits: Upper limits by ``[constraints]`` key: ``max_inference_time`` (s), ``max_params``,
            ``max_energy`` (J per input), ``max_memory`` (bytes) and those of registered metrics;
            each becomes an Optuna constraint of the trial.
        batch_size, warmup_batches, min_window_seconds, energy: As for ``measure_inference``.

    Returns:
        The measurement.

    Raises:
        optuna.TrialPruned: The model is over a limit; its ``stop_reason`` names the limits.
        ValueError: A bad argument or an unknown limit, naming it.

    Example:
        >>> model = build(trial)
        >>> optuna_energy.measure_costs_first(trial, model, test_x, monitor=monitor,
        ...                                   limits={"max_params": 20_000})
    """
    study_objectives(trial.study)
    check_limits(limits or {}, costs_only=True)  # before the measurement, which takes a while
    inference = monitor.measure_inference(model, inputs, batch_size=batch_size,
                                          warmup_batches=warmup_batches,
                                          min_window_seconds=min_window_seconds, energy=energy)
    stored = record.TrialRecord.of(trial)
    fields = _inference_fields(inference, stored)
    measured = {**fields, "params": stored.params if stored.params is not None else inference.params}
    violations = limit_violations(measured, limits or {})
    record.write(trial, **fields, **(_constrain(trial, violations) if violations else {}))
    over = [str(METRICS[name].limit) for name, violation in violations.items() if violation > 0]
    if over:
        reason = f"over {', '.join(over)}"
        record.write(trial, stop_reason=reason, epochs_trained=0, train_energy_j=0.0)
        raise optuna.TrialPruned(reason)
    return inference
