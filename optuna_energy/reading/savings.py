"""What costs first and early stopping saved: trials stopped per rung, epochs and joules (and
their grams of CO2e, where the study has a carbon intensity).

The comparison is with training every evaluated trial fully. A stopped trial would have trained
``full`` epochs; its joules for them are projected from its own joules per epoch, and for a trial
never trained (over a limit) from the study's median joules per epoch and MAC over the trials
that trained.
"""

from __future__ import annotations

import collections
import dataclasses

import optuna
from optuna.trial import TrialState

from optuna_energy.carbon import energy_text
from optuna_energy.reading.study_trials import StudyTrials, read_study
from optuna_energy.store.record import CONFIG_ATTR, FULL_EPOCHS_ATTR
from optuna_energy.store.training_budget import joules_per_mac_epoch
from optuna_energy.trial.rungs import epochs_text


@dataclasses.dataclass(frozen=True)
class Savings:
    evaluated: int
    """Budget-counted trials that completed or were stopped."""
    stopped: dict[int, int]
    """Epochs trained when stopped (0: over a limit, never trained) -> trials."""
    epochs: int
    epochs_if_full: int
    joules: float
    joules_if_full: float
    carbon_intensity: float | None = None
    """Grams of CO2e per kWh the joules are also shown in; ``None``: joules only."""

    @property
    def saved_epochs(self) -> int:
        return self.epochs_if_full - self.epochs

    @property
    def saved_joules(self) -> float:
        return self.joules_if_full - self.joules


def full_epochs(study: optuna.Study) -> int | None:
    """The epochs of full training the study was configured with (its recorded config, or the
    ``EarlyStopper`` of your own objective), if it recorded them."""
    configured = study.user_attrs.get(CONFIG_ATTR, {}).get("training", {}).get("epochs")
    return configured or study.user_attrs.get(FULL_EPOCHS_ATTR)


def savings(study: optuna.Study | StudyTrials, *, full: int | None = None) -> Savings:
    """Count what the study's evaluated trials trained against training each fully."""
    read = read_study(study)
    full = full or full_epochs(read.study) or 0
    trials = [t for t in read.in_states(TrialState.COMPLETE, TrialState.PRUNED) if read.counts(t)]
    stored = [read.record(t) for t in trials]
    stored = [r for r in stored if r.epochs_trained is not None or r.train_energy_j is not None]
    typical = joules_per_mac_epoch(stored) or 0.0
    stopped: collections.Counter[int] = collections.Counter()
    epochs = joules = joules_full = 0.0
    for r in stored:
        trained = r.epochs_trained if r.epochs_trained is not None else full
        epochs += trained
        joules += r.train_energy_j or 0.0
        if r.stop_reason is not None:
            stopped[trained] += 1
        per_epoch = (r.train_energy_j or 0.0) / trained if trained else typical * (r.macs or 0)
        joules_full += per_epoch * full
    return Savings(evaluated=len(stored), stopped=dict(sorted(stopped.items())), epochs=int(epochs),
                   epochs_if_full=full * len(stored), joules=joules, joules_if_full=joules_full,
                   carbon_intensity=read.carbon_intensity)


def savings_text(found: Savings) -> str:
    """One paragraph for the CLI and the report."""
    intensity = found.carbon_intensity
    if not found.stopped:
        return (f"No trial was stopped early: {found.evaluated} trials trained {found.epochs} "
                f"epochs ({energy_text(found.joules, intensity)}).")
    by_rung = ", ".join(
        f"{count} {'over a limit, never trained' if epochs == 0 else f'after {epochs_text(epochs)}'}"
        for epochs, count in found.stopped.items())
    share = found.saved_epochs / found.epochs_if_full if found.epochs_if_full else 0.0
    return (f"Early stopping stopped {sum(found.stopped.values())} of {found.evaluated} trials "
            f"({by_rung}): they trained {found.epochs} epochs ({energy_text(found.joules, intensity)}) "
            f"where training every one fully would have taken {found.epochs_if_full} "
            f"({energy_text(found.joules_if_full, intensity)}), saving {found.saved_epochs} epochs "
            f"({100 * share:.0f} %) and {energy_text(found.saved_joules, intensity, aside=True)}.")
