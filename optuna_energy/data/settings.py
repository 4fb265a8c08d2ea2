"""The ``[dataset]`` settings, owned by the data package; :func:`registry.check_dataset` checks
them against what each dataset accepts."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetSection:
    name: str = "digits"
    root: str | None = None
    download: bool = False
    validation_fraction: float = 0.2
    eval_split: str | None = None
    """The split accuracy, inference time and energy are measured on; ``None``: the paper's."""
    cache_dir: str | None = None
    image_size: int | None = None
    channels: int = 3
