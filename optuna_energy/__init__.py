"""optuna-energy: energy-aware, multi-objective neural architecture search on Optuna.

Example:
    >>> import optuna_energy
    >>> study = optuna_energy.run_study()  # digits, SQLite, the four objectives
    >>> print(optuna_energy.format_table(study, optuna_energy.pareto_trials(study)))
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "TradeOffWeights": "analysis", "format_table": "analysis", "pareto_front": "analysis",
    "pareto_trials": "analysis", "build_model": "arch", "profile": "arch", "summarize": "arch",
    "ConfigError": "config", "StudyConfig": "config", "load_config": "config",
    "DatasetError": "data", "from_datasets": "data", "from_tensors": "data",
    "export_trial": "export", "build_report": "report", "write_report": "report_files",
    "StorageError": "storage", "mask_url": "storage", "create_or_load_study": "study",
    "create_sampler": "study", "run_study": "study",
}
"""Each public name's module, imported at first use: ``import optuna_energy`` stays light, so the
command can catch a Ctrl-C while PyTorch is still loading (``optuna_energy.entry``)."""


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'optuna_energy' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"optuna_energy.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


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
