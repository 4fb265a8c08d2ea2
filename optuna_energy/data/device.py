"""A dataset held whole on the compute device: shuffled, augmented and normalised there.

After airbench: both splits are copied to the device once as uint8 tensors (a CIFAR training
set is 150 MB), and every batch is an index into them, so no DataLoader, worker process or
host-to-device copy runs during training. A host copy of the evaluation images is kept
(pinned on CUDA) because the paper's inference time includes the host-to-device transfer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from optuna_energy.data.splits import ArraySplits
from optuna_energy.host.devices import backend

AUGMENTATIONS = ("crop", "flip")
"""``crop``: random crop of the zero-padded image; ``flip``: random horizontal flip."""

_STATS_CHUNK = 1024


class DeviceData:
    """A dataset on one device, batched there.

    Args:
        splits: The host arrays, e.g. from ``load_dataset``.
        device: Where training and measurement run.
        channels_last: Hand batches to the model in channels-last memory format (faster
            convolutions on tensor cores; convert the model with
            ``model.to(memory_format=data.memory_format)``).
        augment: Training-time augmentations, any of ``crop`` and ``flip``; none by default,
            as in the paper. Evaluation batches are never augmented.
        crop_padding: Zero border added before a random crop.
    """

    def __init__(self, splits: ArraySplits, device: torch.device | str, *, channels_last: bool = False,
                 augment: Sequence[str] = (), crop_padding: int = 4) -> None:
        unknown = sorted(set(augment) - set(AUGMENTATIONS))
        if unknown:
            raise ValueError(f"unknown augmentation {unknown[0]!r}; allowed: {', '.join(AUGMENTATIONS)}")
        self.device = torch.device(device)
        self.name = splits.name
        self.n_classes = splits.n_classes
        self.input_shape = splits.input_shape
        self.eval_split = splits.eval_split
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.augment = tuple(augment)
        self.crop_padding = crop_padding
        self.train_x = torch.from_numpy(splits.train_x).to(self.device)
        self.train_y = torch.from_numpy(splits.train_y).to(self.device)
        self.eval_x = torch.from_numpy(splits.eval_x).to(self.device)
        self.eval_y = torch.from_numpy(splits.eval_y).to(self.device)
        host = torch.from_numpy(splits.eval_x).contiguous()
        self.eval_x_host = host.pin_memory() if backend(self.device).pins_host_memory else host
        self.mean, self.std = _channel_stats(self.train_x)
        """Per-channel training statistics, ``(1, C, 1, 1)``; exported models carry them too."""
        self.chance_accuracy = float(torch.bincount(self.eval_y).max()) / len(self.eval_y)
        """Evaluation accuracy of always answering the most frequent class: a model's score
        when it has learned nothing."""

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images on the device to float32, standardised per channel with train statistics."""
        standardised = (images.float().div_(255) - self.mean) / self.std
        return standardised.contiguous(memory_format=self.memory_format)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled, augmented, normalised training batches.

        Args:
            batch_size: Images per batch; the last batch may be smaller.
            generator: A generator on ``self.device``; it draws the order and the augmentations.
        """
        order = torch.randperm(len(self.train_y), generator=generator, device=self.device)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            images = self.train_x[index]
            if "crop" in self.augment:
                images = random_crop(images, self.crop_padding, generator)
            if "flip" in self.augment:
                images = random_flip(images, generator)
            yield self.normalize(images), self.train_y[index]

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.eval_y), batch_size):
            yield (self.normalize(self.eval_x[start:start + batch_size]),
                   self.eval_y[start:start + batch_size])


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Each image cropped back to its size at a random offset within a zero border of ``padding``."""
    if padding == 0:
        return images
    n, c, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=images.device)
    rows = offsets[0, :, None] + torch.arange(height, device=images.device)
    cols = offsets[1, :, None] + torch.arange(width, device=images.device)
    # One gather for the whole batch: (n, 1, 1, 1), (1, c, 1, 1), (n, 1, h, 1), (n, 1, 1, w).
    batch = torch.arange(n, device=images.device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=images.device).view(1, c, 1, 1)
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image mirrored left-right with probability one half."""
    flip = torch.rand(len(images), generator=generator, device=images.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)


def _channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation in ``[0, 1]`` units, shaped ``(1, C, 1, 1)``.

    Summed in chunks so that a large training set is never converted to float all at once.
    """
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64, device=images.device)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), _STATS_CHUNK):
        chunk = images[start:start + _STATS_CHUNK].to(torch.float64).div_(255)
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    count = images.numel() // channels
    mean = total / count
    variance = (squares / count - mean.square()) * count / max(count - 1, 1)
    std = variance.clamp_min(0).sqrt().clamp_min(1e-6)
    return mean.float().view(1, -1, 1, 1), std.float().view(1, -1, 1, 1)
