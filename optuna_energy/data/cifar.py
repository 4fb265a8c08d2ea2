"""CIFAR-10 and CIFAR-100 through torchvision's own classes, decoded once into the cache.

As in the paper, models train on the 50,000 training images and are measured on the 10,000
test images; ``eval_split = "validation"`` measures on a stratified hold-out of the training
images instead and never reads the test set.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np

from optuna_energy.data import cache
from optuna_energy.data.settings import DatasetSection
from optuna_energy.data.splits import ArraySplits, DatasetError, holdout

HOME_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclasses.dataclass(frozen=True)
class _Cifar:
    name: str
    title: str
    n_classes: int
    download_size: str

    @property
    def dataset_class(self) -> type:
        from torchvision import datasets

        return datasets.CIFAR10 if self.name == "cifar10" else datasets.CIFAR100


_CIFAR10 = _Cifar("cifar10", "CIFAR-10", 10, "170 MB")
_CIFAR100 = _Cifar("cifar100", "CIFAR-100", 100, "169 MB")


def load_cifar10(section: DatasetSection, seed: int) -> ArraySplits:
    return _load(_CIFAR10, section, seed)


def load_cifar100(section: DatasetSection, seed: int) -> ArraySplits:
    return _load(_CIFAR100, section, seed)


def _load(cifar: _Cifar, section: DatasetSection, seed: int) -> ArraySplits:
    root = Path(section.root or ".").expanduser().absolute()
    cls: Any = cifar.dataset_class  # torchvision's classes declare these as plain class attributes
    folder = root / cls.base_folder
    names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    cache_folder = cache.cache_dir(section.cache_dir)
    if section.download and _missing(folder, names):
        _download(cifar, root, cache_folder)
    missing = _missing(folder, names)
    if missing:
        raise DatasetError(
            f"{cifar.title} not found: expected {folder}/ with {', '.join(names)} "
            f"(missing {missing[0]}); set [dataset] download = true to fetch it "
            f"({cifar.download_size}) from {HOME_PAGE}, or set root to the folder that "
            f"contains {cls.base_folder}/"
        )
    key = cache.source_hash(root, [folder / name for name in names], {"dataset": cifar.name})

    def split(train: bool) -> tuple[np.ndarray, np.ndarray]:
        return cache.cached_split(cache_folder, dataset=cifar.name, split="train" if train else "test",
                                  key=key, decode=functools.partial(_decode, cifar, root, train=train))

    train_x, train_y = split(True)
    if (section.eval_split or "test") == "test":
        eval_x, eval_y = split(False)
        described = f"test ({cifar.title} test set, {len(eval_y)} images)"
    else:
        train_x, eval_x, train_y, eval_y = holdout(train_x, train_y,
                                                   fraction=section.validation_fraction, seed=seed)
        described = (f"validation ({section.validation_fraction:.0%} of {cifar.title} train, "
                     f"seed {seed}; test set unused)")
    return ArraySplits(name=cifar.name, train_x=train_x, train_y=train_y, eval_x=eval_x,
                       eval_y=eval_y, n_classes=cifar.n_classes, eval_split=described)


def _missing(folder: Path, names: list[str]) -> list[str]:
    return [name for name in names if not (folder / name).is_file()]


def _download(cifar: _Cifar, root: Path, cache_folder: Path) -> None:
    """torchvision's own download and md5-checked extraction, one worker at a time."""
    cache_folder.mkdir(parents=True, exist_ok=True)
    with cache.exclusive(cache_folder / f"{cifar.name}-download.lock"):
        try:
            cifar.dataset_class(str(root), train=True, download=True)
        except (OSError, RuntimeError) as error:
            raise DatasetError(
                f"downloading {cifar.title} into {root} failed ({error}); fetch "
                f"{cifar.dataset_class.filename} from {HOME_PAGE} and extract it into {root}"  # type: ignore[attr-defined]
            ) from None


def _decode(cifar: _Cifar, root: Path, *, train: bool) -> tuple[np.ndarray, np.ndarray]:
    cls: Any = cifar.dataset_class  # torchvision's classes declare these as plain class attributes
    try:
        dataset = cls(str(root), train=train, download=False)
    except RuntimeError:  # torchvision's md5 check of every file failed
        raise DatasetError(_corruption(cifar, root)) from None
    images = np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2))  # HWC -> CHW
    return images, np.asarray(dataset.targets, dtype=np.int64)


def _corruption(cifar: _Cifar, root: Path) -> str:
    from torchvision.datasets.utils import check_integrity

    cls: Any = cifar.dataset_class  # torchvision's classes declare these as plain class attributes
    folder = root / cls.base_folder
    expected = cls.train_list + cls.test_list + [[cls.meta["filename"], cls.meta["md5"]]]
    bad = [name for name, md5 in expected if not check_integrity(str(folder / name), md5)]
    which = f"file {folder / bad[0]}" if bad else f"folder {folder}"
    return (f"{cifar.title} {which} is corrupted (md5 differs from the published one); delete "
            f"{folder} and set [dataset] download = true, or extract {cls.filename} from "
            f"{HOME_PAGE} again")
