"""A progress bar over a study's trial budget, as an Optuna callback, and the logging convention
that goes with it: where optuna-energy shows its own progress bar, Optuna's INFO lines ("Using an
existing study", "Trial N finished") are left out, as the CLI always did."""

from __future__ import annotations

import contextlib
import logging
import textwrap
import threading
import time
from collections.abc import Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from optuna_energy.host.terminal import columns
from optuna_energy.store.ledger import StudyLedger
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.training_budget import TrainingBudget

STAGE_REFRESH_SECONDS = 1.0
"""How often the running trial's stage and its elapsed time are redrawn."""


class TrialProgress:
    """Shows the study's finished trials (every worker's, as the budget counts them) towards
    ``total``, with the last accuracy, the size of the Pareto front and, with a training budget,
    the epochs and joules spent of it; and what the running trial does now and for how long
    (:meth:`stage`, the objective's ``on_stage``).

    All of it comes from ``ledger`` (by default the study's saved one), read up to date after
    each trial: only the trials since its last look, whatever the size of the study. While the
    bar shows, log lines are written above it (``tqdm.write``), never glued to it."""

    def __init__(self, study: optuna.Study, *, total: int | None, enabled: bool = True,
                 training: TrainingBudget | None = None, ledger: StudyLedger | None = None) -> None:
        self._training = training
        self._ledger = ledger or StudyLedger.of(study)
        done = self._ledger.tally().finished
        self._bar = tqdm(total=total, initial=min(done, total or done), unit="trial",
                         desc=study.study_name, disable=not enabled, ncols=columns())
        self._postfix: dict[str, str | int] = {}
        self._now: tuple[str, str, float] | None = None
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="trial-progress", daemon=True)
        self._logs = contextlib.ExitStack()

    def stage(self, number: int, stage: str) -> None:
        """Trial ``number`` now does ``stage`` (``measuring``, ``training epoch 3/6``...): shown
        at the end of the bar with its elapsed time, redrawn every :data:`STAGE_REFRESH_SECONDS`."""
        self._now = (f"trial {number}", stage, time.monotonic())
        self._draw()

    def _draw(self) -> None:
        postfix, now = dict(self._postfix), self._now
        if now is not None:  # first: a bar cut to the terminal's width keeps what moves
            trial, stage, since = now
            postfix = {trial: f"{stage} ({_duration(time.monotonic() - since)})", **postfix}
        self._bar.set_postfix(postfix)

    def _tick(self) -> None:
        while not self._stop.wait(STAGE_REFRESH_SECONDS):
            if self._now is not None:
                self._draw()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._now = None
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
        self._postfix = postfix
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(self._ledger.tally().finished - self._bar.n)

    def __enter__(self) -> TrialProgress:
        if not self._bar.disable:
            self._logs.enter_context(logging_redirect_tqdm(
                [logging.getLogger(), optuna.logging.get_logger("optuna")]))
            self._ticker.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the bar, so what follows (a table, an interrupted run's line) starts on a line
        of its own."""
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        self._bar.close()
        self._logs.close()


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


def _duration(seconds: float) -> str:
    """``42 s``, ``3:05``, ``1:02:03``: a stage's elapsed time, short."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _short(reason: str) -> str:
    """A reason cut at a word to fit the bar: a stop reason whole, a long failure shortened."""
    return textwrap.shorten(reason, width=24, placeholder="…")
