"""Study configuration: dataclasses, TOML loading and validation with one-line errors.

A config file has the sections ``[study]``, ``[dataset]``, ``[training]``, ``[space]``,
``[measure]``, ``[constraints]``, ``[storage]``, ``[workers]``, ``[evolution]``,
``[early_stopping]`` and ``[carbon]``; every key is optional and documented in ``studies/digits.toml``, the
embedded default study (shipped in the package as ``optuna_energy/digits.toml``:
:data:`DEFAULT_CONFIG`). Validation happens once, here, so that the rest of the package can trust
the values it is handed; ``[evolution]`` is the sampler's own ``EvolutionSettings``, whose ranges
the sampler checks itself (this module only turns its ``ValueError`` into a one-line
``ConfigError``).

Every float must be finite (TOML's ``nan`` and ``inf`` are refused for every key, of every
section), and every number must lie in its key's range; a key in seconds stops at
:data:`MAX_SECONDS`, where the waits it goes to would overflow or never end.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import math
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna

from optuna_energy import carbon
from optuna_energy.choices import POOLERS
from optuna_energy.data.device import AUGMENTATIONS
from optuna_energy.data.registry import check_dataset
from optuna_energy.data.settings import DatasetSection
from optuna_energy.host.devices import DeviceError, parse_device_name
from optuna_energy.host.meters import meter_choices, settings_tables
from optuna_energy.measuring.costs import ENERGY_KINDS
from optuna_energy.measuring.measure import CLOCKS, DEFAULT_REMEASURE_WINDOWS, DEFAULT_WINDOWS
from optuna_energy.metrics import DEFAULT_OBJECTIVES, METRICS
from optuna_energy.model.optimizers import OPTIMIZERS
from optuna_energy.model.space import SpaceSection
from optuna_energy.samplers import MAX_SEED, EvolutionSampler, EvolutionSettings, HandoverSampler

SAMPLERS: dict[str, Callable[[int | None, EvolutionSettings], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed, _: optuna.samplers.TPESampler(seed=seed),  # Optuna's multi-objective default
    # The default: TPE's fronts were the best at the budgets benchmarked; past HANDOVER_TRIALS its
    # cost per trial keeps growing and the evolution sampler's does not (samplers._handover).
    "auto": lambda seed, evolution: HandoverSampler(
        optuna.samplers.TPESampler(seed=seed), EvolutionSampler(**dataclasses.asdict(evolution), seed=seed)),
    # Generations as large as the evolution sampler's: Optuna's 50 would keep a study of a few
    # dozen trials in its random first generation.
    "nsga2": lambda seed, evolution: optuna.samplers.NSGAIISampler(
        seed=seed, population_size=evolution.population_size),
    "random": lambda seed, _: optuna.samplers.RandomSampler(seed=seed),
    "evolution": lambda seed, evolution: EvolutionSampler(**dataclasses.asdict(evolution), seed=seed),
    # The conditional space's slots are outside its intersection search space and sampled at
    # random, which it would warn about for every parameter of every trial.
    "gp": lambda seed, _: optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False),
}
"""Sampler constructors by ``[study] sampler`` name, taking the seed and the ``[evolution]`` section:
the one list of names (``study.create_sampler`` builds from it).

Each reads the trials' constraints (the ``learned`` rule and the ``[constraints]`` limits, set
with Optuna's ``Trial.set_constraint``) from the trials themselves, as Optuna 5 samplers do, and
ranks infeasible trials below feasible ones; their ``constraints_func`` argument is deprecated
since Optuna 5.0. Random search ranks nothing."""
MAX_LEARNING_RATE = 10.0
MAX_SECONDS = 366 * 24 * 3600
"""Longest duration a key in seconds accepts (a year): no job runs longer, and larger values
overflow the thread waits and timestamps they go to."""
MAX_WINDOW_SECONDS = 3600
MAX_WINDOWS = 100
"""Most measuring windows per architecture: a spread needs a few, a hundred is a typo."""
"""Longest measuring window, idle baseline or power sampling period: the paper's are seconds, an
hour per trial is a typo."""
PRECISIONS = ("fp32", "bf16")
MIN_POOLER_CONNECTIONS = 2
"""Optuna creates a study's tables over two connections at once."""
"""``[workers] pooler`` and ``launch --pooler``: a connection pooler the launcher runs per node."""


