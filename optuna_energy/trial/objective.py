"""One trial: sample an architecture, measure its costs, train it in rungs, return the values.

An architecture over a ``[constraints]`` limit (with ``[study] costs_first``), or one that early
stopping stops, ends PRUNED with its costs, rungs and reason on its record (docs/energy.md says
why PRUNED). A trained network that would enter the Pareto front only within its measured spread
is measured again, pooled with its first windows, before it returns (``trial.front_entry``).

Everything is stored on the trial through :mod:`optuna_energy.store.record`; the objective values
and the constraints come from the metric registry (:mod:`optuna_energy.metrics`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import NoReturn

import optuna
import torch
from torch import nn

from optuna_energy.compose import record_architecture, suggest_training
from optuna_energy.config import StudyConfig
from optuna_energy.data import DeviceData
from optuna_energy.host.devices import available_memory
from optuna_energy.host.meters import EnergyMeter
from optuna_energy.metrics import ACCURACY, METRICS, limit_violations
from optuna_energy.model.arch import build_model, training_memory
from optuna_energy.model.space import sample_architecture
from optuna_energy.store import record
from optuna_energy.store.ledger import StudyLedger
from optuna_energy.store.storage import database_errors
from optuna_energy.trial.costs_first import ArchitectureCosts, measure_again, measure_architecture
from optuna_energy.trial.early_stopping import StageHook, no_stage, stopper, train_in_rungs
from optuna_energy.trial.front_entry import FrontEntry, objective_values
from optuna_energy.trial.rungs import epochs_text
from optuna_energy.trial.stopping import LEARNED, ChanceLevel
from optuna_energy.trial.train import TrialFailure, trial_failures

MAX_UNEXPECTED_IN_A_ROW = 3
"""Consecutive trials of one process that may end with an exception the objective did not expect
(a bug, not a :class:`TrialFailure`) before the run stops: a deterministic bug would otherwise
fail every trial of the budget."""


_logger = logging.getLogger(__name__)


class UnexpectedFailure(TrialFailure):
    """A trial ended by an exception the objective did not expect; recorded and counted like any
    failed trial (its ``failure_reason`` names the exception), never retried."""


class ObjectiveError(RuntimeError):
    """Several trials in a row failed with unexpected exceptions: the run stops (a bug).

    ``reason`` is the last trial's ``failure_reason``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


TrainedModelHook = Callable[[optuna.Trial, nn.Module], None]
"""Called with each trained model before its trial ends (the dashboard's artifact upload)."""


def trial_seed(config: StudyConfig, number: int) -> int:
    """The seed of a trial's weights and batches; export uses it to retrain the same model."""
    return number if config.study.seed is None else config.study.seed + number


