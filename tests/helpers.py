"""Small builders shared by the tests."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

LEARNS_IN_ONE_EPOCH = {"learning_rate": [1e-2, 3e-2], "optimizers": ["adam"]}
"""Training that learns digits in one epoch of a shallow network (``tiny_config(learns=True)``)."""


def tiny_config(storage_dir: Path, *, learns: bool = False, **study: Any) -> dict[str, Any]:
    """A digits study whose trials take well under a second on one CPU core.

    Most of its random networks are still at chance after their one epoch, and early stopping
    ends those PRUNED. With ``learns``, the networks are shallow (4 feature slots, 2 classifier
    slots) and Adam's step large enough that nearly every trial learns and completes (29 of 30 on
    seeds 0-4): for tests that count completed trials."""
    shallow = {"feature_slots": 4, "classifier_slots": 2} if learns else {}
    return {
        "study": {"name": "tiny", "storage": f"sqlite:///{storage_dir / 'study.db'}",
                  "n_trials": 3, "seed": 0, "device": "cpu", **study},
        "training": {"epochs": 1, "batch_sizes": [128], **(LEARNS_IN_ONE_EPOCH if learns else {})},
        "space": {"conv_channels": [4, 16], "inception_width": [2, 8], "linear_width": [8, 64], **shallow},
        "measure": {"min_window_seconds": 0.01, "idle_seconds": 0.0, "warmup_batches": 1,
                    "meter": "estimate"},  # the same source on every CI machine
    }


def write_toml(path: Path, config: dict[str, dict[str, Any]]) -> Path:
    """A config mapping (tables of strings, numbers, booleans and lists) as a TOML file."""
    lines = []
    for section, keys in config.items():
        lines += [f"[{section}]", *(f"{key} = {json.dumps(value)}" for key, value in keys.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    """A local TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
