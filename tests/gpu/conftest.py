"""Tests that need a real NVIDIA GPU: collected only when ``OPTUNA_ENERGY_GPU_TESTS=1``.

``bench/gpu/run.sh`` sets it on a lent GPU machine. The README's ``python -m pytest`` (and CI)
runs without a GPU, where these tests could only be skipped; so they are not collected there at
all, and where they are asked for, a missing GPU fails them instead of skipping them.
"""

from __future__ import annotations

import os

import pytest
import torch

from optuna_energy.host.devices import identity as gpu_id
from optuna_energy.host.meters import GpuId

if os.environ.get("OPTUNA_ENERGY_GPU_TESTS") != "1":
    collect_ignore_glob = ["*"]


@pytest.fixture(scope="session")
def device() -> torch.device:
    if not torch.cuda.is_available():
        pytest.fail("tests/gpu need a CUDA GPU and torch sees none", pytrace=False)
    return torch.device("cuda")


@pytest.fixture(scope="session")
def gpu(device: torch.device) -> GpuId:
    """How NVML finds the GPU torch calls ``cuda``: by UUID, as every study does."""
    return gpu_id(device)