DEFAULT_CONFIG = "digits.toml"
"""The embedded default study, package data of ``optuna_energy`` (``studies/digits.toml`` links to
it): what ``load_config(None)`` and ``optuna-energy run`` without a config run."""


class ConfigError(ValueError):
    """A configuration value is wrong; the message is one line naming it and what is allowed."""


@dataclasses.dataclass(frozen=True)
class StudySection:
    name: str = "optuna-energy"
    storage: str = "sqlite:///optuna_energy.db"
    sampler: str = "auto"  # TPE, then evolution past 1,000 trials (docs/BENCHMARKS.md, "The default sampler")
    n_trials: int = 30
    timeout: float | None = None
    seed: int | None = 0
    device: str = "auto"
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    artifact_dir: str | None = None
    """Folder of Optuna's artifact store: trial drawings for optuna-dashboard, kept weights."""
    keep_weights: bool = True
    """Keep each completed trial's trained weights as an artifact (``artifact_dir``, else an
    ``artifacts`` folder beside a SQLite or journal file), so that export need not retrain."""
    max_train_epochs: int | None = None
    """Training epochs the whole study may spend, over all trials and workers (exact)."""
    max_train_energy: float | None = None
    """Training joules the whole study may spend (same meter as ``train_energy_j``); with
    ``max_train_co2e_g``, that budget in joules (:class:`StudyConfig` converts it)."""
    max_train_co2e_g: float | None = None
    """The training budget in grams of CO2e instead of joules, at ``[carbon] intensity_g_per_kwh``."""
    costs_first: bool = True
    """An architecture over a ``[constraints]`` limit is measured and never trained: it ends
    PRUNED with 0 epochs (``trial.costs_first``). ``false`` trains it like any other, as the
    paper did. Independent of ``[early_stopping] enabled``, so that early stopping and full
    training can be compared with the same rule."""


@dataclasses.dataclass(frozen=True)
class TrainingSection:
    epochs: int = 8
    learning_rate: tuple[float, float] = (1e-4, 3e-2)
    weight_decay: tuple[float, float] = (1e-6, 1e-2)
    optimizers: tuple[str, ...] = ("adam", "adamw", "sgd")
    batch_sizes: tuple[int, ...] = (32, 64, 128)
    precision: str = "fp32"
    channels_last: bool = False
    augment: tuple[str, ...] = ()
    crop_padding: int = 4
    max_memory_share: float = 0.5
    """Largest share of the device's available memory (a GPU's free memory, the machine's
    available RAM for the CPU) that training one model may need, by the estimate from its spec;
    a larger model fails its trial before it is built instead of exhausting a shared node."""


@dataclasses.dataclass(frozen=True)
class MeasureSection:
    batch_size: int = 100
    warmup_batches: int = 2
    min_window_seconds: float = 1.0
    """The least length of each measuring window."""
    windows: int = DEFAULT_WINDOWS
    """Measuring windows per architecture: the stored inference time is a quantile of the
    passes of all of them, its spread how far they disagree (docs/energy.md)."""
    remeasure_windows: int = DEFAULT_REMEASURE_WINDOWS
    """Windows measured again, and pooled with the first ones, for a trained network that would
    enter the Pareto front only by a margin within its spread (``trial.front_entry``); 0: never."""
    clock: str = "auto"
    """What times a pass (``optuna_energy.measuring.measure.CLOCKS``): ``auto`` (a CPU: the
    measuring thread's CPU time on one torch thread; a GPU: the wall clock), ``wall`` or ``cpu``."""
    idle_seconds: float = 2.0
    energy: str = "net"
    meter: str = "auto"
    """``auto`` (the best that works) or one energy source by name."""
    meters: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {table: settings() for table, settings in settings_tables().items()})
    """Each registered meter's settings (its dataclass) by table: ``[measure.nvml]``,
    ``[measure.rapl]``... (``optuna_energy.host.meters``)."""


