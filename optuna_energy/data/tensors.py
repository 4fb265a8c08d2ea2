"""Bring your own data from Python: tensors, arrays or ``torch.utils.data.Dataset`` objects.

Both functions return ``ArraySplits``, which ``run_study(dataset=...)`` takes in place of the
config's ``[dataset]``. Images become uint8, as every dataset here is held: floating-point
images in ``[0, 1]`` (``ToTensor``'s output) are quantised to 8 bits, which normalisation on
the device then undoes up to 1/255.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from optuna_energy.data.splits import ArraySplits, DatasetError


def from_tensors(train_x: Any, train_y: Any, eval_x: Any, eval_y: Any, *, name: str = "custom",
                 n_classes: int | None = None, eval_split: str = "evaluation tensors") -> ArraySplits:
    """A dataset from image and label tensors (or NumPy arrays) already in memory.

    Args:
        train_x: Training images, ``(N, C, H, W)`` or ``(N, H, W)``; uint8 ``0..255`` or
            floating point in ``[0, 1]``.
        train_y: Training labels, integers ``0..n_classes-1``.
        eval_x: Images the objectives are measured on, shaped like ``train_x``.
        eval_y: Their labels.
        name: Recorded as the dataset name.
        n_classes: Width of the classification head; default: the largest label plus one.
        eval_split: What the evaluation images are, recorded on every trial.

    Raises:
        DatasetError: Shapes, dtypes or labels do not fit together.

    Example:
        >>> from optuna_energy.data import from_tensors
        >>> data = from_tensors(x[:50000], y[:50000], x[50000:], y[50000:], name="mine")
        >>> study = optuna_energy.run_study("studies/cifar10.toml", dataset=data)
    """
    train_images, eval_images = _images(train_x, "train_x"), _images(eval_x, "eval_x")
    train_labels, eval_labels = _labels(train_y, "train_y"), _labels(eval_y, "eval_y")
    for images, labels, which in ((train_images, train_labels, "train"), (eval_images, eval_labels, "eval")):
        if len(images) != len(labels) or not len(images):
            raise DatasetError(f"{which}_x has {len(images)} images but {which}_y has {len(labels)} "
                               f"labels; both need the same, non-zero length")
    if train_images.shape[1:] != eval_images.shape[1:]:
        raise DatasetError(f"train_x images are {train_images.shape[1:]} but eval_x images are "
                           f"{eval_images.shape[1:]}; both need one (C, H, W)")
    largest = int(max(train_labels.max(), eval_labels.max()))
    classes = n_classes or largest + 1
    if largest >= classes:
        raise DatasetError(f"label {largest} does not fit n_classes = {classes}; labels must be 0..{classes - 1}")
    return ArraySplits(name=name, train_x=train_images, train_y=train_labels, eval_x=eval_images,
                       eval_y=eval_labels, n_classes=classes, eval_split=eval_split)


def from_datasets(train: torch.utils.data.Dataset, evaluation: torch.utils.data.Dataset, *,
                  name: str = "custom", n_classes: int | None = None,
                  eval_split: str = "evaluation dataset") -> ArraySplits:
    """A dataset from two map-style ``Dataset`` objects yielding ``(image, label)``, read once.

    Images may be PIL images or ``(H, W, C)`` NumPy arrays (PIL's layout), or ``(C, H, W)``
    tensors (``ToTensor``'s layout). Random augmentations in a dataset's ``transform`` would be
    frozen by reading it once: use ``[training] augment`` instead.

    Args:
        train: Training samples, e.g. ``torchvision.datasets.MNIST(root, train=True)``.
        evaluation: Samples the objectives are measured on.
        name: Recorded as the dataset name.
        n_classes: Width of the classification head; default: ``len(train.classes)`` where the
            dataset has ``classes``, else the largest label plus one.
        eval_split: What the evaluation samples are, recorded on every trial.

    Raises:
        DatasetError: An item is not an image and a label, or the images differ in shape.
    """
    arrays = [_read(dataset, which) for dataset, which in ((train, "train"), (evaluation, "evaluation"))]
    classes = n_classes or (len(train.classes) if hasattr(train, "classes") else None)
    (train_x, train_y), (eval_x, eval_y) = arrays
    return from_tensors(train_x, train_y, eval_x, eval_y, name=name, n_classes=classes,
                        eval_split=eval_split)


def _read(dataset: torch.utils.data.Dataset, which: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for index in range(len(dataset)):  # type: ignore[arg-type]  # map-style datasets have a length
        item = dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise DatasetError(f"{which} dataset item {index} is not an (image, label) pair")
        image, label = item
        if isinstance(image, torch.Tensor):
            array = image.numpy(force=True)
        else:
            array = np.asarray(image)  # PIL images and arrays are (H, W) or (H, W, C)
            array = array if array.ndim == 2 else array.transpose(2, 0, 1)
        images.append(array)
        labels.append(int(label))
    shapes = {array.shape for array in images}
    if len(shapes) > 1:
        raise DatasetError(f"{which} dataset images differ in shape ({sorted(shapes)[:2]}); "
                           f"resize them in its transform")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _images(value: Any, where: str) -> np.ndarray:
    array = value.numpy(force=True) if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise DatasetError(f"{where} must be (N, C, H, W) or (N, H, W), got shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise DatasetError(f"{where} must be uint8 (0..255) or floating point in [0, 1], got {array.dtype}")
    if array.min() < 0 or array.max() > 1:
        raise DatasetError(f"{where} is floating point outside [0, 1] (min {array.min():.3g}, "
                           f"max {array.max():.3g}); pass uint8 pixels or scale to [0, 1]")
    return np.rint(array * 255).astype(np.uint8)


def _labels(value: Any, where: str) -> np.ndarray:
    array = value.numpy(force=True) if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DatasetError(f"{where} must be a 1-D array of integer class labels, got "
                           f"{array.dtype} with shape {array.shape}")
    if len(array) and array.min() < 0:
        raise DatasetError(f"{where} has negative label {array.min()}; labels must be 0..n_classes-1")
    return array.astype(np.int64)
