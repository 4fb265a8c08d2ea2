"""Recovering from what kills trials from outside: dead workers, lost connections, interrupts.

A trial whose worker died is failed and re-queued (Optuna's heartbeat, and ``fail_orphans`` for
trials that never got a heartbeat); a trial cut off by a database outage is failed once the
database answers again; an interrupted trial is re-queued as the heartbeat retry would.
"""

from __future__ import annotations

import datetime
import logging
import socket
import time
import warnings

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from optuna_energy.host.processes import process_alive
from optuna_energy.samplers._optuna_compat import (
    heartbeat_age,
    heartbeat_enabled,
    heartbeat_interval,
    stale_trial_callback,
    storage_behind_cache,
    storage_of,
    trial_id,
)
from optuna_energy.store.budget import counts
from optuna_energy.store.record import TrialRecord
from optuna_energy.store.storage import StorageError, database_errors, mask_url, storage_fault

_logger = logging.getLogger(__name__)


def lost_database(error: BaseException) -> BaseException | None:
    """The database error behind ``error``, if any.

    Optuna sometimes raises a different error while handling a lost connection (an unbound
    local in its trial clean-up), so the whole chain of causes is searched.

    Raises:
        StorageError: The database is damaged, full or read-only (``storage_fault``): waiting
            would not help.
    """
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, database_errors()):
            fault = storage_fault(seen)
            if fault is not None:
                raise fault from None
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def grace_period(study: optuna.Study) -> float:
    """Seconds without a heartbeat after which a running trial's worker counts as dead."""
    return (getattr(storage_behind_cache(study), "grace_period", None)
            or 2 * (heartbeat_interval(study) or 0))


def fail_orphans(study: optuna.Study) -> None:
    """Fail and retry running trials that never reached their objective, or never beat.

    A connection lost between creating a trial and its first heartbeat leaves a RUNNING trial
    that Optuna's heartbeat check skips (it has no heartbeat at all). Such a trial also lacks
    the ``worker`` field every started trial records at once; after the grace period (by the
    creating machine's clock) it is treated like a trial whose worker died. So is a started
    trial without any heartbeat, once the grace period is over: its worker ran without one
    (``heartbeat_interval = 0``) and nothing else could ever end it.
    """
    grace = grace_period(study)
    heartbeat = heartbeat_enabled(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = trial.datetime_start
        if started is None:
            continue
        if (datetime.datetime.now(started.tzinfo) - started).total_seconds() < grace:
            continue
        if TrialRecord.of(trial).worker is None:
            _fail_and_retry(study, trial, "never started its objective (connection lost?)")
        elif heartbeat and heartbeat_age(study, trial) is None:
            _fail_and_retry(study, trial, f"has run for over {grace:.0f} s without a heartbeat "
                            "(its worker ran with heartbeat_interval = 0 and stopped?)")


def fail_dead_workers(study: optuna.Study) -> None:
    """Fail and retry running trials whose worker was a process of this machine that is gone
    (killed, crashed): no heartbeat is needed to know that it will never finish them."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = TrialRecord.of(trial).worker
        name, _, pid = (worker or "").rpartition(":")
        if name == host and pid.isdigit() and not process_alive(int(pid)):
            _fail_and_retry(study, trial, f"belonged to worker {worker}, a process of this machine "
                            "that no longer exists (killed?)")


def _fail_and_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial, why: str) -> None:
    """Fail a running trial that can never finish and queue its copy, as the heartbeat would."""
    storage = storage_of(study)
    try:
        storage.set_trial_state_values(trial_id(trial), TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return  # another worker got there first
    _logger.warning("trial %d %s; failed it and queued its retry", trial.number, why)
    retry = stale_trial_callback(study) if heartbeat_enabled(study) else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        (retry or RetryHeartbeatStaleTrialCallback())(study, storage.get_trial(trial_id(trial)))


def requeue_interrupted(study: optuna.Study, stopped_id: int | None) -> None:
    """Queue a copy of a trial stopped by an interrupt, as the heartbeat retry would."""
    if stopped_id is None:
        return
    trial = storage_of(study).get_trial(stopped_id)
    if trial.state == TrialState.FAIL and not counts(trial) and not TrialRecord.of(trial).over_budget:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            RetryHeartbeatStaleTrialCallback()(study, trial)


def failed_elsewhere(study: optuna.Study, live_id: int | None) -> bool:
    """Whether another worker's heartbeat check failed this process's (live) trial."""
    if live_id is None:
        return False
    trial = storage_of(study).get_trial(live_id)
    if trial.state != TrialState.FAIL or counts(trial):
        return False
    _logger.warning("trial %d was failed by another worker (no heartbeat for grace_period "
                    "seconds; is this machine overloaded?); its result is dropped and its retry "
                    "will run", trial.number)
    return True


def fail_abandoned(study: optuna.Study, abandoned_id: int) -> None:
    """Fail this process's trial that an outage left RUNNING, so the budget does not wait on it."""
    storage = storage_of(study)
    try:
        if storage.get_trial(abandoned_id).state == TrialState.RUNNING:
            storage.set_trial_state_values(abandoned_id, TrialState.FAIL)
            _logger.warning("trial id %d was lost with the database connection; marked failed",
                            abandoned_id)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # another worker's heartbeat check failed it first


class Outage:
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
