"""Datasets by name, held whole on the compute device as uint8 tensors.

Loaders return ``ArraySplits``: uint8 images ``(N, C, H, W)`` and int64 labels for the split a
model trains on and the split its objectives are measured on. ``DeviceData`` moves both to the
device once; normalisation and shuffling then happen there, batch by batch, with no DataLoader
(after airbench). A host copy of the evaluation images is kept because the paper's inference
time includes the host-to-device transfer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np
import torch

from optuna_energy.config import DatasetSection


class DatasetError(ValueError):
    """A dataset cannot be loaded; the message says what is missing and how to fix it."""


@dataclasses.dataclass(frozen=True)
class ArraySplits:
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


def _stratified_split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)


def _digits(section: DatasetSection, seed: int) -> ArraySplits:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are 0..16; scaling to 0..255 gives the same uint8 format as every image set.
    images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)[:, None, :, :]
    train_x, eval_x, train_y, eval_y = _stratified_split(
        images, digits.target.astype(np.int64), section.validation_fraction, seed
    )
    return ArraySplits(
        name="digits", train_x=train_x, train_y=train_y, eval_x=eval_x, eval_y=eval_y,
        n_classes=10, eval_split=f"validation ({section.validation_fraction:.0%} of load_digits)",
    )


DATASETS: dict[str, Callable[[DatasetSection, int], ArraySplits]] = {
    "digits": _digits,
}
"""Dataset loaders by config name."""


def load_dataset(section: DatasetSection, *, seed: int = 0) -> ArraySplits:
    """Load the named dataset's train and evaluation splits as uint8 arrays."""
    try:
        loader = DATASETS[section.name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {section.name!r}; allowed: {', '.join(DATASETS)}"
        ) from None
    return loader(section, seed)


class DeviceData:
    """A dataset held whole on one device, normalised and batched there."""

    def __init__(self, splits: ArraySplits, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.name = splits.name
        self.n_classes = splits.n_classes
        self.input_shape = splits.input_shape
        self.eval_split = splits.eval_split
        self.train_x = torch.from_numpy(splits.train_x).to(self.device)
        self.train_y = torch.from_numpy(splits.train_y).to(self.device)
        self.eval_x = torch.from_numpy(splits.eval_x).to(self.device)
        self.eval_y = torch.from_numpy(splits.eval_y).to(self.device)
        host = torch.from_numpy(np.ascontiguousarray(splits.eval_x))
        self.eval_x_host = host.pin_memory() if self.device.type == "cuda" else host
        pixels = torch.from_numpy(splits.train_x).float().div_(255)
        self._mean = pixels.mean(dim=(0, 2, 3)).view(1, -1, 1, 1).to(self.device)
        self._std = pixels.std(dim=(0, 2, 3)).clamp_min(1e-6).view(1, -1, 1, 1).to(self.device)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images on the device to float32, standardised per channel with train statistics."""
        return (images.float().div_(255) - self._mean) / self._std

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled, normalised training batches."""
        order = torch.randperm(len(self.train_y), generator=generator, device="cpu").to(self.device)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            yield self.normalize(self.train_x[index]), self.train_y[index]

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.eval_y), batch_size):
            yield (self.normalize(self.eval_x[start:start + batch_size]),
                   self.eval_y[start:start + batch_size])
