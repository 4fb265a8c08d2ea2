"""The run loop: trials until the study as a whole has its budget, from any number of processes.

A worker stops when the finished trials reach the budget. While the budget is only reached
counting trials that still run elsewhere, a worker with a heartbeat waits: if one of those
trials' worker dies, its re-queued copy must still be run by someone.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial

from optuna_energy.host.interrupts import STOP, deferred_interrupts
from optuna_energy.run.recovery import (
    Outage,
    fail_abandoned,
    fail_dead_workers,
    fail_orphans,
    failed_elsewhere,
    grace_period,
    lost_database,
    requeue_interrupted,
)
from optuna_energy.samplers._optuna_compat import heartbeat_age, heartbeat_enabled, heartbeat_interval
from optuna_energy.store.budget import WithinBudget
from optuna_energy.store.ledger import StudyLedger
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.training_budget import TrainingBudget

_logger = logging.getLogger(__name__)

_POLL_SECONDS = 5.0
"""Longest pause between looks at trials running elsewhere, while waiting for them to end."""

Callback = Callable[[optuna.Study, FrozenTrial], None]


def optimize_within_budget(study: optuna.Study, objective: Callable[[optuna.Trial], Sequence[float]],
                           *, n_trials: int, timeout: float | None = None,
                           callbacks: Sequence[Callback] = (),
                           catch: tuple[type[Exception], ...] = (),
                           reconnect_timeout: float = 600.0,
                           training: TrainingBudget | None = None,
                           ledger: StudyLedger | None = None) -> None:
    """Run trials until the study as a whole has ``n_trials`` finished ones, or until
    ``training`` (epochs, joules) leaves no room for another trial's first rung.

    Safe to call from many processes on one study. A database that stops answering is retried
    with back-off for ``reconnect_timeout`` seconds; the trial in flight is lost (marked failed,
    so another takes its place). Ctrl-C or SIGTERM (``deferred_interrupts``) ends the running
    trial as FAIL, queues a copy with the same parameters for later and raises
    ``KeyboardInterrupt``.

    What the budget needs to know is kept in ``ledger`` (by default the study's saved one), which
    reads only the trials since its last look and is saved on the study after each trial, so
    the cost of a trial does not grow with the study.

    Raises:
        StorageError: The database stayed unreachable for ``reconnect_timeout`` seconds.
    """
    with deferred_interrupts(), one_line_trial_failures():
        _optimize(study, objective, n_trials=n_trials, timeout=timeout, callbacks=callbacks,
                  catch=catch, reconnect_timeout=reconnect_timeout, training=training,
                  ledger=ledger or StudyLedger.of(study))


def _optimize(study: optuna.Study, objective: Callable[[optuna.Trial], Sequence[float]],
              *, n_trials: int, timeout: float | None, callbacks: Sequence[Callback],
              catch: tuple[type[Exception], ...], reconnect_timeout: float,
              training: TrainingBudget | None, ledger: StudyLedger) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    guarded = WithinBudget(objective, n_trials, ledger=ledger)
    outage = Outage(reconnect_timeout)
    abandoned: int | None = None
    while deadline is None or time.monotonic() < deadline:
        try:
            STOP.deliver()
            if abandoned is not None:
                fail_abandoned(study, abandoned)
                abandoned = None
            if not _needs_trial(study, ledger, n_trials=n_trials, deadline=deadline, training=training):
                return
            guarded.trial_id = None
            study.optimize(guarded, n_trials=1, callbacks=list(callbacks), catch=catch)
            ledger.refresh(study)
            ledger.save(study)
        except KeyboardInterrupt:
            requeue_interrupted(study, guarded.trial_id)
            raise
        except ValueError:  # "Cannot tell a FAIL trial": was this one declared dead meanwhile?
            if not failed_elsewhere(study, guarded.trial_id):
                raise
        except Exception as error:
            lost = lost_database(error)
            if lost is None:
                raise
            abandoned = guarded.trial_id if abandoned is None else abandoned
            guarded.trial_id = None
            outage.wait(lost)
        else:
            outage.reset()


_OPTUNA_FAILED = re.compile(r"Trial (\d+) failed with parameters: .* because of the following error: "
                            r"(.*)\.$", re.DOTALL)


class _OneLineFailures(logging.Filter):
    """Optuna's warning for a failed trial (every parameter, a traceback, then a second line with
    its values) as one line, ``trial N failed: reason``, and none for a trial a stop signal
    ended; the details stay on the trial."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Trial ") and " failed with value " in message:
            return False  # the line before said it
        found = _OPTUNA_FAILED.match(message)
        if found is None:
            return True
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, KeyboardInterrupt):
            return False  # the command's last line says it, and that the trial is queued again
        if isinstance(error, optuna.exceptions.StorageInternalError) and error.__cause__ is not None:
            error = getattr(error.__cause__, "orig", None) or error.__cause__  # not its "max length" guess
        reason = getattr(error, "reason", None) or (
            (str(error) or type(error).__name__) if error is not None else found.group(2))
        record.msg, record.args = f"trial {found.group(1)} failed: {' '.join(reason.split())}", None
        record.exc_info, record.exc_text = None, None
        return True


