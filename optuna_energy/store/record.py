"""The trial record and the study's stored config: the only code that writes and reads user
attributes.

Everything a later reader needs is stored on the trial, so that the database alone tells what
each trial was and how it was measured. Field names are the user attribute keys, so a study
written by an older version reads back as far as it has the fields, and optuna-dashboard shows
them as they are.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from optuna_energy.metrics import METRICS, metric


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """What optuna-energy stored on one trial; ``None`` where the trial has no such value."""

    # What the trial is: written before training, so a failed trial still shows it.
    architecture: list[dict[str, Any]] | None = None
    architecture_summary: str | None = None
    skipped_slots: list[int] | None = None
    params: int | None = None
    macs: int | None = None
    training: dict[str, Any] | None = None
    device: str | None = None
    eval_split: str | None = None
    eval_images: int | None = None
    chance_accuracy: float | None = None
    """Evaluation accuracy of always answering the most frequent class; with ``eval_images``,
    what the ``learned`` constraint is judged by (``optuna_energy.trial.stopping.ChanceLevel``)."""
    precision: str | None = None
    # What it measured (SI units).
    accuracy: float | None = None
    inference_time_s: float | None = None
    inference_clock: str | None = None
    """What ``inference_time_s`` counts: ``wall`` (seconds on the wall clock, the device
    synchronised) or ``cpu`` (CPU seconds of the measuring thread, torch on one intra-op thread);
    ``None`` in a study older than the choice, which measured on the wall clock
    (``optuna_energy.measuring.measure.CLOCKS``)."""
    energy_source: str | None = None
    energy_per_inference_j: float | None = None
    energy_gross_j: float | None = None
    energy_net_j: float | None = None
    energy_window_s: float | None = None
    energy_window_images: int | None = None
    inference_time_spread: float | None = None
    """How far the measuring windows' own inference times lie apart, relative to the stored one
    (``optuna_energy.measuring.statistic.relative_spread``)."""
    energy_spread: float | None = None
    """The same for the windows' joules per inference."""
    measure_windows: int | None = None
    """Measuring windows the costs were taken from (``[measure] windows``, plus
    ``remeasured_windows``)."""
    remeasured_windows: int | None = None
    """Windows measured again after training because the network would have entered the Pareto
    front only by a margin within its spread (``[measure] remeasure_windows``), pooled with the
    first ones into the stored costs; ``None``: not measured again."""
    measure_conditions: dict[str, Any] | None = None
    """What disturbed the machine while it measured: ``load_1min``, ``cpu_steal``,
    ``cpu_others``; on a GPU, per window, ``sm_clock_mhz``, ``temperature_c``,
    ``throttle_reasons`` (``optuna_energy.measuring.measure.InferenceMeasurement.conditions``)."""
    train_energy_j: float | None = None
    train_energy_basis: str | None = None
    """``apportioned`` when the trial trained on a GPU shared with other workers:
    ``train_energy_j`` is its share of ``train_window_j`` (``optuna_energy.host.gpu_share``);
    ``None``: it had the chip to itself and ``train_energy_j`` is what the meter counted."""
    train_window_j: float | None = None
    """On a shared GPU, what the meter counted over the trial's training windows (all trainers)."""
    train_window_s: float | None = None
    train_seconds: float | None = None
    measure_seconds: float | None = None
    idle_watts: float | None = None
    meter: dict[str, Any] | None = None
    memory_bytes: float | None = None
    # Training in rungs (optuna_energy.trial.early_stopping) and the training budget it spends.
    rung_accuracies: dict[str, float] | None = None
    """Epochs (as text: user attributes are JSON) -> evaluation accuracy after them, per rung."""
    epochs_trained: int | None = None
    epochs_claimed: int | None = None
    """Epochs of the study's epoch budget this trial may spend (``optuna_energy.store.training_budget``)."""
    stop_reason: str | None = None
    """Why the trial was not trained fully: over a limit, at chance, outranked, budget used."""
    # How it ended.
    constraints: dict[str, float] | None = None
    """Constraint key -> violation (> 0 violated), mirroring Optuna's ``set_constraint``."""
    feasible: bool | None = None
    failure_reason: str | None = None
    """Why the objective failed the trial on purpose (diverged, out of memory...)."""
    worker: str | None = None
    """``host:pid`` of the process that ran it."""
    over_budget: bool | None = None
    """Created after the study's budget was used; never ran and never counts."""
    plugin_metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Fields of the metrics registered from outside (``optuna_energy.metrics.register``), each
    stored as its own user attribute: field -> value."""

    @property
    def rung_reached(self) -> int | None:
        """The last rung (in epochs) the trial was evaluated at, ``None`` if none."""
        return max(map(int, self.rung_accuracies)) if self.rung_accuracies else None

    @classmethod
    def of(cls, trial: FrozenTrial | optuna.Trial) -> TrialRecord:
        """The record stored on a finished or a running trial."""
        attrs = trial.user_attrs
        plugins = {field: attrs[field] for field in _plugin_fields() if field in attrs}
        return cls(**{name: attrs[name] for name in _FIELDS if name in attrs}, plugin_metrics=plugins)

    def get(self, field: str) -> Any:
        """A record field by name, a plug-in metric's included; ``None`` where not recorded."""
        return getattr(self, field) if field in _FIELDS else self.plugin_metrics.get(field)

    def value(self, name: str) -> float:
        """A metric's recorded value, NaN when the trial did not record it."""
        value = self.get(metric(name).field)
        return math.nan if value is None else float(value)

    def value_with_spread(self, name: str) -> tuple[float, float]:
        """A metric's recorded value and its relative spread: how far the measuring windows
        disagreed, as a fraction of the value (two trials whose values differ by less cannot be
        told apart by the measurement).

        The spread is 0 for a metric measured without repeats because it is exact (``params``,
        ``memory``, ``accuracy`` on the fixed evaluation set), NaN where the trial recorded no
        spread (one window, or a study older than the spreads) or no value.

        Example:
            >>> value, spread = TrialRecord.of(trial).value_with_spread("inference_time")
        """
        entry = metric(name)
        value = self.value(name)
        if entry.spread_field is None:
            return value, 0.0 if not math.isnan(value) else math.nan
        spread = self.get(entry.spread_field)
        return value, math.nan if spread is None else float(spread)


