"""Reading a study's trials incrementally, for any part of the trial path: each finished trial
once, each unfinished one until it finishes, never the whole history again.

Example, the trials a rung decision compares against, kept up to date at each rung:

    >>> from optuna_energy.store.trial_feed import TrialFeed
    >>> feed = TrialFeed()                      # or TrialFeed(saved_position)
    >>> for trial in feed.read(study):          # first call: every trial; then only what changed
    ...     if trial.state.is_finished():
    ...         peers.add(trial)

The reader lives beside the evolution sampler, which uses it too and imports nothing else of the
package (``optuna_energy.samplers._trial_feed``).
"""

from optuna_energy.samplers._trial_feed import FeedPosition, TrialFeed

__all__ = ["FeedPosition", "TrialFeed"]
