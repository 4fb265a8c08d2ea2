"""A progress bar over a study's trial budget, as an Optuna callback."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from optuna_energy.budget import tally
from optuna_energy.record import TrialRecord
from optuna_energy.training_budget import TrainingBudget


class TrialProgress:
    """Shows the study's finished trials (every worker's, as the budget counts them) towards
    ``total``, with the last accuracy, the size of the Pareto front and, with a training budget,
    the epochs and joules spent of it."""

    def __init__(self, study: optuna.Study, *, total: int | None, enabled: bool = True,
                 training: TrainingBudget | None = None) -> None:
        self._training = training
        done = tally(study).finished
        self._bar = tqdm(total=total, initial=min(done, total or done), unit="trial",
                         desc=study.study_name, disable=not enabled, dynamic_ncols=True)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        postfix: dict[str, str | int] = {}
        record = TrialRecord.of(trial)
        if record.accuracy is not None:
            postfix["acc"] = f"{record.accuracy:.3f}"
        if trial.state == TrialState.FAIL:
            postfix["failed"] = (record.failure_reason or "error")[:40]
        if record.stop_reason is not None:
            postfix["stopped"] = record.stop_reason[:40]
        postfix["pareto"] = len(study.best_trials)
        if self._training is not None:
            postfix |= self._training.describe(study.get_trials(deepcopy=False))
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(tally(study).finished - self._bar.n)

    def __enter__(self) -> TrialProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bar.close()
