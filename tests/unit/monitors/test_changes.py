"""The e-detector: the window e-value against scipy's binomial, its mean by exact summation, and
by simulation against a known truth (false alarms per 30 days of hourly windows, detection
delay after a change)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from scipy import special, stats

from monitors.changes import (
    RATIOS,
    ChangeDetector,
    advance,
    alternatives,
    bound_from_reference,
    log_likelihood_ratios,
    window_log_evalue,
)

MONTH = 720  # hourly windows in 30 days


def traffic(rng: np.random.Generator, runs: int, windows: int) -> np.ndarray:
    """Requests per hourly window: 300 at night to 3,000 by day on a 24-hour sine (a random
    hour of day to start each run), Poisson around it."""
    hour = rng.integers(0, 24, runs)[:, None] + np.arange(windows)
    return rng.poisson(1650 + 1350 * np.sin(2 * np.pi * hour / 24))


def alarms_of(n: np.ndarray, bad: np.ndarray, detector: ChangeDetector) -> np.ndarray:
    """Which windows of every run (rows) alarmed, through :func:`advance`, the code
    :meth:`ChangeDetector.update` runs."""
    runs, windows = n.shape
    m = detector.rates.size
    log_sr = np.full((runs, m), -np.inf)
    log_cusum = np.full((runs, m), -np.inf)
    alarmed = np.zeros((runs, windows), dtype=bool)
    for t in range(windows):
        args = (n[:, t], bad[:, t], detector.p0, detector.rates, detector.log_threshold)
        step = advance(log_sr, log_cusum, *args)
        log_sr, log_cusum, alarmed[:, t] = step.log_sr, step.log_cusum, step.alarmed
    return alarmed


def first_alarm_after(alarmed: np.ndarray, change: int) -> np.ndarray:
    """Windows from the change to the first alarm (1: the first changed window); inf if none."""
    after = alarmed[:, change:]
    return np.where(after.any(axis=1), after.argmax(axis=1) + 1.0, np.inf)


# -- the window e-value --


@pytest.mark.parametrize(("n", "bad", "p0"), [(1000, 10, 0.01), (300, 0, 0.001), (50, 9, 0.1)])
def test_window_evalue_is_the_mixture_of_binomial_pmf_ratios(n: int, bad: int, p0: float) -> None:
    rates = p0 * np.array(RATIOS)
    ratios = stats.binom.pmf(bad, n, rates) / stats.binom.pmf(bad, n, p0)
    assert math.exp(float(window_log_evalue(n, bad, p0))) == pytest.approx(ratios.mean(), rel=1e-9)
    direct = stats.binom.logpmf(bad, n, rates) - stats.binom.logpmf(bad, n, p0)
    assert log_likelihood_ratios(n, bad, p0, rates) == pytest.approx(direct, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("p0", [0.001, 0.01, 0.05, 0.1, 0.4])
@pytest.mark.parametrize("n", [1, 40, 400, 3000])
def test_the_window_evalue_has_mean_at_most_one_at_and_below_p0(n: int, p0: float) -> None:
    """E[e] = sum_k pmf(k) e(k), summed exactly (on the log scale: e(k) is huge at large k)."""
    k = np.arange(n + 1)
    log_e = window_log_evalue(np.full(k.size, n), k, p0)

    def log_mean(p: float) -> float:
        return float(special.logsumexp(stats.binom.logpmf(k, n, p) + log_e))

    assert log_mean(p0) == pytest.approx(0.0, abs=1e-9)  # a martingale at p0 exactly
    assert log_mean(p0 / 2) < 0 and log_mean(p0 / 100) < 0
    assert float(np.exp(log_e[0])) < 1  # p = 0: no bad request, ever
    assert log_mean(1.5 * p0) > 0


def test_alternatives_are_capped_halfway_to_one_without_repeats() -> None:
    assert alternatives(0.01) == pytest.approx([0.011, 0.0125, 0.015, 0.02, 0.03, 0.05])
    assert alternatives(0.3) == pytest.approx([0.33, 0.375, 0.45, 0.6, 0.65])


def test_the_statistic_sums_every_start_of_every_alternative() -> None:
    """``M_t = sum_i w_i sum_{j <= t} L_j^(i) ... L_t^(i)`` (the SR recursion unrolled)."""
    rng = np.random.default_rng(2)
    n = rng.poisson(500, 12)
    bad = rng.binomial(n, 0.015)
    detector = ChangeDetector(0.01, windows_per_alarm=1e12, streams=1)
    for window in zip(n, bad, strict=True):
        detector.update(int(window[0]), int(window[1]))
    lr = np.exp(log_likelihood_ratios(n, bad, 0.01, detector.rates))  # (windows, alternatives)
    starts = np.array([lr[j:].prod(axis=0) for j in range(len(n))])
    assert math.exp(detector.log_statistic) == pytest.approx(starts.sum(axis=0).mean(), rel=1e-9)
    assert np.exp(detector.log_cusum) == pytest.approx(starts.max(axis=0), rel=1e-9)


# -- against a known truth --


@pytest.mark.parametrize("rate_over_p0", [1.0, 0.5])
def test_false_alarms_per_30_days_stay_within_the_budget(rate_over_p0: float) -> None:
    """200 months of hourly windows with day/night traffic, at p0 and below: the default
    threshold (3 x 720) allows 1/3 of a false alarm per stream per 30 days in expectation."""
    rng = np.random.default_rng(7)
    detector = ChangeDetector(0.01)
    n = traffic(rng, 200, MONTH)
    alarmed = alarms_of(n, rng.binomial(n, 0.01 * rate_over_p0), detector)
    per_month = alarmed.sum() / 200
    assert 3 * per_month <= 1  # three such streams: one false alarm per 30 days
    assert per_month <= 0.2  # measured 0.04 to 0.105 per stream at p0 (five seeds)
    if rate_over_p0 < 1:
        assert per_month == 0


def test_a_low_threshold_shows_the_bound_is_tight_enough_to_fail() -> None:
    """At c = 24 (one expected false alarm a day) alarms are frequent enough to measure the
    bound E[alarms in T windows] <= T / c itself: 30 per month."""
    rng = np.random.default_rng(11)
    detector = ChangeDetector(0.01, windows_per_alarm=24, streams=1)
    n = traffic(rng, 200, MONTH)
    per_month = alarms_of(n, rng.binomial(n, 0.01), detector).sum() / 200
    assert 5 < per_month <= MONTH / 24  # measured 6.1 to 6.7 (five seeds): overshoot is slack


def test_a_doubled_rate_is_caught_within_a_few_windows() -> None:
    """A week at p0 = 1%, then 2%: the alarm comes a median 2 windows after the change."""
    rng = np.random.default_rng(3)
    detector = ChangeDetector(0.01)
    change = 168
    n = traffic(rng, 300, change + 48)
    rate = np.where(np.arange(change + 48) < change, 0.01, 0.02)
    delay = first_alarm_after(alarms_of(n, rng.binomial(n, rate), detector), change)
    assert np.isfinite(delay).all()
    assert np.median(delay) <= 3  # measured 2 (five seeds)
    assert np.quantile(delay, 0.9) <= 7  # measured 5 or 6


def test_the_class_takes_the_vectorised_path_and_names_the_change() -> None:
    rng = np.random.default_rng(5)
    detector = ChangeDetector(0.01, windows_per_alarm=24, streams=1)
    n = traffic(rng, 1, 300)
    rate = np.where(np.arange(300) < 250, 0.01, 0.03)
    bad = rng.binomial(n, rate)
    expected = alarms_of(n, bad, ChangeDetector(0.01, windows_per_alarm=24, streams=1))[0]
    alarms = [detector.update(int(a), int(b)) for a, b in zip(n[0], bad[0], strict=True)]
    assert [a is not None for a in alarms] == expected.tolist()
    last = next(a for a in alarms[250:] if a is not None)
    assert last.window == 251 + alarms[250:].index(last)
    assert last.windows_since_change <= last.window - 250 + 1
    assert 0.02 < last.rate < 0.045
    assert "against a bound of 1%" in last.reason


# -- state --


def test_the_state_survives_a_json_round_trip() -> None:
    rng = np.random.default_rng(9)
    detector = ChangeDetector(0.002, windows_per_alarm=100, streams=2)
    for n in rng.poisson(800, 40):
        detector.update(int(n), int(rng.binomial(n, 0.004)))
    stored = json.dumps(detector.to_dict(), allow_nan=False)
    again = ChangeDetector.from_dict(json.loads(stored))
    assert again == detector
    assert again.log_statistic == detector.log_statistic
    for n in rng.poisson(800, 20):
        bad = int(rng.binomial(n, 0.004))
        assert detector.update(int(n), bad) == again.update(int(n), bad)
    assert again.to_dict() == detector.to_dict()
    fresh = ChangeDetector(0.01)
    assert fresh.log_statistic == -math.inf
    assert (
        ChangeDetector.from_dict(json.loads(json.dumps(fresh.to_dict(), allow_nan=False))) == fresh
    )


def test_an_empty_window_is_skipped() -> None:
    detector = ChangeDetector(0.01)
    detector.update(1000, 15)
    before = detector.to_dict()
    assert detector.update(0, 0) is None
    assert detector.to_dict() == before
    assert detector.windows == 1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"p0": 0.0}, "p0"),
        ({"p0": 1.0}, "p0"),
        ({"p0": 0.01, "windows_per_alarm": 0.5}, "windows_per_alarm"),
        ({"p0": 0.01, "streams": 0}, "streams"),
        ({"p0": 0.01, "ratios": (1.0, 2.0)}, "ratios"),
        ({"p0": 0.01, "ratios": ()}, "ratios"),
        ({"p0": 0.01, "log_sr": [0.0]}, "log_sr"),
    ],
)
def test_invalid_parameters_are_named(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ChangeDetector(**kwargs)  # type: ignore[arg-type]


def test_invalid_windows_and_states_are_named() -> None:
    detector = ChangeDetector(0.01)
    with pytest.raises(ValueError, match="n must"):
        detector.update(-1, 0)
    with pytest.raises(ValueError, match="bad must be at most n"):
        detector.update(5, 6)
    with pytest.raises(ValueError, match="bad must"):
        detector.update(5, 1.5)  # type: ignore[arg-type]
    state = detector.to_dict()
    del state["log_cusum"]
    with pytest.raises(ValueError, match="log_cusum"):
        ChangeDetector.from_dict(state)


# -- the bound from a reference period --


def test_the_bound_is_the_clopper_pearson_upper_bound_with_the_larger_allowance() -> None:
    upper = float(stats.beta.ppf(0.99, 101, 10_000 - 100))
    assert bound_from_reference(10_000, 100) == pytest.approx(1.5 * upper, rel=1e-9)
    small = float(stats.beta.ppf(0.99, 2, 10_000 - 1))
    assert bound_from_reference(10_000, 1) == pytest.approx(small + 0.005, rel=1e-9)
    assert bound_from_reference(10_000, 0, alpha=0.05, max_ratio=1.0, max_increase=0.0) == (
        pytest.approx(1 - 0.05 ** (1 / 10_000), rel=1e-9)
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        ((0, 0), {}, "n_ref"),
        ((10, 11), {}, "bad_ref"),
        ((10, -1), {}, "bad_ref"),
        ((100, 5), {"alpha": 0.6}, "alpha"),
        ((100, 5), {"max_ratio": 0.9}, "max_ratio"),
        ((100, 5), {"max_increase": -0.1}, "max_increase"),
        ((100, 60), {}, "max_ratio"),  # the bound would reach 1
    ],
)
def test_invalid_references_are_named(
    args: tuple[int, int], kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        bound_from_reference(*args, **kwargs)
