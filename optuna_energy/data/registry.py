"""Datasets by config name, and the ``[dataset]`` keys each of them accepts.

A dataset of your own is one :class:`DatasetSource` given to :func:`register_dataset`, or named
under the entry-point group ``optuna_energy.datasets`` by the package that holds it; the config's
``[dataset] name`` then accepts it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from optuna_energy.data.cifar import load_cifar10, load_cifar100
from optuna_energy.data.digits import load_digits
from optuna_energy.data.folders import load_cinic10, load_imagefolder
from optuna_energy.data.settings import DatasetSection
from optuna_energy.data.splits import ArraySplits, DatasetError
from optuna_energy.host.plugins import Registry

_FOLDER_NAME = re.compile(r"[\w.-]+")


@dataclasses.dataclass(frozen=True)
class DatasetSource:
    """How one dataset is loaded, and which ``[dataset]`` keys make sense for it."""

    load: Callable[[DatasetSection, int], ArraySplits]
    """Reads the training and evaluation splits for ``[dataset]`` and a seed (for a validation split
    drawn from the training data); raises ``DatasetError`` naming what is missing."""
    eval_splits: tuple[str, ...]
    """Splits the objectives can be measured on; the first is the paper's and the default."""
    root_hint: str = ""
    """What ``root`` must hold; empty when the dataset needs no root."""
    downloadable: bool = False
    folder_splits: bool = False
    """Any sub-folder of ``root`` may be named as the evaluation split (``root/train`` trains)."""
    resizes: bool = False
    """Takes ``image_size`` and ``channels`` and converts every image to them."""

    def problem(self, section: DatasetSection) -> str | None:
        """What is wrong with ``section`` for this dataset, as ``"key ..."``; ``None`` if nothing."""
        name, split = section.name, section.eval_split
        if split is not None and split not in self.eval_splits:
            folder = self.folder_splits and _FOLDER_NAME.fullmatch(split) and split not in (".", "..")
            if not folder:
                allowed = ", ".join(self.eval_splits)
                if self.folder_splits:
                    allowed += ", or the name of a sub-folder of root next to train/"
                return f"eval_split is {split!r} for {name}; allowed: {allowed}"
        if self.root_hint and section.root is None:
            return f"root is required for {name}: the folder that holds {self.root_hint}"
        if not self.root_hint and section.root is not None:
            return f"root applies only to datasets read from disk, not {name} (it ships with its library)"
        if section.download and not self.downloadable:
            downloadable = ", ".join(key for key, source in DATASETS.items() if source.downloadable)
            where = "must already be on disk under root" if self.root_hint else "needs no download"
            return f"download = true works only for {downloadable}; {name} {where}"
        if self.resizes and section.image_size is None:
            return f"image_size is required for {name}: the square side in pixels, e.g. 32"
        if not self.resizes and (section.image_size is not None or section.channels != 3):
            return f"image_size and channels apply only to imagefolder, not {name}"
        return None


def _accept_source(name: str, given: Any) -> DatasetSource:
    if not isinstance(given, DatasetSource):
        raise TypeError(f"dataset {name!r} must be a DatasetSource, got {type(given).__name__}")
    if not _FOLDER_NAME.fullmatch(name) or not given.eval_splits:
        raise ValueError(f"dataset {name!r}: the name must be letters, digits, '.', '-' or '_' and "
                         f"eval_splits must name at least one split, got {list(given.eval_splits)}")
    return given


_BUILTINS = {
    "digits": DatasetSource(load_digits, ("validation",)),
    "cifar10": DatasetSource(load_cifar10, ("test", "validation"),
                             root_hint="(or will hold, with download = true) cifar-10-batches-py/",
                             downloadable=True),
    "cifar100": DatasetSource(load_cifar100, ("test", "validation"),
                              root_hint="(or will hold, with download = true) cifar-100-python/",
                              downloadable=True),
    "cinic10": DatasetSource(load_cinic10, ("valid",),
                             root_hint="CINIC-10's train/ and valid/ folders"),
    "imagefolder": DatasetSource(load_imagefolder, ("validation",),
                                 root_hint="one sub-folder of images per class (or train/ and an "
                                           "evaluation folder, each with those)",
                                 folder_splits=True, resizes=True),
}

DATASETS: Registry[DatasetSource] = Registry("dataset", group="optuna_energy.datasets", accept=_accept_source,
                                             builtins=_BUILTINS)
"""Dataset sources by config name: the built-ins, then plug-ins (entry points, :func:`register_dataset`)."""


def register_dataset(name: str, source: DatasetSource) -> DatasetSource:
    """Make ``[dataset] name = "<name>"`` load with ``source``.

    Raises:
        ValueError: The name is taken or not a plain name, or ``source`` names no evaluation split.

    Example:
        >>> from optuna_energy.data import DatasetSource, from_tensors, register_dataset
        >>> def load_mine(section, seed):  # section: the config's [dataset]
        ...     return from_tensors(train_x, train_y, eval_x, eval_y, name="mine")
        >>> source = register_dataset("mine", DatasetSource(load_mine, ("validation",)))
    """
    return DATASETS.register(name, source)


def load_dataset(section: DatasetSection, *, seed: int = 0) -> ArraySplits:
    """Load the named dataset's training and evaluation splits as uint8 arrays.

    Decoded images are cached (see ``optuna_energy.data.cache``), so only the first call per
    source decodes; later calls, from any worker, read one file.

    Raises:
        DatasetError: The data is missing or corrupted; the message says where it is expected
            and how to get it.
    """
    try:
        source = DATASETS[section.name]
    except KeyError:
        raise DatasetError(f"unknown dataset {section.name!r}; allowed: {', '.join(DATASETS)}") from None
    return source.load(section, seed)


def check_dataset(section: DatasetSection) -> None:
    """Check ``[dataset]`` against the dataset it names.

    Raises:
        ValueError: ``"key ..."``, naming what is wrong and what is allowed.
    """
    if section.name not in DATASETS:
        raise ValueError(f"name is {section.name!r}; allowed: {', '.join(DATASETS)}")
    problem = DATASETS[section.name].problem(section)
    if problem:
        raise ValueError(problem)
    if section.image_size is not None and section.image_size <= 0:
        raise ValueError(f"image_size must be > 0, got {section.image_size!r}")
    if section.channels not in (1, 3):
        raise ValueError(f"channels is {section.channels}; allowed: 1 (grey), 3 (RGB)")
    if not 0.0 < section.validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be between 0 and 1, got {section.validation_fraction}")
