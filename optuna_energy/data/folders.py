"""Folders of class sub-folders, read with torchvision's ``ImageFolder``: CINIC-10 and your own.

CINIC-10 is published as ``train/``, ``valid/`` and ``test/``, each with one folder per class;
as in the paper, models train on ``train`` and are measured on ``valid``, and ``test`` is never
read. ``imagefolder`` takes any folder of class sub-folders (held out by
``validation_fraction``) or a ``train/`` folder next to a named evaluation folder, resized to
one square ``image_size``.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from optuna_energy.data import cache
from optuna_energy.data.settings import DatasetSection
from optuna_energy.data.splits import ArraySplits, DatasetError, holdout

CINIC_SOURCE = "https://doi.org/10.7488/ds/2448"
"""Edinburgh DataShare's CINIC-10 record, where ``CINIC-10.tar.gz`` (about 690 MB) is published."""

_CINIC_CLASSES = 10


def load_cinic10(section: DatasetSection, seed: int) -> ArraySplits:
    root = Path(section.root or ".").expanduser().absolute()
    absent = [name for name in ("train", "valid") if not (root / name).is_dir()]
    if absent:
        raise DatasetError(
            f"CINIC-10 not found: expected {root}/train/ and {root}/valid/, each with one folder "
            f"per class (missing {absent[0]}/); download CINIC-10.tar.gz from {CINIC_SOURCE} "
            f"(see github.com/BayesWatch/cinic-10) and extract it into {root}"
        )
    classes = _matching_classes(root / "train", root / "valid")
    if len(classes) != _CINIC_CLASSES:
        raise DatasetError(f"CINIC-10 has {_CINIC_CLASSES} class folders, found {len(classes)} "
                           f"in {root / 'train'}: {', '.join(classes)}")
    reader = _FolderReader("cinic10", section, size=None, channels=3)
    train_x, train_y = reader.read(root / "train", split="train")
    eval_x, eval_y = reader.read(root / "valid", split="valid")
    return ArraySplits(name="cinic10", train_x=train_x, train_y=train_y, eval_x=eval_x, eval_y=eval_y,
                       n_classes=len(classes),
                       eval_split=f"valid (CINIC-10 validation set, {len(eval_y)} images; test unused)")


def load_imagefolder(section: DatasetSection, seed: int) -> ArraySplits:
    root = Path(section.root or ".").expanduser().absolute()
    if not root.is_dir():
        raise DatasetError(f"image folder not found: {root}; set [dataset] root to a folder "
                           f"with one sub-folder of images per class")
    reader = _FolderReader("imagefolder", section, size=section.image_size, channels=section.channels)
    split = section.eval_split or "validation"
    if split == "validation":
        classes = _class_names(root)
        images, labels = reader.read(root, split="all")
        train_x, eval_x, train_y, eval_y = holdout(images, labels, fraction=section.validation_fraction,
                                                   seed=seed)
        described = f"validation ({section.validation_fraction:.0%} of {root}, seed {seed})"
    else:
        for folder in (root / "train", root / split):
            if not folder.is_dir():
                raise DatasetError(
                    f"{folder} not found: eval_split = {split!r} needs {root}/train/ and "
                    f"{root}/{split}/, each with one sub-folder per class; or set "
                    f'eval_split = "validation" to hold out part of {root}'
                )
        classes = _matching_classes(root / "train", root / split)
        train_x, train_y = reader.read(root / "train", split="train")
        eval_x, eval_y = reader.read(root / split, split=split)
        described = f"{split} ({root / split})"
    return ArraySplits(name="imagefolder", train_x=train_x, train_y=train_y, eval_x=eval_x,
                       eval_y=eval_y, n_classes=len(classes), eval_split=described)


def _class_names(folder: Path) -> list[str]:
    """Class folder names in torchvision's order (sorted), which fixes the label numbers."""
    with os.scandir(folder) as entries:
        classes = sorted(entry.name for entry in entries if entry.is_dir())
    if not classes:
        raise DatasetError(f"no class folders in {folder}: expected one sub-folder of images per class")
    if len(classes) < 2:
        raise DatasetError(f"only one class folder in {folder} ({classes[0]}): classifying needs at "
                           "least two, one sub-folder of images per class")
    return classes


def _matching_classes(train: Path, evaluation: Path) -> list[str]:
    classes, others = _class_names(train), _class_names(evaluation)
    if classes != others:
        odd = sorted(set(classes) ^ set(others))
        raise DatasetError(f"class folders differ between {train} and {evaluation} "
                           f"(only in one: {', '.join(odd)}); both need the same classes")
    return classes


class _FolderReader:
    """Decodes a class-folder split once into the cache and reads it from there afterwards."""

    def __init__(self, dataset: str, section: DatasetSection, *, size: int | None, channels: int) -> None:
        self.dataset = dataset
        self.cache_folder = cache.cache_dir(section.cache_dir)
        self.size = size
        self.channels = channels

    def read(self, folder: Path, *, split: str) -> tuple[np.ndarray, np.ndarray]:
        settings = {"dataset": self.dataset, "size": self.size, "channels": self.channels}
        key = cache.source_hash(folder, [folder], settings)
        return cache.cached_split(self.cache_folder, dataset=self.dataset, split=split, key=key,
                                  decode=functools.partial(self._decode, folder))

    def _decode(self, folder: Path) -> tuple[np.ndarray, np.ndarray]:
        from torchvision import datasets, transforms

        transform = None
        if self.size is not None:
            transform = transforms.Compose([transforms.Resize(self.size), transforms.CenterCrop(self.size)])
        loader = functools.partial(_open, mode="RGB" if self.channels == 3 else "L")
        try:
            images = datasets.ImageFolder(str(folder), transform=transform, loader=loader)
        except FileNotFoundError as error:
            raise DatasetError(f"no images in {folder}: {error}") from None
        paths = [path for path, _ in images.samples]
        # PIL decodes with the GIL released, so threads use every core for the one-off decode.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            arrays = pool.map(lambda index: _chw(images[index][0]), range(len(paths)))
            first = next(arrays)
            stacked = np.empty((len(paths), *first.shape), dtype=np.uint8)
            stacked[0] = first
            for index, array in enumerate(arrays, start=1):
                if array.shape != first.shape:
                    raise DatasetError(
                        f"image {paths[index]} is {array.shape[1]}x{array.shape[2]} pixels but "
                        f"{paths[0]} is {first.shape[1]}x{first.shape[2]}; all images must share "
                        f"one size (imagefolder resizes them with image_size)"
                    )
                stacked[index] = array
        return stacked, np.asarray(images.targets, dtype=np.int64)


def _open(path: str, *, mode: str):
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"cannot decode image {path} ({error}); replace or delete the file") from None


def _chw(image) -> np.ndarray:
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
