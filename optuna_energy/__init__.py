"""optuna-energy: energy-aware, multi-objective neural architecture search on Optuna.

The whole search in one call (``run_study``), or its pieces in your own objective: the 32-slot
space (``suggest_architecture``, ``suggest_training``), measuring any model (``EnergyMonitor``),
costs first (``measure_costs_first``), multi-objective early stopping and the training budget
(``EarlyStopper``), several workers per GPU (``gpu_share``), recording what you measured for the
report and dashboard (``create_study``, ``record_measurement``, ``ReportNote``) and the evolution
sampler (``EvolutionSampler``).

Example:
    >>> import optuna_energy
    >>> study = optuna_energy.run_study()  # digits, SQLite, the four objectives
    >>> print(optuna_energy.format_table(study, optuna_energy.pareto_trials(study)))
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna_energy.carbon import co2e_grams, joules_of_co2e
    from optuna_energy.compose import (
        create_study,
        measure_costs_first,
        record_measurement,
        suggest_architecture,
        suggest_training,
    )
    from optuna_energy.config import ConfigError, StudyConfig, TrainingSection, load_config
    from optuna_energy.data import DatasetError, DatasetSource, from_datasets, from_tensors, register_dataset
    from optuna_energy.export import export_trial
    from optuna_energy.host import gpu_share
    from optuna_energy.host.files import OutputError
    from optuna_energy.host.meters import EnergyEstimateWarning
    from optuna_energy.measuring.monitor import EnergyMonitor, InferenceResult, WindowResult, profile_module
    from optuna_energy.model.arch import build_model, profile, summarize
    from optuna_energy.model.layers import LayerKind, register_layer_kind
    from optuna_energy.model.space import SpaceSection, TrainingParams
    from optuna_energy.reading.analysis import (
        TradeOffWeights,
        format_table,
        pareto_front,
        pareto_trials,
    )
    from optuna_energy.reading.dashboard import ReportNote
    from optuna_energy.reading.report import build_report
    from optuna_energy.reading.report_files import write_report
    from optuna_energy.samplers import EvolutionSampler, HandoverSampler
    from optuna_energy.store.storage import StorageError, mask_url
    from optuna_energy.study import create_or_load_study, create_sampler, run_study
    from optuna_energy.trial.stopping import EarlyStopper

_HOMES = {
    "co2e_grams": "carbon",
    "joules_of_co2e": "carbon",
    "create_study": "compose",
    "measure_costs_first": "compose",
    "record_measurement": "compose",
    "suggest_architecture": "compose",
    "suggest_training": "compose",
    "ConfigError": "config",
    "load_config": "config",
    "StudyConfig": "config",
    "TrainingSection": "config",
    "DatasetError": "data",
    "DatasetSource": "data",
    "register_dataset": "data",
    "from_datasets": "data",
    "from_tensors": "data",
    "export_trial": "export",
    "gpu_share": "host.gpu_share",
    "OutputError": "host.files",
    "EnergyEstimateWarning": "host.meters",
    "EnergyMonitor": "measuring.monitor",
    "InferenceResult": "measuring.monitor",
    "profile_module": "measuring.monitor",
    "WindowResult": "measuring.monitor",
    "build_model": "model.arch",
    "profile": "model.arch",
    "summarize": "model.arch",
    "LayerKind": "model.layers",
    "register_layer_kind": "model.layers",
    "SpaceSection": "model.space",
    "TrainingParams": "model.space",
    "format_table": "reading.analysis",
    "pareto_front": "reading.analysis",
    "pareto_trials": "reading.analysis",
    "TradeOffWeights": "reading.analysis",
    "ReportNote": "reading.dashboard",
    "build_report": "reading.report",
    "write_report": "reading.report_files",
    "EvolutionSampler": "samplers",
    "HandoverSampler": "samplers",
    "mask_url": "store.storage",
    "StorageError": "store.storage",
    "create_or_load_study": "study",
    "create_sampler": "study",
    "run_study": "study",
    "EarlyStopper": "trial.stopping",
}
"""Each public name's module (a public module: itself), imported at first use: ``import
optuna_energy`` stays light, so the command can catch a Ctrl-C while PyTorch is still loading
(``optuna_energy.entry``)."""


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'optuna_energy' has no attribute {name!r}")
    module = importlib.import_module(f"optuna_energy.{_HOMES[name]}")
    value = module if module.__name__.rpartition(".")[2] == name else getattr(module, name)
    globals()[name] = value
    return value


__all__ = [
    "ConfigError",
    "DatasetError",
    "DatasetSource",
    "EarlyStopper",
    "EnergyEstimateWarning",
    "EnergyMonitor",
    "EvolutionSampler",
    "HandoverSampler",
    "InferenceResult",
    "LayerKind",
    "OutputError",
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
    "co2e_grams",
    "create_or_load_study",
    "create_sampler",
    "create_study",
    "export_trial",
    "format_table",
    "from_datasets",
    "from_tensors",
    "joules_of_co2e",
    "gpu_share",
    "load_config",
    "mask_url",
    "measure_costs_first",
    "pareto_front",
    "pareto_trials",
    "profile",
    "profile_module",
    "record_measurement",
    "register_dataset",
    "register_layer_kind",
    "run_study",
    "suggest_architecture",
    "suggest_training",
    "summarize",
    "write_report",
]
