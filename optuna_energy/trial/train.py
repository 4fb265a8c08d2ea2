"""Training loop and evaluation on device-resident data; trial-level failures as one exception."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

from optuna_energy.data import DeviceData
from optuna_energy.host import gpu_share
from optuna_energy.model.optimizers import make_optimizer
from optuna_energy.model.space import TrainingParams


class TrialFailure(Exception):
    """This architecture cannot be trained (non-finite loss, out of memory); the study goes on.

    ``reason`` is recorded on the trial as the ``failure_reason`` user attribute.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class TrainResult:
    seconds: float
    final_loss: float
    images: int
    """Images seen in training (epochs times training-set size), for the energy estimate."""


@dataclasses.dataclass
class TrainingSession:
    """What carries over between the training calls of one trial trained in rungs."""

    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    epochs_done: int = 0

    @classmethod
    def start(cls, model: nn.Module, data: DeviceData, params: TrainingParams, *,
              seed: int) -> TrainingSession:
        optimizer = make_optimizer(params.optimizer, model.parameters(), learning_rate=params.learning_rate,
                                   weight_decay=params.weight_decay)
        return cls(optimizer=optimizer,
                   generator=torch.Generator(device=data.device).manual_seed(seed))


def precision_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to bfloat16 for ``precision = "bf16"`` (CUDA tensor cores; CPU supports it too)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def trial_failures() -> Iterator[None]:
    """Turn out-of-memory errors into ``TrialFailure`` so that one trial, not the study, ends."""
    try:
        yield
    except torch.OutOfMemoryError as error:
        raise TrialFailure(f"out of memory: {str(error).splitlines()[0]}") from error
    except RuntimeError as error:
        message = str(error)
        if "out of memory" in message or "can't allocate memory" in message:
            raise TrialFailure(f"out of memory: {message.splitlines()[0]}") from error
        raise


def train(model: nn.Module, data: DeviceData, params: TrainingParams, *, epochs: int,
          seed: int, precision: str = "fp32", session: TrainingSession | None = None,
          on_epoch: Callable[[int], None] | None = None) -> TrainResult:
    """Train ``model`` in place for a fixed number of epochs, seeded.

    Shuffling and augmentation draw from a generator on the data's device, so no batch order
    is copied from the host. Passing the same ``session`` to consecutive calls continues one
    training run (optimizer state, batch order, epoch count): training in rungs of 1 and 2
    epochs gives the model that 3 epochs in one call give. ``on_epoch`` is told the number
    (from 1, counted over the session) of each epoch as it starts.

    Raises:
        TrialFailure: The loss became NaN or infinite, or memory ran out.
    """
    session = session or TrainingSession.start(model, data, params, seed=seed)
    generator, optimizer = session.generator, session.optimizer
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    loss = torch.zeros((), device=data.device)
    with trial_failures():
        for epoch in range(session.epochs_done, session.epochs_done + epochs):
            if on_epoch is not None:
                on_epoch(epoch + 1)
            for images, labels in data.train_batches(params.batch_size, generator):
                gpu_share.step()
                optimizer.zero_grad(set_to_none=True)
                with precision_context(data.device, precision):
                    loss = loss_fn(model(images), labels)
                loss.backward()
                optimizer.step()
            # One host sync per epoch: checking every step would stall the GPU pipeline.
            value = loss.item()
            if not math.isfinite(value):
                raise TrialFailure(f"non-finite training loss ({value}) in epoch {epoch + 1}")
            session.epochs_done = epoch + 1
    return TrainResult(seconds=time.perf_counter() - start, final_loss=float(loss.item()),
                       images=epochs * len(data.train_y))


@torch.inference_mode()
def evaluate(model: nn.Module, data: DeviceData, *, batch_size: int = 500,
             precision: str = "fp32") -> float:
    """Accuracy (fraction correct) on the evaluation split."""
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=data.device)
    with trial_failures(), precision_context(data.device, precision):
        for images, labels in data.eval_batches(batch_size):
            correct += (model(images).argmax(dim=1) == labels).sum()
    return correct.item() / len(data.eval_y)