_FIELDS = frozenset(field.name for field in dataclasses.fields(TrialRecord)) - {"plugin_metrics"}


def _plugin_fields() -> set[str]:
    """The record fields (values and spreads) of registered metrics that the record does not
    name itself."""
    return {field for entry in METRICS.values() for field in (entry.field, entry.spread_field)
            if field} - _FIELDS


def write(trial: optuna.Trial, **fields: Any) -> None:
    """Store fields of the trial record (a registered metric's field among them) on a running trial.

    Raises:
        TypeError: A name that is not a field of :class:`TrialRecord` nor of a registered metric.
    """
    unknown = sorted(set(fields) - _FIELDS - _plugin_fields())
    if unknown:
        raise TypeError(f"not trial record fields: {', '.join(unknown)}")
    for name, value in fields.items():
        trial.set_user_attr(name, value)


SEARCH_ENERGY_ATTR = "search_energy:"
"""Prefix of the study user attributes holding each GPU's energy over ``launch`` runs, one per
``host/gpuN`` (one attribute each, so launches on different nodes never overwrite each other)."""


def add_search_energy(study: optuna.Study, gpu: str, *, joules: float, seconds: float,
                      per_gpu: int, source: str) -> None:
    """Add what a GPU's counter read over one ``launch`` to the study's total for that GPU.

    ``gpu`` names it (``host/gpuN``), ``per_gpu`` the workers that shared it, ``source`` the meter.
    Only the launcher on that node writes it, so adding to what was stored races with nothing.
    """
    key = SEARCH_ENERGY_ATTR + gpu
    before = study.user_attrs.get(key, {})
    study.set_user_attr(key, {"joules": before.get("joules", 0.0) + joules,
                              "seconds": before.get("seconds", 0.0) + seconds,
                              "launches": before.get("launches", 0) + 1,
                              "per_gpu": per_gpu, "source": source})


