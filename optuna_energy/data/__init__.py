"""Datasets by name, decoded once into a uint8 cache and held whole on the compute device.

``load_dataset`` turns the config's ``[dataset]`` into ``ArraySplits`` (host uint8 arrays of a
training split and the split the objectives are measured on); ``from_tensors`` and
``from_datasets`` do the same for data already in Python. ``DeviceData`` moves both splits to
the device once; shuffling, augmentation and normalisation then happen there.

Example:
    >>> from optuna_energy.config import load_config
    >>> from optuna_energy.data import DeviceData, load_dataset
    >>> splits = load_dataset(load_config("studies/cifar10.toml").dataset)
    >>> data = DeviceData(splits, "cuda")
"""

from optuna_energy.data.device import DeviceData
from optuna_energy.data.registry import (
    DATASETS,
    DatasetSource,
    check_dataset,
    load_dataset,
    register_dataset,
)
from optuna_energy.data.settings import DatasetSection
from optuna_energy.data.splits import ArraySplits, DatasetError
from optuna_energy.data.tensors import from_datasets, from_tensors

__all__ = [
    "ArraySplits",
    "DATASETS",
    "DatasetError",
    "DatasetSection",
    "DatasetSource",
    "DeviceData",
    "check_dataset",
    "from_datasets",
    "from_tensors",
    "load_dataset",
    "register_dataset",
]
