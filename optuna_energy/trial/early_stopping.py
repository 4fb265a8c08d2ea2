"""Training one trial in rungs: evaluate at each rung, stop where it cannot reach the front.

The trial trains to each rung boundary in turn (:class:`~optuna_energy.trial.rungs.RungSchedule`).
Each step of the loop in :func:`train_in_rungs` is one piece: :class:`MeteredTraining` trains a
stretch in its own energy window inside the GPU turn and records what it cost, and the public
:class:`~optuna_energy.trial.stopping.EarlyStopper` (the one your own loop uses) records the
rung's accuracy, asks the stop rule with the peers the storage holds now, and checks that the
budget pays the next stretch (the epochs the trial claimed, the joules the study has left). Everything is written to
the trial record as it happens, so other workers rank against it at once and an interrupted
study knows what was spent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial
from torch import nn

from optuna_energy.config import StudyConfig
from optuna_energy.data import DeviceData
from optuna_energy.host import gpu_share
from optuna_energy.host.meters import EnergyMeter, Work, estimate
from optuna_energy.measuring.measure import metered
from optuna_energy.model.arch import ArchProfile
from optuna_energy.model.space import TrainingParams
from optuna_energy.store import record
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.training_budget import TrainingBudget, joules_per_mac_epoch
from optuna_energy.trial.rungs import RungSchedule, epochs_text
from optuna_energy.trial.stopping import ChanceLevel, EarlyStopper
from optuna_energy.trial.train import TrainingSession, TrainResult, evaluate, train

APPORTIONED = "apportioned"
"""``train_energy_basis`` of a trial trained on a shared GPU: ``train_energy_j`` is its share of
the chip's energy over its training windows (``optuna_energy.host.gpu_share``), not the whole."""


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


def claimed_budget(config: StudyConfig) -> TrainingBudget | None:
    """The study's training budget, ``None`` without a limit on training: nothing to claim
    (studies run by ``study.optimize``)."""
    budget = training_budget(config)
    return budget if (budget.max_epochs or budget.max_joules) else None


StageHook = Callable[[int, str], None]
"""Told a running trial's number and what it does now (``measuring``, ``training epoch 3/6``,
``rung decision``): the progress bar's (``optuna_energy.run.progress.TrialProgress.stage``)."""


def no_stage(number: int, stage: str) -> None:
    """A :data:`StageHook` that shows nothing."""


def stopper(config: StudyConfig, data: DeviceData) -> EarlyStopper:
    """The study's early stopping: its schedule, chance level, cost objectives and training
    budget (one per process: it keeps the rungs' peers between trials)."""
    stopping, chance = config.early_stopping, ChanceLevel.of(data)
    rungs = schedule(config)
    return EarlyStopper(epochs=rungs.epochs, first_rung=rungs.first_rung, factor=rungs.factor,
                        min_peers=stopping.min_peers, chance_accuracy=chance.accuracy,
                        eval_images=chance.eval_images, objectives=config.study.objectives,
                        max_train_epochs=config.study.max_train_epochs,
                        max_train_energy=config.study.max_train_energy)


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


