"""An exact trial budget for a study shared by any number of processes.

A study's ``n_trials`` counts the trials of the whole study, not of one process. Checking the
count before ``ask`` is not enough: two workers can both see 23 of 24 and both start a trial.
So every trial is ranked after it is created: a trial whose rank among the counted trials
(ordered by trial number) exceeds the budget ends at once as PRUNED with the user attribute
``over_budget`` and is not counted. The set of counted trials before a given trial only ever
shrinks (a trial whose worker died is failed and re-queued), so a rank checked once stays within
the budget and the study never runs more counted trials than its budget.

A worker stops when the finished trials reach the budget. While the budget is only reached
counting trials that still run elsewhere, a worker with a heartbeat waits: if one of those
trials' worker dies, its re-queued copy must still be run by someone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from optuna_energy.objective import FAILURE_REASON
from optuna_energy.storage import StorageError, database_errors, mask_url

OVER_BUDGET = "over_budget"
"""User attribute of a trial that was created after the budget was used and never ran."""
WORKER = "worker"
"""User attribute naming the process that ran a trial, ``host:pid``."""

_POLL_SECONDS = 5.0
"""Longest pause between looks at trials running elsewhere, while waiting for them to end."""
_logger = logging.getLogger(__name__)

Callback = Callable[[optuna.Study, FrozenTrial], None]


def counts(trial: FrozenTrial) -> bool:
    """Whether a trial uses up budget: finished, deliberately failed, running or queued.

    A trial failed by the heartbeat (its worker died) does not count: it is retried.
    """
    if OVER_BUDGET in trial.user_attrs:
        return False
    if trial.state == TrialState.FAIL:
        return FAILURE_REASON in trial.user_attrs
    return True


@dataclasses.dataclass(frozen=True)
class Tally:
    """Budget-counted trials of a study by state: finished, running, and waiting in the queue."""

    finished: int
    running: int
    waiting: int

    @property
    def counted(self) -> int:
        return self.finished + self.running + self.waiting


def tally(study: optuna.Study) -> Tally:
    trials = [trial for trial in study.get_trials(deepcopy=False) if counts(trial)]
    running = sum(trial.state == TrialState.RUNNING for trial in trials)
    waiting = sum(trial.state == TrialState.WAITING for trial in trials)
    return Tally(finished=len(trials) - running - waiting, running=running, waiting=waiting)


class StopRequest:
    """A stop asked for by a signal, delivered only where it leaves the study clean.

    Raised inside the objective, ``KeyboardInterrupt`` fails the running trial and queues its
    copy; raised while Optuna creates or tells a trial, it would leave that trial RUNNING. So a
    stop that arrives outside the objective is held until the loop or the next objective starts.
    """

    def __init__(self) -> None:
        self.requested = False
        self.in_objective = False

    def request(self) -> None:
        self.requested = True
        if self.in_objective:
            raise KeyboardInterrupt

    def deliver(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def clear(self) -> None:
        self.requested = False


STOP = StopRequest()
"""This process's stop request; signal handlers call ``STOP.request()``."""


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Ctrl-C and SIGTERM (from a launcher, Slurm, systemd) as a ``KeyboardInterrupt`` that keeps
    the study clean: raised at once inside the objective, held while Optuna creates or tells a
    trial (``StopRequest``). Later signals are ignored so that the stop in progress (failing and
    re-queueing the running trial) is not itself interrupted. Outside the main thread, where
    Python cannot install signal handlers, nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        STOP.request()

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        STOP.clear()  # delivered or moot: a later loop in this process starts clean


class _WithinBudget:
    """Wraps an objective: a trial ranked past the budget is pruned before it runs."""

    def __init__(self, objective: Callable[[optuna.Trial], Sequence[float]], n_trials: int) -> None:
        self.objective = objective
        self.n_trials = n_trials
        self.trial_id: int | None = None  # the trial in flight, to clean up after an outage

    def __call__(self, trial: optuna.Trial) -> Sequence[float]:
        self.trial_id = trial._trial_id
        STOP.in_objective = True
        try:
            STOP.deliver()
            earlier = sum(1 for other in trial.study.get_trials(deepcopy=False)
                          if other.number < trial.number and counts(other))
            if earlier >= self.n_trials:
                trial.set_user_attr(OVER_BUDGET, True)
                raise optuna.TrialPruned(f"the study's budget of {self.n_trials} trials is used")
            trial.set_user_attr(WORKER, f"{socket.gethostname()}:{os.getpid()}")
            return self.objective(trial)
        finally:
            STOP.in_objective = False


def optimize_within_budget(study: optuna.Study, objective: Callable[[optuna.Trial], Sequence[float]],
                           *, n_trials: int, timeout: float | None = None,
                           callbacks: Sequence[Callback] = (),
                           catch: tuple[type[Exception], ...] = (),
                           reconnect_timeout: float = 600.0) -> None:
    """Run trials until the study as a whole has ``n_trials`` finished ones.

    Safe to call from many processes on one study. A database that stops answering is retried
    with back-off for ``reconnect_timeout`` seconds; the trial in flight is lost (marked failed,
    so another takes its place). Ctrl-C or SIGTERM (``deferred_interrupts``) ends the running
    trial as FAIL, queues a copy with the same parameters for later and raises
    ``KeyboardInterrupt``.

    Raises:
        StorageError: The database stayed unreachable for ``reconnect_timeout`` seconds.
    """
    with deferred_interrupts():
        _optimize(study, objective, n_trials=n_trials, timeout=timeout, callbacks=callbacks,
                  catch=catch, reconnect_timeout=reconnect_timeout)


