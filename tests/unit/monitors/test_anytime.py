"""Anytime-valid bounds: checked against exact references where one exists, and by simulation
against a known truth (looking after every batch, a true effect leaves the bounds in at most
alpha of the runs)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from monitors.anytime import (
    ArmBatch,
    EventSplit,
    MeanDifference,
    bernoulli_bounds,
    event_probability,
    rate_ratio_bounds,
    rate_ratio_estimate,
    rate_ratio_evalue,
)
from monitors.quantiles import dkw_radius, ks_distance_bounds, quantile_bounds, tv_distance_bounds

MC = 2.5  # Monte Carlo slack in standard errors


def _slack(runs: int, alpha: float = 0.05) -> float:
    return alpha + MC * math.sqrt(alpha * (1 - alpha) / runs)


def test_bernoulli_bounds_hold_the_rate_and_are_wider_than_a_fixed_interval() -> None:
    bounds = bernoulli_bounds(30, 1000, 0.025, 1000)
    exact = stats.binomtest(30, 1000).proportion_ci(0.95, method="exact")
    assert bounds.low < 0.03 < bounds.high
    assert bounds.low < exact.low and bounds.high > exact.high  # valid at every look costs width
    assert bounds.high - bounds.low < 3 * (exact.high - exact.low)
    assert bernoulli_bounds(0, 500, 0.05, 500).low == 0.0
    assert bernoulli_bounds(500, 500, 0.05, 500).high == 1.0


@pytest.mark.parametrize("rate", [0.001, 0.02, 0.4])
def test_bernoulli_bounds_cover_at_every_look(rate: float) -> None:
    rng = np.random.default_rng(int(rate * 1e4))
    runs, looks, batch = 200, 30, 200
    missed = 0
    for _ in range(runs):
        counts = np.cumsum(rng.binomial(batch, rate, looks))
        for look, successes in enumerate(counts, 1):
            bounds = bernoulli_bounds(int(successes), look * batch, 0.025, 2000)
            if not bounds.low <= rate <= bounds.high:
                missed += 1
                break
    assert missed / runs <= _slack(runs)


def test_the_event_split_is_the_canary_share_of_events() -> None:
    assert event_probability(1.0, 0.1) == pytest.approx(0.1)
    assert event_probability(2.0, 0.1) == pytest.approx(0.2 / 1.1)
    steps = [EventSplit(0.1, 20, 90), EventSplit(0.5, 100, 50)]
    theta = rate_ratio_estimate(steps)
    expected = sum((s.canary_events + s.baseline_events) * event_probability(theta, s.canary_share)
                   for s in steps)  # fmt: skip
    assert expected == pytest.approx(120, rel=1e-9)


def test_rate_ratio_evidence_is_exact_for_one_step() -> None:
    """With one step the e-value at theta0 is the Bernoulli test at q(theta0)."""
    from monitors.anytime import bernoulli_log_evalue

    step = EventSplit(0.1, 40, 160)
    q0 = event_probability(1.5, 0.1)
    assert rate_ratio_evalue([step], 1.5, 0.01, 200, upward=True) == pytest.approx(
        bernoulli_log_evalue(40, 200, q0, 0.01, 200, upward=True)
    )


@pytest.mark.parametrize(("base", "shares"), [(0.001, (0.1, 0.5)), (0.01, (0.1,)), (0.1, (0.5,))])
def test_rate_ratio_bounds_cover_the_true_ratio_at_rare_and_common_rates(
    base: float, shares: tuple[float, ...]
) -> None:
    rng = np.random.default_rng(int(base * 1e5) + len(shares))
    runs, looks, requests = 200, 20, 5000
    theta = 1.0
    missed = 0
    for _ in range(runs):
        steps: list[EventSplit] = []
        for look in range(looks):
            share = shares[min(look * len(shares) // looks, len(shares) - 1)]
            canary = int(rng.binomial(int(requests * share), base * theta))
            baseline = int(rng.binomial(int(requests * (1 - share)), base))
            if steps and steps[-1].canary_share == share:
                last = steps.pop()
                canary, baseline = canary + last.canary_events, baseline + last.baseline_events
            steps.append(EventSplit(share, canary, baseline))
            bounds = rate_ratio_bounds(steps, 0.025, 50)
            if not bounds.low <= theta <= bounds.high:
                missed += 1
                break
    assert missed / runs <= _slack(runs)


def test_a_tripled_rare_error_rate_is_bounded_away_from_one() -> None:
    steps = [EventSplit(0.1, 90, 270)]  # 0.3% on 30,000 canary requests vs 0.1% on 270,000
    bounds = rate_ratio_bounds(steps, 0.01, 100)
    assert bounds.low > 1.5 and bounds.estimate == pytest.approx(3.0, rel=1e-6)


def _difference_runs(
    rng: np.random.Generator, runs: int, p_c: float, p_b: float, share: float, looks: int
) -> tuple[int, list[MeanDifference]]:
    missed, last = 0, []
    for _ in range(runs):
        stream = MeanDifference(0.0, 1.0, min_share=share)
        for _ in range(looks):
            n_c = int(rng.binomial(400, share))
            x_c, x_b = rng.binomial(n_c, p_c), rng.binomial(400 - n_c, p_b)
            stream.add(share, ArmBatch(n_c, x_c, x_c), ArmBatch(400 - n_c, x_b, x_b))
            bounds = stream.bounds(0.025, 4000.0)
            if not bounds.low <= p_c - p_b <= bounds.high:
                missed += 1
                break
        last.append(stream)
    return missed, last


@pytest.mark.parametrize(("p_c", "p_b", "share"), [(0.9, 0.9, 0.1), (0.87, 0.9, 0.5)])
def test_mean_difference_bounds_cover_at_every_look(p_c: float, p_b: float, share: float) -> None:
    rng = np.random.default_rng(3)
    missed, _ = _difference_runs(rng, 300, p_c, p_b, share, 40)
    assert missed / 300 <= _slack(300)


def test_mean_difference_width_is_the_two_sample_standard_errors() -> None:
    """Centred by the arms' own means, the stream's spread is the two-sample one: its bounds
    are a fixed multiple of sqrt(v_c / n_c + v_b / n_b), not of the inverse-propensity one."""
    rng = np.random.default_rng(4)
    _, streams = _difference_runs(rng, 1, 0.9, 0.9, 0.1, 50)
    stream = streams[0]
    n_c, n_b = stream.arms["canary"].n, stream.arms["baseline"].n
    se = math.sqrt(0.09 / n_c + 0.09 / n_b)
    bounds = stream.bounds(0.025, 4000.0)
    assert 2.5 * se < (bounds.high - bounds.low) / 2 < 6 * se
    # per observation: v_c / share + v_b / (1 - share), beyond the first batch's rough centring
    assert stream.variance / stream.count == pytest.approx(0.09 / 0.1 + 0.09 / 0.9, rel=0.25)


def test_quantile_bounds_bracket_the_true_quantile_on_bins() -> None:
    rng = np.random.default_rng(5)
    edges = np.geomspace(0.01, 1000, 1201)[1:]
    values = rng.lognormal(1.5, 0.4, 5000)
    counts = np.bincount(np.searchsorted(edges, values), minlength=edges.size)[: edges.size]
    truth = math.exp(1.5 + 0.4 * stats.norm.ppf(0.95))
    bounds = quantile_bounds(counts, edges, 0.95, 0.025, 5000)
    assert bounds.low < truth < bounds.high
    assert bounds.high / bounds.low < 1.3
    assert quantile_bounds(counts[:0], edges[:0], 0.95, 0.025, 10).high == math.inf


def test_quantile_bounds_cover_at_every_look() -> None:
    rng = np.random.default_rng(6)
    edges = np.geomspace(0.01, 1000, 1201)[1:]
    truth = math.exp(1.5 + 0.4 * stats.norm.ppf(0.95))
    runs, missed = 200, 0
    for _ in range(runs):
        counts = np.zeros(edges.size)
        for _look in range(25):
            values = rng.lognormal(1.5, 0.4, 200)
            counts += np.bincount(np.searchsorted(edges, values), minlength=edges.size)[
                : edges.size
            ]
            bounds = quantile_bounds(counts, edges, 0.95, 0.025, 2000)
            if not bounds.low <= truth <= bounds.high:
                missed += 1
                break
    assert missed / runs <= _slack(runs)


def test_dkw_radius_holds_the_fixed_n_dkw_and_shrinks() -> None:
    fixed = math.sqrt(math.log(2 / 0.05) / (2 * 1000))  # Massart's fixed-n DKW
    assert fixed < dkw_radius(1000, 0.05) < 3 * fixed
    assert dkw_radius(100_000, 0.05) < dkw_radius(1000, 0.05)
    assert dkw_radius(0, 0.05) == 1.0


def test_ks_and_tv_distance_bounds_hold_the_truth() -> None:
    rng = np.random.default_rng(9)
    same = ks_distance_bounds(rng.normal(size=4000), rng.normal(size=4000), 0.05)
    assert same.low == 0.0 and same.high < 0.12
    shifted = ks_distance_bounds(rng.normal(size=4000), rng.normal(0.5, 1, 4000), 0.05)
    truth = 2 * stats.norm.cdf(0.25) - 1  # KS distance of N(0,1) and N(0.5,1)
    assert shifted.low < truth < shifted.high and shifted.low > 0.1
    mix = tv_distance_bounds([6000, 4000], [5000, 5000], 0.05, 10_000)
    assert mix.estimate == pytest.approx(0.1)
    assert mix.low < 0.1 < mix.high and mix.low > 0.05


def _e_value_edge(successes: int, n: int, alpha: float, n_opt: float, upward: bool) -> float:
    """The bound by bisection on the scalar e-value (the reference the fast search must meet)."""
    from monitors.anytime import bernoulli_log_evalue

    rate, threshold = successes / n, math.log(1 / alpha)
    low, high = (1e-12, rate) if upward else (rate, 1 - 1e-12)
    for _ in range(100):
        middle = (low + high) / 2
        rejected = bernoulli_log_evalue(successes, n, middle, alpha, n_opt, upward=upward)
        if (rejected >= threshold) == upward:
            low = middle
        else:
            high = middle
    return low if upward else high


@pytest.mark.parametrize("n", [5, 100, 1000, 45_000])
@pytest.mark.parametrize("fraction", [0.001, 0.01, 0.3, 0.97])
def test_the_vectorised_search_meets_the_e_value_edge_from_the_safe_side(
    n: int, fraction: float
) -> None:
    successes = max(1, min(n - 1, round(fraction * n)))
    bounds = bernoulli_bounds(successes, n, 0.0125, 5000)
    low = _e_value_edge(successes, n, 0.0125, 5000, upward=True)
    high = _e_value_edge(successes, n, 0.0125, 5000, upward=False)
    assert bounds.low <= low * (1 + 1e-9) and bounds.low == pytest.approx(low, rel=1e-4)
    assert bounds.high >= high * (1 - 1e-9) and bounds.high == pytest.approx(high, rel=1e-4)


def test_three_designs_keep_small_samples_close_to_the_best_bound() -> None:
    """Tuned for 5,000 requests, one design is 6.5x wider than the best at 100 requests
    without errors; the mixture of three is within 1.4x there and loses little at 5,000."""
    for n, most in ((100, 1.4), (1000, 1.2), (5000, 1.05)):
        tuned = bernoulli_bounds(0, n, 0.0125, 5000).high
        best = bernoulli_bounds(0, n, 0.0125, n).high
        assert best <= tuned <= most * best


def test_quantile_count_deviations_grow_with_n_so_rounding_up_is_safe() -> None:
    from monitors.quantiles import GRID_RATIO, _count_deviations

    for grid, indices in ((GRID_RATIO, range(500, 1100, 5)), (1.05, range(100, 230))):
        seen = [_count_deviations(index, 0.95, 0.0125, 5000, grid) for index in indices]
        for before, after in itertools.pairwise(seen):
            assert after[0] >= before[0] and after[1] >= before[1]


def test_rate_ratio_bounds_when_every_event_is_on_one_arm() -> None:
    """75 events, all the canary's, at a 20% split: the ratio is proven far above 1.5."""
    all_canary = rate_ratio_bounds([EventSplit(0.2, 75, 0)], 0.0125, 60)
    assert all_canary.estimate == math.inf and all_canary.high == math.inf
    assert all_canary.low > 10
    assert rate_ratio_evalue([EventSplit(0.2, 75, 0)], all_canary.low * 0.99, 0.0125, 60,
                             upward=True) >= math.log(1 / 0.0125)  # fmt: skip
    all_baseline = rate_ratio_bounds([EventSplit(0.2, 0, 75)], 0.0125, 60)
    assert all_baseline.estimate == 0 and all_baseline.low == 0
    # the canary's share of events is at most q = bernoulli bound of 0 in 75; theta from q
    q = bernoulli_bounds(0, 75, 0.0125, 60).high
    assert all_baseline.high == pytest.approx(0.8 * q / (0.2 * (1 - q)), rel=1e-3)


def test_binned_ks_bounds_hold_the_exact_distance_and_keep_narrowing() -> None:
    """On 256 bins at the baseline's quantiles the bounds hold the exact KS statistic
    (scipy's), are at most a bin's mass wider than the exact ones, and use every value."""
    from monitors._bins import psi_edges
    from monitors.quantiles import ks_distance_bounds_binned
    from monitors.twosample import bin_counts

    rng = np.random.default_rng(8)
    baseline, canary = rng.normal(0, 1, 200_000), rng.normal(0.2, 1, 40_000)
    edges = psi_edges(baseline[:20_000], 256)
    binned = ks_distance_bounds_binned(bin_counts(baseline, edges), bin_counts(canary, edges), 0.05)
    exact = ks_distance_bounds(baseline, canary, 0.05)
    statistic = stats.ks_2samp(baseline, canary).statistic
    assert binned.low <= statistic <= binned.high
    assert binned.low >= exact.low - 0.01 and binned.high <= exact.high + 0.01
    small = ks_distance_bounds_binned(
        bin_counts(baseline[:20_000], edges), bin_counts(canary[:4_000], edges), 0.05
    )
    assert binned.high - binned.low < 0.6 * (small.high - small.low)  # every value counts
