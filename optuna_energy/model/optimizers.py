"""The optimizers a trial may train with, by their config name (``[training] optimizers``).

This table is the one list of names: the config's check and the training loop both read it. It
lives beside the space, not in the training loop, so that the config (a layer below training)
can check names against it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

Parameters = Iterable[torch.nn.Parameter]


def _sgd(parameters: Parameters, *, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(parameters, lr=learning_rate, momentum=0.9, nesterov=True, weight_decay=weight_decay)


def _adam(parameters: Parameters, *, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(parameters, lr=learning_rate, weight_decay=weight_decay)


def _adamw(parameters: Parameters, *, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"sgd": _sgd, "adam": _adam, "adamw": _adamw}
"""Optimizer constructors by name: ``(parameters, *, learning_rate, weight_decay)``."""


def make_optimizer(name: str, parameters: Parameters, *, learning_rate: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``parameters``.

    Raises:
        ValueError: ``name`` is not in :data:`OPTIMIZERS`; the message lists those that are.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](parameters, learning_rate=learning_rate, weight_decay=weight_decay)
