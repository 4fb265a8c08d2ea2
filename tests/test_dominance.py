"""Dominance beyond the noise (``optuna_energy.samplers._dominance``): its properties over
generated points (Hypothesis), and what it does to a front.

Values with a relative spread are equal within ``max(spread_a, spread_b) * max(|a|, |b|)``.
Without spreads the rule is Optuna's; with them it stays irreflexive and asymmetric, never
contradicts exact dominance, and the front no longer depends on which measuring window was
lucky.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from optuna_energy.metrics import METRICS
from optuna_energy.samplers import SPREAD_SUFFIX, _dominance, dominates, noisy_non_domination_rank, noisy_pareto_mask
from optuna_energy.samplers._dominance import _beyond_noise, domination_matrix
from optuna_energy.samplers._optuna_compat import is_pareto_front, non_domination_rank

# Few distinct values, so that ties, near-ties and exact dominance all come up often.
VALUES = st.sampled_from([-2.0, -0.5, 0.0, 0.3, 1.0, 1.05, 1.2, 2.0, 10.0, np.inf])
SPREADS = st.sampled_from([0.0, np.nan, 0.01, 0.1, 0.3, 1.5])


@st.composite
def point_sets(draw: st.DrawFn, *, min_points: int = 1, max_points: int = 30,
               exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Losses and their spreads: ``n`` points of ``m`` objectives."""
    n = draw(st.integers(min_points, max_points))
    m = draw(st.integers(1, 4))
    losses = draw(hnp.arrays(float, (n, m), elements=VALUES))
    spreads = np.zeros((n, m)) if exact else draw(hnp.arrays(float, (n, m), elements=SPREADS))
    return losses, spreads


def exactly_dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """Optuna's Pareto dominance: ``b`` is off the front of the pair and differs from ``a``."""
    return not is_pareto_front(np.array([a, b]))[1]


@given(point_sets(min_points=2, max_points=2, exact=True), st.booleans())
def test_without_spread_the_rule_is_optunas_dominance(points, unknown: bool) -> None:
    (a, b), spreads = points
    spreads = spreads + (np.nan if unknown else 0.0)  # an unknown spread counts as none
    assert dominates(a, b, spread_a=spreads[0], spread_b=spreads[1]) == exactly_dominates(a, b)


@given(point_sets(min_points=2, max_points=2))
def test_the_rule_is_irreflexive_asymmetric_and_never_contradicts_exact_dominance(points) -> None:
    (a, b), (spread_a, spread_b) = points
    assert not dominates(a, a, spread_a=spread_a, spread_b=spread_a)
    if dominates(a, b, spread_a=spread_a, spread_b=spread_b):
        assert not dominates(b, a, spread_a=spread_b, spread_b=spread_a)
        assert not exactly_dominates(b, a)


@given(point_sets(min_points=2, max_points=2), st.sampled_from([0.5, 3.0, 1e6]))
def test_the_rule_does_not_depend_on_the_unit(points, factor: float) -> None:
    (a, b), (spread_a, spread_b) = points
    assert (dominates(a, b, spread_a=spread_a, spread_b=spread_b)
            == dominates(a * factor, b * factor, spread_a=spread_a, spread_b=spread_b))


@given(point_sets(min_points=2, max_points=2), st.sampled_from([0.01, 0.2, 2.0]))
def test_a_larger_spread_only_merges_values(points, widening: float) -> None:
    # The per-objective comparison can only turn "better" or "worse" into "equal" as the spread
    # grows, never the other way. (Dominance itself is not monotone in the spread: a trial that
    # was on the front only by a cost within the noise becomes dominated on an exact objective.)
    (a, b), (spread_a, spread_b) = points
    worse, better = _beyond_noise(a, b, spread_a, spread_b)
    wider_worse, wider_better = _beyond_noise(a, b, np.nan_to_num(spread_a) + widening, spread_b)
    assert not np.any(wider_worse & ~worse) and not np.any(wider_better & ~better)


@settings(max_examples=300)
@given(point_sets())
def test_the_front_is_what_no_point_dominates_and_the_first_rank(points) -> None:
    losses, spreads = points
    dominated = domination_matrix(losses, spreads).any(axis=0)
    expected = ~dominated if not dominated.all() else is_pareto_front(losses)
    mask = noisy_pareto_mask(losses, spreads)
    assert mask.tolist() == expected.tolist()
    assert (noisy_non_domination_rank(losses, spreads) == 0).tolist() == mask.tolist()