_LEGACY_MEASURE_KEYS = {"power_interval_s": "nvml"}
"""``[measure]`` keys of configs older than the meters' tables -> the table that holds them now."""


def constraints_section() -> type:
    """``[constraints]``: one limit per registered metric with a ``limit``, made from the registry
    as it is now: a ceiling on each cost (``max_params``, ``max_energy``...) and a floor on
    accuracy (``min_accuracy``, on top of the ``learned`` rule); a trial outside any is infeasible
    (Optuna's constraint API)."""
    return _constraints_type(tuple(metric.limit for metric in METRICS.values() if metric.limit))


@functools.cache
def _constraints_type(limits: tuple[str, ...]) -> type:
    section = dataclasses.make_dataclass(
        "ConstraintsSection", [(limit, "float | None", dataclasses.field(default=None)) for limit in limits],
        frozen=True, namespace={"__module__": __name__})
    section.__doc__ = constraints_section.__doc__
    return section


@dataclasses.dataclass(frozen=True)
class StorageSection:
    """How processes share a study: heartbeats find dead workers, reconnects outlast a restart.

    ``heartbeat_interval`` and ``grace_period`` are Optuna's RDB heartbeat (seconds); a trial
    without a heartbeat for ``grace_period`` is failed and re-run with the same parameters up to
    ``max_retry`` times. A worker that loses the database retries with back-off for
    ``reconnect_timeout`` seconds before giving up.
    """

    heartbeat_interval: int = 60
    grace_period: int | None = None
    max_retry: int | None = 3
    reconnect_timeout: float = 600.0


@dataclasses.dataclass(frozen=True)
class WorkersSection:
    """How ``optuna-energy launch`` places workers (docs/distributed.md)."""

    per_gpu: int = 1
    """Workers sharing each GPU: their training overlaps, each measuring window runs alone
    (``--per-gpu`` overrides it)."""
    pooler: str = "none"
    """``"pgbouncer"``: the launcher runs PgBouncer for its node's workers (transaction
    pooling, ``store.pooler``), so hundreds of workers fit a PostgreSQL server's 100 connections
    (``--pooler`` overrides it)."""
    pooler_connections: int = 4
    """Connections to the database server the node's pooler opens at most."""


EvolutionSection = EvolutionSettings
"""``[evolution]``: the sampler's own settings, which check themselves (``EvolutionSettings``)."""


@dataclasses.dataclass(frozen=True)
class EarlyStoppingSection:
    """Multi-objective early stopping (``optuna_energy.trial.rungs``, docs/energy.md).

    ``enabled = false`` trains every architecture for every epoch; with ``[study] costs_first =
    false`` too, it is the paper's mode.
    """

    enabled: bool = True
    first_rung: int = 1
    """Epochs before the first evaluation; later rungs are ``factor`` times further apart."""
    factor: int = 3
    """Rung spacing, and the share ``1 / factor`` of the trials at a rung that go on."""
    min_peers: int = 3
    """Trials (the deciding one included) at a rung before it ranks them; fewer: go on."""