class MeteredTraining:
    """One trial's training, stretch by stretch, each in a metered window, its cost recorded.

    On a GPU shared by several workers with a hardware counter, the counter sees every trainer of
    the chip, so the trial is charged its share of each window (``train_energy_basis`` =
    ``apportioned``); the estimate computes this trial's work alone and needs no share.
    """

    def __init__(self, trial: optuna.Trial, *, model: nn.Module, data: DeviceData,
                 training: TrainingParams, profile: ArchProfile, seed: int, precision: str,
                 meter: EnergyMeter, turn: gpu_share.TrainingTurn, full_epochs: int,
                 on_stage: StageHook = no_stage) -> None:
        self.trial, self.model, self.data, self.meter, self.turn = trial, model, data, meter, turn
        self.full_epochs, self.on_stage = full_epochs, on_stage
        self.training, self.profile, self.seed, self.precision = training, profile, seed, precision
        self.session = TrainingSession.start(model, data, training, seed=seed)
        self.apportioned = turn.shared and meter.counts_hardware
        self.joules = self.window_joules = self.window_seconds = self.seconds = 0.0

    @property
    def epochs(self) -> int:
        return self.session.epochs_done

    def joules_per_epoch(self) -> float | None:
        """This trial's own training joules per epoch so far (``None`` before its first)."""
        return self.joules / self.epochs if self.epochs else None

    def train_to(self, boundary: int) -> float:
        """Train up to ``boundary`` epochs, record the epochs and joules, and return the
        evaluation accuracy."""
        def stretch() -> TrainResult:
            return train(self.model, self.data, self.training, epochs=boundary - self.epochs,
                         seed=self.seed, precision=self.precision, session=self.session,
                         on_epoch=self._tell_epoch)

        mark = self.turn.mark()
        result, window = metered(
            self.meter, "training", self.data.device, stretch,
            work=lambda trained: Work(macs=self.profile.macs, params=self.profile.params,
                                      activations=self.profile.activations,
                                      batch_size=self.training.batch_size, images=trained.images,
                                      training=True))
        self.seconds += result.seconds
        self.joules += window.joules * (self.turn.share_since(mark) if self.apportioned else 1.0)
        self.window_joules += window.joules
        self.window_seconds += window.seconds
        shared = ({"train_energy_basis": APPORTIONED, "train_window_j": self.window_joules}
                  if self.apportioned else {})
        record.write(self.trial, epochs_trained=boundary, train_energy_j=self.joules, **shared)
        self.on_stage(self.trial.number, f"evaluating after {epochs_text(boundary)}")
        return evaluate(self.model, self.data, precision=self.precision)

    def _tell_epoch(self, epoch: int) -> None:
        self.on_stage(self.trial.number, f"training epoch {epoch}/{self.full_epochs}")


def _first_stretch_affordable(trial: optuna.Trial, *, budget: TrainingBudget | None,
                              training: MeteredTraining, boundary: int) -> str | None:
    """Why the first stretch, to ``boundary``, does not fit the training energy budget; ``None``
    if it does (the claim covers its epochs; later stretches are the stopper's to judge)."""
    if budget is None or budget.max_joules is None:  # reading every trial costs a storage round trip
        return None
    # The study's measured rate: a read of every trial, once per trial.
    per_epoch = first_epoch_joules(trial.study.get_trials(deepcopy=False), profile=training.profile,
                                   training=training.training, data=training.data)
    return "training energy budget used" if budget.short_of_joules(trial.study, per_epoch * boundary) else None


def train_in_rungs(trial: optuna.Trial, *, model: nn.Module, data: DeviceData,
                   config: StudyConfig, training: TrainingParams, profile: ArchProfile,
                   seed: int, meter: EnergyMeter,
                   rule: EarlyStopper, on_stage: StageHook = no_stage) -> RungTraining:
    """Train ``model`` rung by rung up to ``claim`` epochs, stopping where the rule says.

    The architecture's costs, measured before training, are on the trial's record: ``rule``, the
    process's early stopping (:func:`stopper`), ranks by them and their spreads, and also stops a
    trial whose next rung its claim (``rule.claim``) or the energy budget cannot pay;
    ``on_stage`` is told each epoch, evaluation and rung decision as it starts.

    Raises:
        TrialFailure: Training diverged or ran out of memory.
    """
    accuracy: float | None = None
    # Evaluation runs under the turn too: it is GPU work that must stay out of others' windows.
    with gpu_share.training(data.device) as turn:
        trained = MeteredTraining(trial, model=model, data=data, training=training,
                                  profile=profile, seed=seed, precision=config.training.precision,
                                  meter=meter, turn=turn, full_epochs=rule.schedule.epochs,
                                  on_stage=on_stage)
        stop_reason = _first_stretch_affordable(trial, budget=rule.budget, training=trained,
                                                boundary=rule.schedule.boundaries[0])
        for boundary in rule.schedule.boundaries if stop_reason is None else ():
            accuracy = trained.train_to(boundary)
            if boundary == rule.schedule.epochs:
                break
            on_stage(trial.number, "rung decision")
            decision = rule.decide(trial, rung=boundary, accuracy=accuracy, train_energy_j=trained.joules)
            if not decision.go_on:
                stop_reason = decision.reason
                break
    return RungTraining(trained.epochs, trained.joules, trained.window_seconds, trained.seconds,
                        accuracy, stop_reason)
