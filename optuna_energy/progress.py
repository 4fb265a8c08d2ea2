"""A progress bar over a study's trial budget, as an Optuna callback."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm


class TrialProgress:
    """Counts finished trials towards ``total`` and shows the best accuracy and front size so far."""

    def __init__(self, study: optuna.Study, *, total: int | None, enabled: bool = True) -> None:
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                             TrialState.FAIL)))
        self._bar = tqdm(total=total, initial=min(done, total or done), unit="trial",
                         desc=study.study_name, disable=not enabled, dynamic_ncols=True)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        postfix = {}
        if "accuracy" in trial.user_attrs:
            postfix["acc"] = f"{trial.user_attrs['accuracy']:.3f}"
        if trial.state == TrialState.FAIL:
            postfix["failed"] = trial.user_attrs.get("failure_reason", "error")[:40]
        postfix["pareto"] = len(study.best_trials)
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(1)

    def __enter__(self) -> TrialProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bar.close()