@dataclasses.dataclass(frozen=True)
class CarbonSection:
    """Grams of CO2e beside joules (``optuna_energy.carbon``); unset: joules only."""

    intensity_g_per_kwh: float | None = None
    """Grams of CO2e the electricity used emits per kWh (the grid's or the supplier's figure)."""


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """A whole study: what to search, on which data, how to measure, where to store it."""

    study: StudySection = StudySection()
    dataset: DatasetSection = DatasetSection()
    training: TrainingSection = TrainingSection()
    space: SpaceSection = SpaceSection()
    measure: MeasureSection = dataclasses.field(default_factory=MeasureSection)
    constraints: Any = dataclasses.field(default_factory=lambda: constraints_section()())
    """Built from the metric registry: one field per limit."""
    storage: StorageSection = StorageSection()
    workers: WorkersSection = WorkersSection()
    evolution: EvolutionSection = EvolutionSection()
    early_stopping: EarlyStoppingSection = EarlyStoppingSection()
    carbon: CarbonSection = CarbonSection()

    def __post_init__(self) -> None:
        """A carbon budget becomes the joule budget at the study's intensity, so the one
        training budget (``optuna_energy.store.training_budget``) spends it.

        Raises:
            ConfigError: A carbon budget without an intensity to convert it with.
        """
        grams = self.study.max_train_co2e_g
        if grams is None:
            return
        intensity = self.carbon.intensity_g_per_kwh
        if intensity is None:
            raise ConfigError("[study] max_train_co2e_g must come with [carbon] intensity_g_per_kwh "
                              "(grams of CO2e per kWh of your electricity) to be a budget in joules")
        joules = carbon.joules_of_co2e(grams, intensity_g_per_kwh=intensity)
        object.__setattr__(self, "study", dataclasses.replace(self.study, max_train_energy=joules))

    @property
    def directions(self) -> list[str]:
        return [METRICS[name].direction for name in self.study.objectives]

    def to_dict(self) -> dict[str, Any]:
        """The config as a TOML file holds it, which :func:`load_config` reads back: the meters'
        settings as ``[measure.<meter>]`` tables."""
        data = dataclasses.asdict(self)
        data["measure"] |= data["measure"].pop("meters")
        data["study"] = self._given_study()
        return data

    def _given_study(self) -> dict[str, Any]:
        """``[study]`` as the user gave it: a carbon budget without the joules made of it."""
        given = dataclasses.asdict(self.study)
        if self.study.max_train_co2e_g is not None:
            given["max_train_energy"] = None
        return given

    def with_study(self, **overrides: Any) -> StudyConfig:
        """A copy with ``[study]`` keys replaced; ``None`` values are ignored, as from a CLI."""
        given = {key: value for key, value in overrides.items() if value is not None}
        merged = {**self._given_study(), **given}
        return dataclasses.replace(self, study=_build(StudySection, merged, "study"))


def load_config(source: str | Path | Mapping[str, Any] | StudyConfig | None = None) -> StudyConfig:
    """Load and validate a study configuration.

    Args:
        source: A TOML file path, a mapping with the same sections, a ready ``StudyConfig``,
            or ``None`` for the embedded default, ``studies/digits.toml`` (digits, SQLite).

    Raises:
        ConfigError: With a one-line message naming the bad file, section, key or value.

    Example:
        >>> config = load_config("studies/digits.toml")
        >>> config.study.objectives
        ('accuracy', 'inference_time', 'params', 'energy')
    """
    if isinstance(source, StudyConfig):
        return source
    if not (source is None or isinstance(source, (str, Path, Mapping))):
        raise ConfigError(f"config must be a TOML path, a mapping of sections, a StudyConfig or None, "
                          f"got {type(source).__name__} {source!r}")
    if source is None:
        raw: Mapping[str, Any] = _default_toml()
    elif isinstance(source, Mapping):
        raw = source
    else:
        raw = _read_toml(Path(source))
    sections = {field.name: field.type for field in dataclasses.fields(StudyConfig)}
    _reject_unknown(raw, sections, "the config's top level")
    built: dict[str, Any] = {}
    defaults = StudyConfig()
    for field in dataclasses.fields(StudyConfig):
        value = raw.get(field.name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"[{field.name}] must be a table of keys, got {value!r}")
        if field.name == "measure":
            built[field.name] = _build_measure(value, field.name)
        else:
            built[field.name] = _build(type(getattr(defaults, field.name)), value, field.name)
    return StudyConfig(**built)