@given(point_sets(exact=True), st.booleans())
def test_without_spread_ranks_and_front_are_optunas(points, unknown: bool) -> None:
    losses, spreads = points
    spreads = spreads + (np.nan if unknown else 0.0)
    assert noisy_non_domination_rank(losses, spreads).tolist() == non_domination_rank(losses).tolist()
    assert noisy_pareto_mask(losses, spreads).tolist() == is_pareto_front(losses).tolist()


@settings(max_examples=300)
@given(point_sets(), st.data())
def test_every_front_is_non_empty_and_no_point_dominates_another_of_its_front(points, data) -> None:
    losses, spreads = points
    penalty = data.draw(hnp.arrays(float, len(losses), elements=st.sampled_from([0.0, 0.0, 1.0, 2.5])))
    ranks = noisy_non_domination_rank(losses, spreads, penalty=penalty)
    assert sorted(set(ranks.tolist())) == list(range(ranks.max() + 1))
    feasible = penalty <= 0
    assert np.all(ranks[feasible, None] < ranks[None, ~feasible])  # feasible first, as Optuna
    dominance = domination_matrix(losses, spreads) & feasible[:, None] & feasible[None, :]
    reach = dominance.copy()
    for k in range(len(losses)):  # transitive closure: does the relation cycle?
        reach |= reach[:, k, None] & reach[None, k, :]
    if not reach.diagonal().any():  # without a cycle, a dominated point ranks after its dominator
        assert np.all(ranks[:, None] < ranks[None, :], where=dominance)


def test_a_cycle_of_three_noisy_objectives_still_has_a_front() -> None:
    # Each beats the next beyond the noise on one objective and ties within it on the others.
    losses = np.array([[1.0, 1.08, 1.15], [1.15, 1.0, 1.08], [1.08, 1.15, 1.0]])
    spreads = np.full_like(losses, 0.1)
    assert domination_matrix(losses, spreads).sum(axis=0).tolist() == [1, 1, 1]
    assert noisy_pareto_mask(losses, spreads).tolist() == [True, True, True]  # the exact front
    assert noisy_non_domination_rank(losses, spreads).tolist() == [0, 0, 0]


def test_a_trial_within_the_noise_of_a_front_member_neither_enters_nor_pushes_it_out() -> None:
    # (error, inference time): the member is more accurate; the newcomer is faster only within
    # the 20 % the member's windows spread over. Exactly, both are on the front; beyond the
    # noise the member dominates the newcomer, whichever window was lucky.
    member, spread = np.array([0.10, 1.00]), np.array([0.0, 0.2])
    for newcomer_time in (0.95, 1.00, 1.05, 1.15):
        losses = np.array([member, [0.15, newcomer_time]])
        spreads = np.array([spread, [0.0, 0.1]])
        assert noisy_pareto_mask(losses, spreads).tolist() == [True, False]
    assert is_pareto_front(np.array([member, [0.15, 0.95]])).tolist() == [True, True]
    # As accurate, slower or faster within the noise: equal, both stay.
    for other_time in (0.85, 1.15):
        losses = np.array([member, [0.10, other_time]])
        assert noisy_pareto_mask(losses, np.array([spread, spread])).tolist() == [True, True]
    # Faster beyond the noise: it enters the front beside the member.
    losses = np.array([member, [0.15, 0.5]])
    assert noisy_pareto_mask(losses, np.array([spread, spread])).tolist() == [True, True]


def test_large_sets_compared_in_blocks_give_the_same_front(monkeypatch) -> None:
    monkeypatch.setattr(_dominance, "_BLOCK_CELLS", 5000)  # blocks of a few points
    rng = np.random.default_rng(3)
    n = 1000
    accuracy_error = rng.choice(np.linspace(0.05, 0.9, 40), size=n)  # many exact ties
    losses = np.column_stack([accuracy_error, rng.lognormal(0, 1, n), rng.integers(1, 100, n)])
    spreads = np.column_stack([np.zeros(n), rng.uniform(0, 0.3, n), np.zeros(n)])
    spreads[rng.random(n) < 0.2, 1] = np.nan
    dominated = domination_matrix(losses, spreads).any(axis=0)
    assert noisy_pareto_mask(losses, spreads).tolist() == (~dominated).tolist()


def test_the_sampler_reads_spreads_where_the_metric_registry_writes_them() -> None:
    for entry in METRICS.values():
        if entry.spread_field is not None:
            assert entry.spread_field == f"{entry.name}{SPREAD_SUFFIX}"
