"""scikit-learn's ``load_digits``: 8x8 grey digits that ship with scikit-learn (no download)."""

from __future__ import annotations

import numpy as np

from optuna_energy.data.settings import DatasetSection
from optuna_energy.data.splits import ArraySplits, holdout


def load_digits(section: DatasetSection, seed: int) -> ArraySplits:
    from sklearn import datasets

    digits = datasets.load_digits()
    # Pixel values are 0..16; scaling to 0..255 gives the same uint8 format as every image set.
    images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)[:, None, :, :]
    train_x, eval_x, train_y, eval_y = holdout(
        images, digits.target.astype(np.int64), fraction=section.validation_fraction, seed=seed)
    return ArraySplits(
        name="digits", train_x=train_x, train_y=train_y, eval_x=eval_x, eval_y=eval_y,
        n_classes=10, eval_split=f"validation ({section.validation_fraction:.0%} of load_digits)",
    )