def _build_measure(raw: Mapping[str, Any], section: str) -> MeasureSection:
    """``[measure]`` with every registered meter's ``[measure.<meter>]`` table of settings."""
    tables = settings_tables()
    keys = {field.name for field in dataclasses.fields(MeasureSection) if field.name != "meters"}
    _reject_unknown(raw, dict.fromkeys([*keys, *tables, *_LEGACY_MEASURE_KEYS]), f"[{section}]")
    raw = dict(raw)
    for key, table in _LEGACY_MEASURE_KEYS.items():
        if key in raw:
            legacy = raw.pop(key)
            if key in raw.get(table, {}):
                raise ConfigError(f"[{section}] {key} is [{section}.{table}] {key} now: give it once, there")
            raw[table] = {**raw.get(table, {}), key: legacy}
    meters = {}
    for table, settings in tables.items():
        given = raw.pop(table, {})
        if not isinstance(given, Mapping):
            raise ConfigError(f"[{section}.{table}] must be a table of keys, got {given!r}")
        meters[table] = _build(settings, given, f"{section}.{table}")
    return dataclasses.replace(_build(MeasureSection, raw, section), meters=meters)


def _default_toml() -> Mapping[str, Any]:
    return tomllib.loads(importlib.resources.files("optuna_energy").joinpath(DEFAULT_CONFIG).read_text("utf-8"))


def _read_toml(path: Path) -> Mapping[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a directory, expected a TOML file: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"malformed TOML in {path}: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {error.object[error.start]:#04x} "
                          f"at offset {error.start}); TOML files must be UTF-8") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None


def _reject_unknown(raw: Mapping[str, Any], allowed: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in {where}; allowed: {', '.join(sorted(allowed))}"
        )


def _build(cls: type, raw: Mapping[str, Any], section: str) -> Any:
    fields = {field.name: field for field in dataclasses.fields(cls) if field.name != "meters"}
    _reject_unknown(raw, fields, f"[{section}]")
    values = {name: _coerce(raw[name], fields[name], section) for name in raw}
    try:
        instance = cls(**values)
    except ValueError as error:  # a section that checks itself, as the sampler's settings do
        raise ConfigError(f"[{section}] {error}") from None
    validate = _VALIDATORS.get(section)
    if validate is not None:
        validate(instance, section)
    return instance


def _coerce(value: Any, field: dataclasses.Field, section: str) -> Any:
    """Turn TOML lists into tuples and check the basic type of every value."""
    where = f"[{section}] {field.name}"
    # A default read from a registry when the section is made ([space] feature_types) is a factory.
    default = field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        element = type(default[0]) if default else str
        return tuple(_scalar(item, element, where) for item in value)
    if default is None:
        if value is None:
            return None
        # Optional fields are annotated "T | None"; T is the type a given value must have.
        element = _SCALAR_TYPES[str(field.type).split("|")[0].strip()]
        return _scalar(value, element, where)
    return _scalar(value, type(default), where)


_SCALAR_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _scalar(value: Any, kind: type, where: str) -> Any:
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:  # an int from Python beyond any float
            value = math.inf
        if not math.isfinite(value):  # the one rule for every float of every section
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return value
    if kind is bool or isinstance(value, bool):
        if kind is bool and isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be {kind.__name__}, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where} must be {kind.__name__}, got {value!r}")
    return value


