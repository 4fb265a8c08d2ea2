"""optuna-energy: energy-aware, multi-objective neural architecture search on Optuna.

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
from optuna_energy.config import ConfigError, StudyConfig, load_config
from optuna_energy.data import DatasetError, from_datasets, from_tensors
from optuna_energy.export import export_trial
from optuna_energy.report import build_report
from optuna_energy.report_files import write_report
from optuna_energy.storage import StorageError, mask_url
from optuna_energy.study import create_or_load_study, create_sampler, run_study

__all__ = [
    "ConfigError",
    "DatasetError",
    "StorageError",
    "StudyConfig",
    "TradeOffWeights",
    "build_model",
    "build_report",
    "create_or_load_study",
    "create_sampler",
    "export_trial",
    "format_table",
    "from_datasets",
    "from_tensors",
    "load_config",
    "mask_url",
    "pareto_front",
    "pareto_trials",
    "profile",
    "run_study",
    "summarize",
    "write_report",
]