def _bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.3g} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class Objective:
    """The callable handed to ``study.optimize``; returns values in ``config.study.objectives`` order."""

    def __init__(self, config: StudyConfig, data: DeviceData, *, meter: EnergyMeter,
                 idle_watts: float = 0.0, on_trained: TrainedModelHook | None = None,
                 on_stage: StageHook = no_stage, ledger: StudyLedger | None = None) -> None:
        self.config = config
        self.data = data
        self.meter = meter
        self.idle_watts = idle_watts
        self.on_trained = on_trained
        self.on_stage = on_stage
        """Told what each trial does now (the progress bar's ``TrialProgress.stage``)."""
        self.unexpected_in_a_row = 0
        self.rung_decision = stopper(config, data)
        self.training_budget = self.rung_decision.budget
        """The study's training budget (the run loop stops when it is used); ``None``: no limit."""
        self.front = FrontEntry(ledger)
        """The study's Pareto front, from ``ledger`` (the run loop's) or a ledger of its own."""

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        passed_on: tuple[type[BaseException], ...] = (optuna.exceptions.OptunaError, *database_errors())
        try:
            values = self._run(trial)
        except TrialFailure as failure:
            self.unexpected_in_a_row = 0
            record.write(trial, failure_reason=failure.reason)
            raise
        except passed_on:  # pruned, or Optuna's and the database's business
            self.unexpected_in_a_row = 0
            raise
        except Exception as error:
            self._unexpected(trial, error)
        self.unexpected_in_a_row = 0
        return values

    def _unexpected(self, trial: optuna.Trial, error: Exception) -> NoReturn:
        """Record an exception the objective did not expect as the trial's failure, and stop the
        run after ``MAX_UNEXPECTED_IN_A_ROW`` of them in a row."""
        reason = f"unexpected {type(error).__name__}: {' '.join(str(error).split())}"[:500]
        _logger.debug("trial %d: unexpected exception", trial.number, exc_info=error)
        record.write(trial, failure_reason=reason)
        self.unexpected_in_a_row += 1
        if self.unexpected_in_a_row >= MAX_UNEXPECTED_IN_A_ROW:
            raise ObjectiveError(
                f"{self.unexpected_in_a_row} trials in a row failed with an unexpected error "
                f"(the last, trial {trial.number}: {reason}); stopping the run: this is a bug, "
                "not a bad architecture (the traceback is logged at DEBUG level)", reason) from error
        raise UnexpectedFailure(reason) from error

    def _run(self, trial: optuna.Trial) -> tuple[float, ...]:
        config, data = self.config, self.data
        # Claimed before anything runs, so a trial that cannot afford a rung costs nothing.
        self.rung_decision.claim(trial)
        training = suggest_training(trial, training=config.training)
        sampled = sample_architecture(trial, config.space, data.input_shape)
        costs = record_architecture(trial, sampled, data.input_shape, data.n_classes)
        chance = ChanceLevel.of(data)
        record.write(trial, device=str(data.device), eval_split=data.eval_split,
                     eval_images=chance.eval_images, chance_accuracy=chance.accuracy,
                     precision=config.training.precision)

        self._check_memory(training_memory(costs, training.batch_size), training.batch_size)
        seed = trial_seed(config, trial.number)
        torch.manual_seed(seed)
        with trial_failures():
            model = build_model(sampled.spec, data.input_shape, data.n_classes).to(
                data.device, memory_format=data.memory_format)  # type: ignore[call-overload]
        self.on_stage(trial.number, "measuring")
        # Costs first: they do not depend on the weights, so an architecture over a limit is
        # never trained and the stop rule ranks by the measured costs (optuna_energy.trial.costs_first).
        architecture = measure_architecture(model, config=config, data=data, profile=costs,
                                            meter=self.meter, idle_watts=self.idle_watts)
        record.write(trial, **architecture.fields)
        for name, violation in architecture.violations.items():
            trial.set_constraint(name, violation)
        if config.study.costs_first and architecture.over_limit:
            self._stop(trial, f"over {', '.join(architecture.over_limit)}", epochs=0, joules=0.0)
        trained = train_in_rungs(
            trial, model=model, data=data, config=config, training=training, profile=costs,
            seed=seed, meter=self.meter, rule=self.rung_decision, on_stage=self.on_stage)
        record.write(trial, train_window_s=trained.window_seconds, train_seconds=trained.seconds)
        if trained.stop_reason is not None:
            self._stop(trial, trained.stop_reason, epochs=trained.epochs, joules=trained.joules)
        record.write(trial, accuracy=trained.accuracy)
        if (config.early_stopping.enabled and trained.accuracy is not None
                and trained.accuracy < chance.learned_threshold):
            # Early stopping's at-chance rule, after the last epoch too: such a network is no
            # model to offer, and a COMPLETE one would be on optuna-dashboard's best trials, which
            # ignore constraints (docs/analysis.md). The paper's mode keeps it COMPLETE, infeasible.
            self._stop(trial, f"at chance after {epochs_text(trained.epochs)}", epochs=trained.epochs,
                       joules=trained.joules)
        measured = {**architecture.fields, METRICS[ACCURACY].field: trained.accuracy}
        violations = self._trained_violations(measured) | architecture.violations
        if all(v <= 0 for v in violations.values()) and self._enters_front_within_spread(trial, measured):
            architecture = self._measure_again(trial, architecture)
            measured = {**architecture.fields, METRICS[ACCURACY].field: trained.accuracy}
        self._set_constraints(trial, measured, architecture.violations)
        if self.on_trained is not None:
            self.on_trained(trial, model)
        return tuple(float(measured[METRICS[name].field]) for name in config.study.objectives)

    def _check_memory(self, needed: int, batch_size: int) -> None:
        """Fail a trial whose model would need more than its share of the device's memory."""
        share = self.config.training.max_memory_share
        available = available_memory(self.data.device)
        if needed > share * available:
            raise TrialFailure(
                f"needs about {_bytes(needed)} to train at batch {batch_size} (estimate from its "
                f"spec), over max_memory_share = {share:g} of the {_bytes(available)} available on "
                f"{self.data.device}")

    @staticmethod
    def _stop(trial: optuna.Trial, reason: str, *, epochs: int, joules: float) -> NoReturn:
        """End a trial costs first, early stopping or the learned rule ruled out: PRUNED, never on
        a front (docs/energy.md)."""
        record.write(trial, stop_reason=reason, epochs_trained=epochs, train_energy_j=joules)
        raise optuna.TrialPruned(reason)

    def _enters_front_within_spread(self, trial: optuna.Trial, measured: dict[str, float]) -> bool:
        """Whether the trained trial would enter the study's front only by a margin within its
        spread (``trial.front_entry``), where ``[measure] remeasure_windows`` allows measuring
        it again."""
        if self.config.measure.remeasure_windows == 0:
            return False
        return self.front.within_spread(trial, *objective_values(measured, self.config.study.objectives))

    def _measure_again(self, trial: optuna.Trial, architecture: ArchitectureCosts) -> ArchitectureCosts:
        """Measure the trained model again, pooled with its first windows, and record the costs.

        The ``[constraints]`` limits keep the verdict of the first measurement: they decided,
        before training, that the network was worth training (and Optuna keeps a constraint's
        first value)."""
        self.on_stage(trial.number, "measuring again")
        again = measure_again(architecture, config=self.config, meter=self.meter, idle_watts=self.idle_watts)
        record.write(trial, **again.fields)
        return dataclasses.replace(again, violations=architecture.violations)

    def _trained_violations(self, measured: dict[str, float]) -> dict[str, float]:
        """``learned`` and the user's floor (``[constraints] min_accuracy``), once trained."""
        return {LEARNED: ChanceLevel.of(self.data).learned_threshold - measured[METRICS[ACCURACY].field],
                **limit_violations(measured, dataclasses.asdict(self.config.constraints), names=(ACCURACY,))}

    def _set_constraints(self, trial: optuna.Trial, measured: dict[str, float],
                         cost_violations: dict[str, float]) -> None:
        """Optuna's constraint API, mirrored in the trial record where optuna-dashboard shows it:
        :meth:`_trained_violations`; the costs' were set before training."""
        trained = self._trained_violations(measured)
        for name, violation in trained.items():
            trial.set_constraint(name, violation)
        violations = trained | cost_violations
        record.write(trial, constraints=violations, feasible=all(v <= 0 for v in violations.values()))