def _choice(value: str, allowed: tuple[str, ...], where: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{where} is {value!r}; allowed: {', '.join(allowed)}")


def _choices(values: tuple[str, ...], allowed: tuple[str, ...], where: str) -> None:
    if not values:
        raise ConfigError(f"{where} must not be empty; allowed: {', '.join(allowed)}")
    for value in values:
        _choice(value, allowed, f"{where} entry")
    if len(set(values)) != len(values):
        raise ConfigError(f"{where} lists a name twice: {list(values)}")


def _interval(pair: tuple, where: str, *, low: float, positive: bool = False) -> None:
    if len(pair) != 2 or pair[0] > pair[1] or pair[0] < low or (positive and pair[0] <= 0):
        bound = "> 0" if positive else f">= {low}"
        raise ConfigError(f"{where} must be [low, high] with {bound} and low <= high, got {list(pair)}")


def _within(value: float | None, where: str, *, low: float, high: float = math.inf,
            low_open: bool = False) -> None:
    """Check a number (``None``: not set) against ``[low, high]``, or ``(low, high]``."""
    if value is None:
        return
    above = value > low if low_open else value >= low
    if not (above and value <= high):  # NaN fails both tests
        allowed = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high < math.inf else "")
        raise ConfigError(f"{where} must be {allowed}, got {value!r}")


def _positive(value: float | None, where: str, *, high: float = math.inf) -> None:
    _within(value, where, low=0, high=high, low_open=True)


def _non_negative(value: float | None, where: str, *, high: float = math.inf) -> None:
    _within(value, where, low=0, high=high)


def _validate_study(section: StudySection, name: str) -> None:
    _choice(section.sampler, tuple(SAMPLERS), f"[{name}] sampler")
    try:
        parse_device_name(section.device)
    except DeviceError as error:
        raise ConfigError(f"[{name}] {error}") from None
    _choices(section.objectives, tuple(METRICS), f"[{name}] objectives")
    if len(section.objectives) < 2:
        raise ConfigError(
            f"[{name}] objectives needs at least two of {', '.join(METRICS)}, "
            f"got {list(section.objectives)}"
        )
    _positive(section.n_trials, f"[{name}] n_trials")
    _positive(section.timeout, f"[{name}] timeout", high=MAX_SECONDS)
    _positive(section.max_train_epochs, f"[{name}] max_train_epochs")
    _positive(section.max_train_energy, f"[{name}] max_train_energy")
    _positive(section.max_train_co2e_g, f"[{name}] max_train_co2e_g")
    if section.max_train_energy is not None and section.max_train_co2e_g is not None:
        raise ConfigError(f"[{name}] max_train_energy and max_train_co2e_g are one budget in joules "
                          "or in grams of CO2e: give one of them")
    if section.seed is not None and not 0 <= section.seed <= MAX_SEED:
        raise ConfigError(f"[{name}] seed must be an integer from 0 to {MAX_SEED}, got {section.seed}")
    if not section.name:
        raise ConfigError(f"[{name}] name must not be empty")
    if not section.storage:
        raise ConfigError(f"[{name}] storage must not be empty; e.g. sqlite:///optuna_energy.db")


def _validate_dataset(section: DatasetSection, name: str) -> None:
    try:
        check_dataset(section)
    except ValueError as error:  # the data package owns what each dataset accepts
        raise ConfigError(f"[{name}] {error}") from None


def _validate_training(section: TrainingSection, name: str) -> None:
    _positive(section.epochs, f"[{name}] epochs")
    _interval(section.learning_rate, f"[{name}] learning_rate", low=0, positive=True)
    if section.learning_rate[1] > MAX_LEARNING_RATE:
        raise ConfigError(f"[{name}] learning_rate must lie in (0, {MAX_LEARNING_RATE:g}], got "
                          f"{list(section.learning_rate)} (a larger step only diverges)")
    _interval(section.weight_decay, f"[{name}] weight_decay", low=0, positive=True)
    _choices(section.optimizers, tuple(OPTIMIZERS), f"[{name}] optimizers")
    if not section.batch_sizes or min(section.batch_sizes) < 1:
        raise ConfigError(f"[{name}] batch_sizes must be positive integers, got {list(section.batch_sizes)}")
    _choice(section.precision, PRECISIONS, f"[{name}] precision")
    for augmentation in section.augment:
        _choice(augmentation, AUGMENTATIONS, f"[{name}] augment entry")
    if not 0 < section.max_memory_share <= 1:
        raise ConfigError(f"[{name}] max_memory_share must lie in (0, 1], got {section.max_memory_share}")
    _non_negative(section.crop_padding, f"[{name}] crop_padding")


