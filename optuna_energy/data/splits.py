"""The in-memory form every dataset is brought to: uint8 image arrays and int64 labels."""

from __future__ import annotations

import dataclasses

import numpy as np


class DatasetError(ValueError):
    """A dataset cannot be loaded; the message says what is missing and how to fix it."""


@dataclasses.dataclass(frozen=True)
class ArraySplits:
    """A training split and an evaluation split as host arrays.

    Images are uint8 ``(N, C, H, W)``; labels are int64 class indices ``0..n_classes-1``.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    eval_x: np.ndarray
    eval_y: np.ndarray
    n_classes: int
    eval_split: str
    """Which split the objectives are measured on, recorded with every trial."""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])


def holdout(images: np.ndarray, labels: np.ndarray, *, fraction: float,
            seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A stratified ``(train_x, eval_x, train_y, eval_y)`` split holding out ``fraction``.

    Raises:
        DatasetError: Some class has too few images to appear on both sides.
    """
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(images, labels, test_size=fraction, random_state=seed, stratify=labels)
    except ValueError as error:
        raise DatasetError(f"cannot hold out {fraction:.0%} of {len(labels)} images stratified by "
                           f"class ({error}); add images or change validation_fraction") from None
