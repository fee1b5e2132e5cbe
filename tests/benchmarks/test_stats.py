"""Statistics on synthetic data with known answers, and against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from llm_trainer.benchmarks.stats import (
    Interval,
    Resampler,
    StratifiedBootstrap,
    bootstrap_ci,
    cohens_dz,
    holm,
    noise_floor,
    paired_compare,
    pooled_noise_floor,
    sign_flip_p_value,
    tie_ranks,
)

Z = 1.959963984540054


def test_bootstrap_interval_covers_a_known_mean_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(1)
    p, n, trials = 0.3, 200, 300
    hits = 0
    for trial in range(trials):
        ci = bootstrap_ci(rng.random(n) < p, n_resamples=1000, seed=trial)
        hits += ci.low <= p <= ci.high
    assert 0.90 <= hits / trials <= 0.985, hits / trials


def test_interval_of_a_known_difference_has_the_right_centre_and_width() -> None:
    """Two independent Bernoulli agents, p = 0.7 and 0.5, on 4,000 paired episodes: the
    difference is 0.2 and its standard error sqrt((0.21 + 0.25) / n)."""
    rng = np.random.default_rng(2)
    n = 4000
    a, b = rng.random(n) < 0.7, rng.random(n) < 0.5
    result = paired_compare(a, b, seed=0)
    assert result.difference.low < 0.2 < result.difference.high
    expected_half_width = Z * math.sqrt((0.7 * 0.3 + 0.5 * 0.5) / n)
    assert result.difference.half_width == pytest.approx(expected_half_width, rel=0.1)
    assert result.p_value < 1e-6
    assert result.effect_size == pytest.approx(0.2 / math.sqrt(0.46), rel=0.1)


def test_interval_of_a_difference_covers_the_true_difference_about_95_percent() -> None:
    rng = np.random.default_rng(3)
    trials, hits = 200, 0
    for trial in range(trials):
        a = rng.random(300) < 0.6
        b = rng.random(300) < 0.45
        ci = paired_compare(a, b, n_resamples=1000, seed=trial).difference
        hits += ci.low <= 0.15 <= ci.high
    assert 0.90 <= hits / trials <= 0.99, hits / trials


def test_stratified_bootstrap_removes_between_cell_variance_as_theory_says() -> None:
    """Two cells of 100 episodes with success rates 0.9 and 0.1: the overall mean is 0.5 with
    standard error sqrt(sum w^2 p (1 - p) / n_cell) = 0.0212, not sqrt(0.25 / 200) = 0.0354."""
    values = np.r_[np.ones(90), np.zeros(10), np.ones(10), np.zeros(90)]
    strata = np.repeat([0, 1], 100)
    boot = StratifiedBootstrap(values, strata, n_resamples=4000, seed=0)
    overall = boot.interval()
    assert overall.mean == 0.5
    assert overall.half_width == pytest.approx(Z * math.sqrt(2 * 0.25 * 0.09 / 100), rel=0.1)
    assert boot.interval(0, [0]).mean == pytest.approx(0.9)
    assert boot.interval(0, [1]).half_width == pytest.approx(Z * math.sqrt(0.09 / 100), rel=0.12)
    unstratified = bootstrap_ci(values, n_resamples=4000)
    assert unstratified.half_width == pytest.approx(Z * math.sqrt(0.25 / 200), rel=0.1)


def test_bootstrap_matches_scipy_percentile_interval() -> None:
    rng = np.random.default_rng(4)
    data = rng.exponential(size=400)
    ours = bootstrap_ci(data, n_resamples=5000, seed=1)
    theirs = scipy.stats.bootstrap(
        (data,), np.mean, n_resamples=5000, method="percentile", random_state=1
    ).confidence_interval
    assert ours.low == pytest.approx(theirs.low, abs=0.015)
    assert ours.high == pytest.approx(theirs.high, abs=0.015)


def test_bootstrap_is_reproducible_and_leaves_the_global_rng_alone() -> None:
    state = np.random.get_state()[1].copy()
    data = np.random.default_rng(5).random(100)
    assert bootstrap_ci(data, seed=3) == bootstrap_ci(data, seed=3)
    assert bootstrap_ci(data, seed=3) != bootstrap_ci(data, seed=4)
    assert np.array_equal(np.random.get_state()[1], state)
    assert bootstrap_ci(np.full(10, 0.25)) == Interval(0.25, 0.25, 0.25)


def test_a_shared_resampler_gives_each_entry_the_same_interval_as_its_own_bootstrap() -> None:
    rng = np.random.default_rng(6)
    strata = np.repeat(np.arange(4), 50)
    a, b = rng.random(200) < 0.5, rng.random(200) < 0.8
    shared = Resampler(strata, seed=9)
    assert (
        StratifiedBootstrap(a, resampler=shared).interval()
        == StratifiedBootstrap(a, strata, seed=9).interval()
    )
    both = StratifiedBootstrap(np.c_[a, b], resampler=shared)
    assert both.interval(1) == StratifiedBootstrap(b, resampler=shared).interval()


def test_paired_test_detects_a_real_difference_with_high_power() -> None:
    rng = np.random.default_rng(7)
    trials = 100
    rejections = sum(
        sign_flip_p_value((rng.random(500) < 0.6).astype(float) - (rng.random(500) < 0.5)) < 0.05
        for _ in range(trials)
    )
    assert rejections / trials >= 0.8


@pytest.mark.parametrize("kind", ["binary", "continuous"])
def test_paired_test_false_positive_rate_on_identical_agents_is_at_most_alpha(kind: str) -> None:
    """Two identical (stochastic) agents on the same episodes: p < 0.05 about 5% of the time
    (the exact binary test is a little conservative)."""
    rng = np.random.default_rng(8)
    trials, alpha = (1000, 0.05) if kind == "binary" else (300, 0.05)
    rejections = 0
    for _ in range(trials):
        if kind == "binary":
            d = (rng.random(200) < 0.5).astype(float) - (rng.random(200) < 0.5)
            p = sign_flip_p_value(d)
        else:
            d = rng.normal(size=60) - rng.normal(size=60)
            p = sign_flip_p_value(d, n_resamples=999, rng=rng)
        rejections += p < alpha
    rate = rejections / trials
    assert 0.01 <= rate <= 0.10, rate


def test_identical_agents_are_never_flagged() -> None:
    values = np.random.default_rng(9).random(300) < 0.4
    result = paired_compare(values, values)
    assert result.p_value == 1.0
    assert result.difference == Interval(0.0, 0.0, 0.0)
    assert result.effect_size == 0.0


def test_sign_flip_exact_paths_agree_with_scipy() -> None:
    # Binary differences: the exact sign test is scipy's two-sided binomial test at 1/2.
    d = np.r_[np.ones(31), -np.ones(17), np.zeros(50)]
    assert sign_flip_p_value(d) == pytest.approx(scipy.stats.binomtest(31, 48).pvalue)
    # Few differences: full enumeration equals scipy's exact paired permutation test.
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=12), rng.normal(size=12) + 0.8
    theirs = scipy.stats.permutation_test(
        (a, b),
        lambda x, y: np.mean(x - y),
        permutation_type="samples",
        n_resamples=np.inf,
    ).pvalue
    assert sign_flip_p_value(a - b) == pytest.approx(theirs)


def test_sign_flip_monte_carlo_agrees_with_scipy() -> None:
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=200), rng.normal(size=200) + 0.15
    theirs = scipy.stats.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        n_resamples=20000,
        vectorized=True,
        random_state=0,
    ).pvalue
    ours = sign_flip_p_value(a - b, n_resamples=20000, rng=np.random.default_rng(0))
    assert ours == pytest.approx(theirs, abs=0.015)


def test_cohens_dz() -> None:
    assert cohens_dz([1.0, 2.0, 3.0]) == 2.0
    assert cohens_dz([0.0, 0.0]) == 0.0
    assert cohens_dz([1.0, 1.0]) == math.inf
    assert paired_compare([0, 0], [1, 1]).as_dict()["effect_size"] is None  # JSON-safe


def test_noise_floor_is_the_half_width_for_two_runs_on_different_seeds() -> None:
    nf = noise_floor([0.5, 0.6, 0.7])
    assert nf.seed_std == pytest.approx(0.1)
    assert nf.noise_floor == pytest.approx(Z * math.sqrt(2 / 3) * 0.1)
    # Simulated runs: per-seed means ~ N(0.5, 0.04^2), 5 seeds; two full runs on disjoint seeds
    # differ by more than the true noise floor about 5% of the time.
    rng = np.random.default_rng(12)
    true_floor = Z * math.sqrt(2 / 5) * 0.04
    diffs = np.abs(
        rng.normal(0.5, 0.04, (4000, 5)).mean(1) - rng.normal(0.5, 0.04, (4000, 5)).mean(1)
    )
    assert np.mean(diffs > true_floor) == pytest.approx(0.05, abs=0.012)
    stds = [noise_floor(rng.normal(0.5, 0.04, 5)).seed_std for _ in range(2000)]
    assert math.sqrt(np.mean(np.square(stds))) == pytest.approx(0.04, rel=0.05)
    pooled = pooled_noise_floor([noise_floor([0.5, 0.6, 0.7]), noise_floor([1.0, 1.0, 1.0])])
    assert pooled.seed_std == pytest.approx(math.sqrt(0.01 / 2))
    with pytest.raises(ValueError, match="two seeds"):
        noise_floor([0.5])


def test_overlapping_intervals_share_a_rank_even_through_a_chain() -> None:
    a, b, c = Interval(0.9, 0.85, 0.95), Interval(0.8, 0.7, 0.86), Interval(0.7, 0.6, 0.72)
    d = Interval(0.3, 0.2, 0.4)
    assert tie_ranks([a, b, c, d]) == ["1=", "1=", "1=", "4"]
    assert tie_ranks([d, Interval(0.9, 0.88, 0.92)]) == ["2", "1"]
    assert tie_ranks([Interval(0.5, 0.4, 0.6)] * 3) == ["1=", "1=", "1="]
    # A wide interval joins groups that do not overlap each other.
    wide = Interval(0.6, 0.1, 0.99)
    assert tie_ranks([Interval(0.9, 0.88, 0.92), Interval(0.2, 0.15, 0.25), wide]) == ["1="] * 3


def test_holm_adjustment() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # 2 x 0.8 is capped at 1; monotone after it