def _validate_measure(section: MeasureSection, name: str) -> None:
    _positive(section.batch_size, f"[{name}] batch_size")
    _positive(section.min_window_seconds, f"[{name}] min_window_seconds", high=MAX_WINDOW_SECONDS)
    _choice(section.meter, meter_choices(), f"[{name}] meter")
    _non_negative(section.warmup_batches, f"[{name}] warmup_batches")
    _within(section.windows, f"[{name}] windows", low=1, high=MAX_WINDOWS)
    _within(section.remeasure_windows, f"[{name}] remeasure_windows", low=0, high=MAX_WINDOWS)
    _choice(section.clock, CLOCKS, f"[{name}] clock")
    _non_negative(section.idle_seconds, f"[{name}] idle_seconds", high=MAX_WINDOW_SECONDS)
    _choice(section.energy, ENERGY_KINDS, f"[{name}] energy")


def _validate_constraints(section: Any, name: str) -> None:
    floors = {metric.limit for metric in METRICS.values() if not metric.is_cost}
    for field in dataclasses.fields(section):
        # a floor bounds accuracy, a fraction; a ceiling any positive cost
        _positive(getattr(section, field.name), f"[{name}] {field.name}", high=1 if field.name in floors else math.inf)


def _validate_storage(section: StorageSection, name: str) -> None:
    _non_negative(section.heartbeat_interval, f"[{name}] heartbeat_interval (0 turns it off)",
                  high=MAX_SECONDS)
    _within(section.grace_period, f"[{name}] grace_period (longer than heartbeat_interval)",
            low=section.heartbeat_interval, high=MAX_SECONDS, low_open=True)
    _non_negative(section.max_retry, f"[{name}] max_retry")
    _non_negative(section.reconnect_timeout, f"[{name}] reconnect_timeout", high=MAX_SECONDS)


def _validate_workers(section: WorkersSection, name: str) -> None:
    _positive(section.per_gpu, f"[{name}] per_gpu")
    _choice(section.pooler, POOLERS, f"[{name}] pooler")
    if section.pooler_connections < MIN_POOLER_CONNECTIONS:
        raise ConfigError(f"[{name}] pooler_connections must be >= {MIN_POOLER_CONNECTIONS}, "
                          f"got {section.pooler_connections}")


def _validate_early_stopping(section: EarlyStoppingSection, name: str) -> None:
    if section.first_rung < 1:
        raise ConfigError(f"[{name}] first_rung must be an epoch count >= 1, got {section.first_rung}")
    if section.factor < 2:
        raise ConfigError(f"[{name}] factor must be an integer >= 2, got {section.factor}")
    if section.min_peers < 2:
        raise ConfigError(f"[{name}] min_peers must be >= 2, got {section.min_peers}")


def _validate_carbon(section: CarbonSection, name: str) -> None:
    if section.intensity_g_per_kwh is not None:
        try:
            carbon.check_intensity(section.intensity_g_per_kwh)
        except ValueError as error:  # the carbon module owns what an intensity may be
            raise ConfigError(f"[{name}] {error}") from None


_VALIDATORS: dict[str, Callable[[Any, str], None]] = {
    "study": _validate_study,
    "dataset": _validate_dataset,
    "training": _validate_training,
    "measure": _validate_measure,
    "constraints": _validate_constraints,
    "storage": _validate_storage,
    "workers": _validate_workers,
    "early_stopping": _validate_early_stopping,
    "carbon": _validate_carbon,
}
"""Each section's checks beyond the types, by section name (a section that checks itself, as
``[evolution]`` and the meters' tables do, has none)."""
