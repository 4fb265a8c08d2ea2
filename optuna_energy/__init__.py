"""optuna-energy: energy-aware, multi-objective neural architecture search on Optuna.

The whole search in one call (``run_study``), or its pieces in your own objective: the 32-slot
space (``suggest_architecture``, ``suggest_training``), measuring any model (``EnergyMonitor``),
recording what you measured for the report and dashboard (``create_study``,
``record_measurement``, ``ReportNote``) and the evolution sampler (``EvolutionSampler``).

Example:
    >>> import optuna_energy
    >>> study = optuna_energy.run_study()  # digits, SQLite, the four objectives
    >>> print(optuna_energy.format_table(study, optuna_energy.pareto_trials(study)))
"""

from optuna_energy.analysis import (
    TradeOffWeights,
    format_table,
    pareto_front,
    pareto_trials,
)
from optuna_energy.arch import build_model, profile, summarize
from optuna_energy.compose import (
    create_study,
    record_measurement,
    suggest_architecture,
    suggest_training,
)
from optuna_energy.config import ConfigError, StudyConfig, TrainingSection, load_config
from optuna_energy.dashboard import ReportNote
from optuna_energy.data import DatasetError, from_datasets, from_tensors
from optuna_energy.export import export_trial
from optuna_energy.monitor import EnergyMonitor, InferenceResult, WindowResult, profile_module
from optuna_energy.report import build_report
from optuna_energy.report_files import write_report
from optuna_energy.samplers import EvolutionSampler
from optuna_energy.space import SpaceSection, TrainingParams
from optuna_energy.storage import StorageError, mask_url
from optuna_energy.study import create_or_load_study, create_sampler, run_study

__all__ = [
    "ConfigError",
    "DatasetError",
    "EnergyMonitor",
    "EvolutionSampler",
    "InferenceResult",
    "ReportNote",
    "SpaceSection",
    "StorageError",
    "StudyConfig",
    "TradeOffWeights",
    "TrainingParams",
    "TrainingSection",
    "WindowResult",
    "build_model",
    "build_report",
    "create_or_load_study",
    "create_sampler",
    "create_study",
    "export_trial",
    "format_table",
    "from_datasets",
    "from_tensors",
    "load_config",
    "mask_url",
    "pareto_front",
    "pareto_trials",
    "profile",
    "profile_module",
    "record_measurement",
    "run_study",
    "suggest_architecture",
    "suggest_training",
    "summarize",
    "write_report",
]