def search_energy(study: optuna.Study | optuna.study.StudySummary) -> dict[str, dict[str, Any]]:
    """Each GPU's recorded search energy (:func:`add_search_energy`), by ``host/gpuN``."""
    return {key.removeprefix(SEARCH_ENERGY_ATTR): value for key, value in study.user_attrs.items()
            if key.startswith(SEARCH_ENERGY_ATTR)}


CARBON_INTENSITY_ATTR = "carbon_intensity_g_per_kwh"
"""Study user attribute holding the grams of CO2e per kWh the report converts joules with: the
latest a run or ``create_study`` was given (the electricity is the user's to state)."""


def store_carbon_intensity(study: optuna.Study, intensity_g_per_kwh: float) -> None:
    """Record the carbon intensity the study's energy is reported at (written only when it changed)."""
    if study.user_attrs.get(CARBON_INTENSITY_ATTR) != intensity_g_per_kwh:
        study.set_user_attr(CARBON_INTENSITY_ATTR, intensity_g_per_kwh)


def carbon_intensity(study: optuna.Study | optuna.study.StudySummary) -> float | None:
    """The study's carbon intensity (:func:`store_carbon_intensity`), ``None`` if none was given."""
    return study.user_attrs.get(CARBON_INTENSITY_ATTR)
FULL_EPOCHS_ATTR = "full_epochs"
"""Study user attribute: the epochs of full training of a study run with your own objective and
an ``EarlyStopper`` (a built-in study's config says it), for the savings line."""


def store_full_epochs(study: optuna.Study, epochs: int) -> None:
    """Record the epochs of full training (:data:`FULL_EPOCHS_ATTR`) unless the study has them."""
    if study.user_attrs.get(FULL_EPOCHS_ATTR) != epochs:
        study.set_user_attr(FULL_EPOCHS_ATTR, epochs)


CONFIG_ATTR = "config"
"""Study user attribute holding the config (storage URL left out) that export retrains with."""


_RESUMABLE = {
    "study": {"name", "sampler", "n_trials", "timeout", "device", "artifact_dir", "keep_weights",
              "max_train_epochs", "max_train_energy", "max_train_co2e_g"},
    "dataset": {"root", "cache_dir", "download"},
    "training": {"max_memory_share"},  # a guard against running out of memory, not the trial
    "storage": None,  # None: the whole section
    "workers": None,
    "evolution": None,
    "carbon": None,  # how the energy is reported, and the budget's unit
    # What "auto" means depends on the device, which may change: the run checks the clock that
    # timed the trials instead (study._timed_on).
    "measure": {"clock"},
}
"""Settings a resumed study may change: they decide how and where trials run, not what a trial is.
Everything else (dataset, training, space, measuring, constraints, seed) defines the trials, so a
study whose trials were run with other values would mix two experiments, and export would
rebuild its models with the wrong settings."""


def config_record(config: Any) -> dict[str, Any]:
    """A ``StudyConfig`` as the study stores it: its TOML form (``StudyConfig.to_dict``) but the
    storage URL (it may hold a password), with tuples as lists, as the storage returns them."""
    data = json.loads(json.dumps(config.to_dict()))
    del data["study"]["storage"]
    return data


def store_config(study: optuna.Study, config: Any) -> None:
    """Record the config a study runs with: export retrains with it, resumes are checked against it."""
    study.set_user_attr(CONFIG_ATTR, config_record(config))


def stored_config(study: optuna.Study | optuna.study.StudySummary) -> dict[str, Any] | None:
    """The config a study recorded (see :func:`config_record`), or ``None``."""
    return study.user_attrs.get(CONFIG_ATTR)


def _trial_defining(stored: dict[str, Any]) -> dict[str, Any]:
    defining: dict[str, Any] = {}
    for section, values in stored.items():
        resumable = _RESUMABLE.get(section, set())
        if isinstance(values, dict) and resumable is not None:
            defining |= {f"{section}.{key}": value for key, value in values.items() if key not in resumable}
    return defining


def changed_trial_settings(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings that define trials and differ, as ``"section.key = old (now new)"``."""
    old, new = _trial_defining(before), _trial_defining(now)
    return [f"{key} = {old[key]!r} (now {new[key]!r})" for key in old if key in new and old[key] != new[key]]
