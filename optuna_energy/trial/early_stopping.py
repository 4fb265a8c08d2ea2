"""Training one trial in rungs: evaluate at each rung, stop where it cannot reach the front.

The trial trains to each rung boundary in turn (:class:`~optuna_energy.trial.rungs.RungSchedule`),
each stretch in its own energy window, and after every rung short of full training records its
accuracy and asks the stop rule (:func:`~optuna_energy.trial.rungs.decide`) with the peers the storage
holds now. Before each stretch it checks the training budget (the epochs it claimed, the joules
the study has left). Everything is written to the trial record as it happens, so other workers
rank against it at once and an interrupted study knows what was spent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial

from optuna_energy.config import StudyConfig
from optuna_energy.data import DeviceData
from optuna_energy.host import gpu_share
from optuna_energy.host.meters import EnergyMeter, Work, estimate
from optuna_energy.measuring.measure import metered
from optuna_energy.metrics import ACCURACY, METRICS
from optuna_energy.model.arch import ArchProfile
from optuna_energy.model.space import TrainingParams
from optuna_energy.store import record
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.training_budget import TrainingBudget, joules_per_mac_epoch
from optuna_energy.trial.rungs import Decision, RungSchedule, decide, rung_peers
from optuna_energy.trial.train import TrainingSession, TrainResult, evaluate, train

APPORTIONED = "apportioned"
"""``train_energy_basis`` of a trial trained on a shared GPU: ``train_energy_j`` is its share of
the chip's energy over its training windows (``optuna_energy.host.gpu_share``), not the whole."""


def learned_threshold(data: DeviceData) -> float:
    """The accuracy of always answering the most frequent class, plus one evaluation image."""
    return data.chance_accuracy + 1 / len(data.eval_y)


def schedule(config: StudyConfig) -> RungSchedule:
    """The study's rungs; with early stopping off, full training is the only boundary."""
    stopping, epochs = config.early_stopping, config.training.epochs
    if not stopping.enabled:
        return RungSchedule(first_rung=epochs, factor=2, epochs=epochs)
    return RungSchedule(first_rung=stopping.first_rung, factor=stopping.factor, epochs=epochs)


def training_budget(config: StudyConfig) -> TrainingBudget:
    return TrainingBudget(max_epochs=config.study.max_train_epochs,
                          max_joules=config.study.max_train_energy,
                          boundaries=schedule(config).boundaries)


def first_epoch_joules(trials: Sequence[FrozenTrial], *, profile: ArchProfile,
                       training: TrainingParams, data: DeviceData) -> float:
    """A trial's training joules per epoch before it trained: the study's measured joules per
    epoch and MAC times its MACs, so a hardware meter's figures, not the estimate's, decide
    whether the first rung fits an energy budget; the analytical estimate while none trained."""
    rate = joules_per_mac_epoch(TrialRecord.of(t) for t in trials)
    if rate is not None and profile.macs:
        return rate * profile.macs
    return estimate.training_joules(macs=profile.macs, params=profile.params,
                                    activations=profile.activations,
                                    batch_size=training.batch_size, images=len(data.train_y))


@dataclasses.dataclass(frozen=True)
class RungTraining:
    """What training in rungs did: how far, what it cost, and why it stopped if it did."""

    epochs: int
    joules: float
    window_seconds: float
    seconds: float
    accuracy: float | None
    """Evaluation accuracy after the last epoch trained (``None``: nothing trained)."""
    stop_reason: str | None


def train_in_rungs(trial: optuna.Trial, *, model, data: DeviceData, config: StudyConfig,
                   training: TrainingParams, profile: ArchProfile, costs: dict[str, float],
                   claim: int, seed: int, meter: EnergyMeter) -> RungTraining:
    """Train ``model`` rung by rung up to ``claim`` epochs, stopping where the rule says.

    ``costs`` are the architecture's measured costs by registry name (the study's cost
    objectives); ``claim`` the epochs the training budget allows this trial.

    Raises:
        TrialFailure: Training diverged or ran out of memory.
    """
    rungs = schedule(config)
    budget = training_budget(config)
    precision = config.training.precision
    cost_names = [name for name in config.study.objectives if name != ACCURACY]
    session = TrainingSession.start(model, data, training, seed=seed)
    # Evaluation runs under the turn too: it is GPU work that must stay out of others' windows.
    with gpu_share.training(data.device) as turn:
        # A counter sees every trainer of the chip; the estimate computes this trial's work alone.
        apportioned = turn.shared and meter.counts_hardware
        joules = window_j = window_s = seconds = 0.0
        accuracy: float | None = None
        accuracies: dict[str, float] = {}
        for boundary in rungs.boundaries:
            stretch = boundary - session.epochs_done
            if boundary > claim:
                return RungTraining(session.epochs_done, joules, window_s, seconds, accuracy,
                                    "training epoch budget used")
            if budget.max_joules is not None:  # reading every trial costs a storage round trip
                trials = trial.study.get_trials(deepcopy=False)
                left = budget.joules_left(trials)
                per_epoch = (joules / session.epochs_done if session.epochs_done else
                             first_epoch_joules(trials, profile=profile, training=training, data=data))
                if per_epoch * stretch > left:
                    return RungTraining(session.epochs_done, joules, window_s, seconds, accuracy,
                                        "training energy budget used")
            def train_stretch(epochs: int = stretch) -> TrainResult:
                return train(model, data, training, epochs=epochs, seed=seed, precision=precision,
                             session=session)

            mark = turn.mark()
            result, window = metered(
                meter, "training", data.device, train_stretch,
                work=lambda trained: Work(macs=profile.macs, params=profile.params,
                                          activations=profile.activations,
                                          batch_size=training.batch_size, images=trained.images,
                                          training=True))
            seconds += result.seconds
            joules += window.joules * (turn.share_since(mark) if apportioned else 1.0)
            window_j, window_s = window_j + window.joules, window_s + window.seconds
            shared = {"train_energy_basis": APPORTIONED, "train_window_j": window_j} if apportioned else {}
            record.write(trial, epochs_trained=boundary, train_energy_j=joules, **shared)
            accuracy = evaluate(model, data, precision=precision)
            if boundary == rungs.epochs:
                break
            accuracies[str(boundary)] = accuracy
            record.write(trial, rung_accuracies=accuracies)
            decision = _decide(trial, rung=boundary, accuracy=accuracy, data=data, config=config,
                               costs=[costs[name] for name in cost_names], cost_names=cost_names)
            if not decision.go_on:
                return RungTraining(boundary, joules, window_s, seconds, accuracy, decision.reason)
        return RungTraining(session.epochs_done, joules, window_s, seconds, accuracy, None)


def _decide(trial: optuna.Trial, *, rung: int, accuracy: float, data: DeviceData,
            config: StudyConfig, costs: list[float], cost_names: list[str]) -> Decision:
    peers = rung_peers(trial.study.get_trials(deepcopy=False), rung=rung, exclude=trial.number,
                       cost_fields=[METRICS[name].field for name in cost_names])
    stopping = config.early_stopping
    return decide(accuracy=accuracy, costs=costs, peers=peers, learned=learned_threshold(data),
                  factor=stopping.factor, min_peers=stopping.min_peers, rung=rung)

