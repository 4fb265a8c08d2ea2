"""Reading a study's trials incrementally: what is new or changed since the last read, never the
whole history again.

A trial is read while it is unfinished (running, queued) and once more when it has finished,
and then never again: finished trials do not change. So a reader that keeps its place costs each
read the trials created or still running since its last one, whatever the size of the study.
This is the position Optuna's own trial cache keeps, without the cache's copy of every trial.

Whatever must survive a worker's restart (a sampler's population, the budget's ledger) stores
its :class:`FeedPosition` with it, so that a newcomer reads only the trials after it.

It sits beside the sampler, which imports nothing else of the package; the rest of the package
reaches it as :mod:`optuna_energy.store.trial_feed`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from optuna_energy.samplers._optuna_compat import trial_id, trials_after


@dataclasses.dataclass(frozen=True)
class FeedPosition:
    """Where a reader stands: every trial with a storage id up to ``after_id`` was read finished,
    except those in ``unfinished_ids``, which were read unfinished and are read again."""

    after_id: int = -1
    unfinished_ids: frozenset[int] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {"after_id": self.after_id, "unfinished_ids": sorted(self.unfinished_ids)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeedPosition:
        """The position :meth:`to_json` wrote.

        Raises:
            ValueError: ``data`` is not such a position.
        """
        try:
            return cls(after_id=int(data["after_id"]),
                       unfinished_ids=frozenset(int(i) for i in data["unfinished_ids"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a trial feed position: {data!r}") from error


class TrialFeed:
    """A study's trials since the last read: each finished trial once, each unfinished one at
    every read until it finishes (by trial number).

    Plain data (no study inside), so it pickles with whatever keeps it.

    Example:
        >>> feed = TrialFeed()
        >>> first = feed.read(study)        # every trial so far
        >>> later = feed.read(study)        # only those created, or still running, since
        >>> finished = [t for t in later if t.state.is_finished()]
    """

    def __init__(self, position: FeedPosition | None = None) -> None:
        self.position = position or FeedPosition()

    def read(self, study: optuna.Study) -> list[FrozenTrial]:
        """The trials created since the last read, and those unfinished at it, by number."""
        position = self.position
        trials = trials_after(study, after_id=position.after_id, also_ids=position.unfinished_ids)
        finished_ids = [trial_id(t) for t in trials if t.state.is_finished()]
        after_id = max([position.after_id, *finished_ids])
        # Like Optuna's cache, stand after the last *finished* trial: a trial created later but
        # committed earlier than a neighbour is still ahead of the position, never skipped.
        unfinished = {trial_id(t) for t in trials if not t.state.is_finished()}
        self.position = FeedPosition(after_id=after_id, unfinished_ids=frozenset(
            i for i in unfinished if i <= after_id))
        return sorted(trials, key=lambda t: t.number)
