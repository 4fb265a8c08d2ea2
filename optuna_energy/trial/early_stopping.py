"""Training one trial in rungs: evaluate at each rung, stop where it cannot reach the front.

The trial trains to each rung boundary in turn (:class:`~optuna_energy.trial.rungs.RungSchedule`).
Each step of the loop in :func:`train_in_rungs` is one piece: the budget says whether the next
stretch is affordable (:func:`_affordable`: the epochs the trial claimed, the joules the study has
left), :class:`MeteredTraining` trains it in its own energy window inside the GPU turn and
records what it cost, and :class:`~optuna_energy.trial.stopping.RungStopper` records the rung's
accuracy and asks the stop rule with the peers the storage holds now. Everything is written to
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
from optuna_energy.metrics import ACCURACY
from optuna_energy.model.arch import ArchProfile
from optuna_energy.model.space import TrainingParams
from optuna_energy.store import record
from optuna_energy.store.ledger import StudyLedger
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.training_budget import TrainingBudget, joules_per_mac_epoch
from optuna_energy.trial.rungs import RungSchedule, epochs_text
from optuna_energy.trial.stopping import ChanceLevel, RungStopper
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


def stopper(config: StudyConfig, data: DeviceData) -> RungStopper:
    """The study's rung decision: its schedule, chance level and cost objectives (one per
    process: it keeps the rungs' peers between trials)."""
    return RungStopper(schedule=schedule(config), learned=ChanceLevel.of(data).learned_threshold,
                       min_peers=config.early_stopping.min_peers,
                       cost_names=tuple(name for name in config.study.objectives if name != ACCURACY))


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


def _affordable(trial: optuna.Trial, *, budget: TrainingBudget, claim: int, boundary: int,
                training: MeteredTraining) -> str | None:
    """Why the stretch to ``boundary`` does not fit the training budget; ``None`` if it does."""
    if boundary > claim:
        return "training epoch budget used"
    if budget.max_joules is None:  # reading every trial costs a storage round trip
        return None
    per_epoch = training.joules_per_epoch()
    if per_epoch is None:  # the study's measured rate: a read of every trial, once per trial
        per_epoch = first_epoch_joules(trial.study.get_trials(deepcopy=False), profile=training.profile,
                                       training=training.training, data=training.data)
    if per_epoch * (boundary - training.epochs) > budget.joules_left(StudyLedger.of(trial.study).spent()):
        return "training energy budget used"
    return None


def train_in_rungs(trial: optuna.Trial, *, model: nn.Module, data: DeviceData,
                   config: StudyConfig, training: TrainingParams, profile: ArchProfile,
                   claim: int, seed: int, meter: EnergyMeter,
                   rule: RungStopper, on_stage: StageHook = no_stage) -> RungTraining:
    """Train ``model`` rung by rung up to ``claim`` epochs, stopping where the rule says.

    The architecture's costs, measured before training, are on the trial's record: the rule
    ranks by them and their spreads. ``claim`` the epochs the training budget allows this trial; ``rule`` the
    process's rung decision (:func:`stopper`); ``on_stage`` is told each epoch, evaluation and
    rung decision as it starts.

    Raises:
        TrialFailure: Training diverged or ran out of memory.
    """
    budget = training_budget(config)
    accuracy: float | None = None
    stop_reason: str | None = None
    # Evaluation runs under the turn too: it is GPU work that must stay out of others' windows.
    with gpu_share.training(data.device) as turn:
        trained = MeteredTraining(trial, model=model, data=data, training=training,
                                  profile=profile, seed=seed, precision=config.training.precision,
                                  meter=meter, turn=turn, full_epochs=rule.schedule.epochs,
                                  on_stage=on_stage)
        for boundary in rule.schedule.boundaries:
            stop_reason = _affordable(trial, budget=budget, claim=claim, boundary=boundary,
                                      training=trained)
            if stop_reason is not None:
                break
            accuracy = trained.train_to(boundary)
            if boundary == rule.schedule.epochs:
                break
            on_stage(trial.number, "rung decision")
            decision = rule.check(trial, rung=boundary, accuracy=accuracy)
            if not decision.go_on:
                stop_reason = decision.reason
                break
    return RungTraining(trained.epochs, trained.joules, trained.window_seconds, trained.seconds,
                        accuracy, stop_reason)
