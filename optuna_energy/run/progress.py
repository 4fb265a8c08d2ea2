"""A progress bar over a study's trial budget, as an Optuna callback, and the logging convention
that goes with it: where optuna-energy shows its own progress bar, Optuna's INFO lines ("Using an
existing study", "Trial N finished") are left out, as the CLI always did."""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from optuna_energy.host.terminal import columns
from optuna_energy.store.ledger import StudyLedger
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.training_budget import TrainingBudget


class TrialProgress:
    """Shows the study's finished trials (every worker's, as the budget counts them) towards
    ``total``, with the last accuracy, the size of the Pareto front and, with a training budget,
    the epochs and joules spent of it.

    All of it comes from ``ledger`` (by default the study's saved one), read up to date after
    each trial: only the trials since its last look, whatever the size of the study."""

    def __init__(self, study: optuna.Study, *, total: int | None, enabled: bool = True,
                 training: TrainingBudget | None = None, ledger: StudyLedger | None = None) -> None:
        self._training = training
        self._ledger = ledger or StudyLedger.of(study)
        done = self._ledger.tally().finished
        self._bar = tqdm(total=total, initial=min(done, total or done), unit="trial",
                         desc=study.study_name, disable=not enabled, ncols=columns())

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        postfix: dict[str, str | int] = {}
        record = TrialRecord.of(trial)
        if record.accuracy is not None:
            postfix["acc"] = f"{record.accuracy:.3f}"
        if trial.state == TrialState.FAIL:
            postfix["failed"] = _short(record.failure_reason or "error")
        if record.stop_reason is not None:
            postfix["stopped"] = _short(record.stop_reason)
        self._ledger.refresh(study)
        postfix["pareto"] = self._ledger.pareto_front_size
        if self._training is not None:
            postfix |= self._training.describe(self._ledger)
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(self._ledger.tally().finished - self._bar.n)

    def __enter__(self) -> TrialProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bar.close()


@contextlib.contextmanager
def quiet_optuna(enabled: bool = True) -> Iterator[None]:
    """Optuna's verbosity lowered from INFO (its default) to WARNING while a progress bar shows.

    A verbosity the user chose other than INFO (``optuna.logging.set_verbosity``) is kept: DEBUG
    for every detail, WARNING or less for quiet. Restored on exit.
    """
    before = optuna.logging.get_verbosity()
    if not enabled or before != optuna.logging.INFO:
        yield
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _short(reason: str) -> str:
    """A reason cut at a word to fit the bar: a stop reason whole, a long failure shortened."""
    return textwrap.shorten(reason, width=24, placeholder="…")