@contextlib.contextmanager
def one_line_trial_failures() -> Iterator[None]:
    """Failed trials logged as one line each by Optuna's logger (its verbosity still decides)."""
    logger = logging.getLogger("optuna.study._optimize")
    quiet = _OneLineFailures()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _needs_trial(study: optuna.Study, ledger: StudyLedger, *, n_trials: int,
                 deadline: float | None, training: TrainingBudget | None = None) -> bool:
    """Whether to start a trial now; waits while only trials running elsewhere fill the budget,
    saying for which and for how long."""
    heartbeat = heartbeat_enabled(study)
    said: tuple = ()
    while deadline is None or time.monotonic() < deadline:
        STOP.deliver()
        fail_dead_workers(study)
        ledger.refresh(study)
        counted = ledger.tally()
        if counted.finished >= n_trials:
            return False
        if training is not None and training.exhausted(ledger):
            if not counted.running:  # nothing left that could release training budget
                return False
        elif counted.counted < n_trials or counted.waiting:  # ask() runs queued trials first
            return True
        running = ledger.running
        if not heartbeat:  # nothing could tell us that another worker died
            if running:
                _logger.warning(
                    "stopping with %d of %d trials finished: %s, on a worker this process cannot "
                    "check (heartbeat_interval = 0); run again once it has ended, or set [storage] "
                    "heartbeat_interval so that a dead worker's trials are retried",
                    counted.finished, n_trials, _trials_text(running))
            return False
        waiting_for, message = _waiting_text(study, running)
        if waiting_for != said:  # said again when a trial starts or ends, or its worker falls silent
            _logger.warning("%s", message)
            said = waiting_for
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_stale_trials(study)
        fail_orphans(study)
        ledger.refresh(study)
        if ledger.tally() == counted:
            time.sleep(min(heartbeat_interval(study) or _POLL_SECONDS, _POLL_SECONDS))
    return False


def _trials_text(trials: Sequence[FrozenTrial]) -> str:
    return ", ".join(f"trial {trial.number} runs for worker {TrialRecord.of(trial).worker or 'unknown'}"
                     for trial in trials)


def _waiting_text(study: optuna.Study, running: Sequence[FrozenTrial]) -> tuple[tuple, str]:
    """What a worker waits for while the budget is full counting trials that run elsewhere:
    the trials and whether each one's worker answers, and the line that says so."""
    grace, beat = grace_period(study), heartbeat_interval(study) or 0
    parts, waiting_for = [], []
    for trial in running:
        worker = TrialRecord.of(trial).worker or "unknown"
        age = heartbeat_age(study, trial)
        stopped = age is None or age > 2 * beat
        waiting_for.append((trial.number, stopped))
        if stopped:
            silent = "that never beat" if age is None else f"silent for {age:.0f} s"
            parts.append(f"up to {max(grace - (age or 0.0), 0):.0f} s for trial {trial.number} "
                         f"of worker {worker}, which stopped answering ({silent}); it is then "
                         "retried here")
        else:
            parts.append(f"for trial {trial.number}, running on worker {worker} (retried here "
                         f"if that worker stops answering for {grace:.0f} s)")
    return tuple(waiting_for), ("the budget is full counting trials that run elsewhere: waiting "
                                + "; ".join(parts))