def _optimize(study: optuna.Study, objective: Callable[[optuna.Trial], Sequence[float]],
              *, n_trials: int, timeout: float | None, callbacks: Sequence[Callback],
              catch: tuple[type[Exception], ...], reconnect_timeout: float) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    guarded = _WithinBudget(objective, n_trials)
    outage = _Outage(reconnect_timeout)
    abandoned: int | None = None
    while deadline is None or time.monotonic() < deadline:
        try:
            STOP.deliver()
            if abandoned is not None:
                _fail_abandoned(study, abandoned)
                abandoned = None
            if not _needs_trial(study, n_trials, deadline):
                return
            guarded.trial_id = None
            study.optimize(guarded, n_trials=1, callbacks=list(callbacks), catch=catch)
        except KeyboardInterrupt:
            _requeue_interrupted(study, guarded.trial_id)
            raise
        except ValueError:  # "Cannot tell a FAIL trial": was this one declared dead meanwhile?
            if not _failed_elsewhere(study, guarded.trial_id):
                raise
        except Exception as error:
            lost = _lost_database(error)
            if lost is None:
                raise
            abandoned = guarded.trial_id if abandoned is None else abandoned
            guarded.trial_id = None
            outage.wait(lost)
        else:
            outage.reset()


def _lost_database(error: BaseException) -> BaseException | None:
    """The database error behind ``error``, if any.

    Optuna sometimes raises a different error while handling a lost connection (an unbound
    local in its trial clean-up), so the whole chain of causes is searched.
    """
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, database_errors()):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _needs_trial(study: optuna.Study, n_trials: int, deadline: float | None) -> bool:
    """Whether to start a trial now; waits while only trials running elsewhere fill the budget."""
    heartbeat = is_heartbeat_enabled(study._storage)
    while deadline is None or time.monotonic() < deadline:
        STOP.deliver()
        counted = tally(study)
        if counted.finished >= n_trials:
            return False
        if counted.counted < n_trials or counted.waiting:  # ask() runs queued trials first
            return True
        if not heartbeat:  # nothing could tell us that another worker died
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_stale_trials(study)
        _fail_orphans(study)
        if tally(study) == counted:
            time.sleep(min(study._storage.get_heartbeat_interval(), _POLL_SECONDS))
    return False


def _fail_orphans(study: optuna.Study) -> None:
    """Fail and retry running trials that never reached their objective.

    A connection lost between creating a trial and its first heartbeat leaves a RUNNING trial
    that Optuna's heartbeat check skips (it has no heartbeat at all). Such a trial also lacks
    the ``worker`` attribute every started trial gets at once; after the grace period (by the
    creating machine's clock) it is treated like a trial whose worker died.
    """
    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    grace = getattr(backend, "grace_period", None) or 2 * storage.get_heartbeat_interval()
    retry = storage.get_heartbeat_stale_trial_callback()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = trial.datetime_start
        if WORKER in trial.user_attrs or started is None:
            continue
        if (datetime.datetime.now(started.tzinfo) - started).total_seconds() < grace:
            continue
        try:
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        _logger.warning("trial %d never started its objective (connection lost?); failed it",
                        trial.number)
        if retry is not None:
            retry(study, storage.get_trial(trial._trial_id))


def _requeue_interrupted(study: optuna.Study, trial_id: int | None) -> None:
    """Queue a copy of a trial stopped by an interrupt, as the heartbeat retry would."""
    if trial_id is None:
        return
    trial = study._storage.get_trial(trial_id)
    if trial.state == TrialState.FAIL and not counts(trial) and OVER_BUDGET not in trial.user_attrs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            RetryHeartbeatStaleTrialCallback()(study, trial)


def _failed_elsewhere(study: optuna.Study, trial_id: int | None) -> bool:
    """Whether another worker's heartbeat check failed this process's (live) trial."""
    if trial_id is None:
        return False
    trial = study._storage.get_trial(trial_id)
    if trial.state != TrialState.FAIL or counts(trial):
        return False
    _logger.warning("trial %d was failed by another worker (no heartbeat for grace_period "
                    "seconds; is this machine overloaded?); its result is dropped and its retry "
                    "will run", trial.number)
    return True


def _fail_abandoned(study: optuna.Study, trial_id: int) -> None:
    """Fail this process's trial that an outage left RUNNING, so the budget does not wait on it."""
    try:
        if study._storage.get_trial(trial_id).state == TrialState.RUNNING:
            study._storage.set_trial_state_values(trial_id, TrialState.FAIL)
            _logger.warning("trial id %d was lost with the database connection; marked failed",
                            trial_id)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # another worker's heartbeat check failed it first


class _Outage:
    """Back-off between attempts to reach a database that stopped answering."""

    def __init__(self, limit_seconds: float) -> None:
        self.limit_seconds = limit_seconds
        self.since: float | None = None
        self.pause = 1.0

    def wait(self, error: BaseException) -> None:
        now = time.monotonic()
        self.since = self.since if self.since is not None else now
        if now - self.since >= self.limit_seconds:
            raise StorageError(f"the database did not answer for {self.limit_seconds:.0f} s; "
                               f"last error: {_one_line(error)}")
        _logger.warning("database unavailable, retrying in %.0f s: %s", self.pause, _one_line(error))
        time.sleep(self.pause)
        self.pause = min(self.pause * 2, 30.0)

    def reset(self) -> None:
        self.since, self.pause = None, 1.0


def _one_line(error: BaseException) -> str:
    return mask_url(" ".join(str(getattr(error, "orig", None) or error).split()))[:300]
