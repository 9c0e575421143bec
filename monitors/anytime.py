"""Anytime-valid confidence sequences for the effects the gates judge.

Each function returns bounds that hold at every look at once (with probability at least
``1 - alpha`` for each one-sided bound), however often the manager looks, from sufficient
statistics only (counts and sums), so a look costs the same after a million requests as after a
hundred. The mixtures and their sources are in :mod:`monitors.boundaries`.

- :func:`bernoulli_bounds`: one arm's rate (errors, correct predictions): the beta-binomial
  mixture, exact for Bernoulli data, so valid at 0.1% as at 50% (Howard et al. 2021).
- :func:`rate_ratio_evalue` / :func:`rate_ratio_bounds`: the ratio of two arms' event rates,
  from the arm each *event* came from. With requests assigned to the canary with a known
  probability (the traffic split), an event is the canary's with probability
  ``rho * theta / (rho * theta + 1 - rho)`` whatever the baseline's rate: one Bernoulli stream
  per step, tested exactly (the multinomial count-data idea of Lindon & Malek 2022), and the
  steps' e-values multiplied (a product of e-processes over consecutive steps is one).
- :class:`MeanDifference`: canary mean minus baseline mean of a bounded per-request quantity
  (correctness, a loss), from the augmented inverse-propensity-weighted stream of a randomised
  assignment with known probability, centred by predictable per-arm means, under the
  gamma-exponential mixture of the empirical-Bernstein variance process (Howard et al. 2021,
  the randomised-experiment corollary): efficient (its width is the two-sample standard error's)
  and valid at every look. Updated batch by batch (a batch's centring is fixed before it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from monitors.boundaries import BetaBinomialMixture, GammaExponentialMixture

SOLVER_STEPS = 60  # at most this many evaluations per root (regula falsi stops far sooner)


@dataclass(frozen=True)
class Bounds:
    """An estimate and its one-sided lower and upper confidence bounds."""

    estimate: float
    low: float
    high: float


def _root(f: Callable[[float], float], low: float, high: float) -> float:
    """Where ``f`` changes sign between ``low`` and ``high`` (regula falsi, Illinois variant:
    about ten evaluations instead of forty bisections; an infinite value falls back to
    bisection)."""
    f_low, f_high = f(low), f(high)
    if f_low == 0:
        return low
    if f_high == 0 or (f_low > 0) == (f_high > 0):
        return high
    side = 0
    for _ in range(SOLVER_STEPS):
        if math.isfinite(f_low) and math.isfinite(f_high):
            middle = (low * f_high - high * f_low) / (f_high - f_low)
            if not low < middle < high:
                middle = (low + high) / 2
        else:
            middle = (low + high) / 2
        f_middle = f(middle)
        if f_middle == 0 or high - low <= 1e-12 * max(1.0, abs(low), abs(high)):
            return middle
        if (f_middle > 0) == (f_low > 0):
            low, f_low = middle, f_middle
            if side == -1:
                f_high /= 2
            side = -1
        else:
            high, f_high = middle, f_middle
            if side == 1:
                f_low /= 2
            side = 1
    return (low + high) / 2


def _bisect(predicate: Callable[[float], bool], low: float, high: float) -> float:
    """The boundary point between ``low`` (predicate False) and ``high`` (True)."""
    for _ in range(SOLVER_STEPS):
        middle = (low + high) / 2
        if predicate(middle):
            high = middle
        else:
            low = middle
    return (low + high) / 2


def _clamped(value: float) -> float:
    return max(-1e6, min(1e6, value))


def bernoulli_log_evalue(
    successes: float, n: float, p0: float, alpha: float, n_opt: float, *, upward: bool
) -> float:
    """log e-value against "the rate is at most p0" (``upward``) or "at least p0"."""
    if n <= 0:
        return 0.0
    v = n * p0 * (1 - p0)
    v_opt = max(n_opt * p0 * (1 - p0), 1e-9)
    if upward:
        mixture = BetaBinomialMixture(v_opt, alpha, p0, 1 - p0, one_sided=True)
        return mixture.log_e(successes - n * p0, v)
    mixture = BetaBinomialMixture(v_opt, alpha, 1 - p0, p0, one_sided=True)
    return mixture.log_e(n * p0 - successes, v)


def bernoulli_bounds(successes: int, n: int, alpha: float, n_opt: float) -> Bounds:
    """Lower and upper confidence bounds for a Bernoulli rate, each at level ``alpha``."""
    if n <= 0:
        return Bounds(math.nan, 0.0, 1.0)
    threshold = math.log(1 / alpha)
    rate = successes / n
    low = 0.0
    if successes > 0:
        low = _root(
            lambda p: _clamped(
                bernoulli_log_evalue(successes, n, p, alpha, n_opt, upward=True) - threshold
            ),
            1e-12,
            min(max(rate, 1e-12), 1 - 1e-12),
        )
    high = 1.0
    if successes < n:
        high = _root(
            lambda p: _clamped(
                bernoulli_log_evalue(successes, n, p, alpha, n_opt, upward=False) - threshold
            ),
            min(max(rate, 1e-12), 1 - 1e-12),
            1 - 1e-12,
        )
    return Bounds(rate, low, high)


@dataclass(frozen=True)
class EventSplit:
    """The events of one step: how many fell on each arm, and the canary's share of traffic."""

    canary_share: float  # the probability a request went to the canary (0 < share < 1)
    canary_events: int
    baseline_events: int


def event_probability(theta: float, share: float) -> float:
    """The probability an event is the canary's when its rate is ``theta`` times the
    baseline's and it gets ``share`` of the requests."""
    return share * theta / (share * theta + 1 - share)


def rate_ratio_evalue(
    steps: Sequence[EventSplit], theta0: float, alpha: float, events_opt: float, *, upward: bool
) -> float:
    """log e-value against "the canary's rate is at most ``theta0`` times the baseline's"
    (``upward``; evidence it is higher) or "at least" (evidence it is lower)."""
    total = 0.0
    for step in steps:
        n = step.canary_events + step.baseline_events
        if n == 0:
            continue
        q0 = event_probability(theta0, step.canary_share)
        total += bernoulli_log_evalue(step.canary_events, n, q0, alpha, events_opt, upward=upward)
    return total


def rate_ratio_estimate(steps: Sequence[EventSplit], max_ratio: float = 1e4) -> float:
    """The ratio at which each step's expected canary events add up to those seen."""
    seen = sum(s.canary_events for s in steps)
    total = sum(s.canary_events + s.baseline_events for s in steps)
    if total == 0:
        return math.nan
    if seen == 0:
        return 0.0
    if seen == total:
        return math.inf

    def expected(log_theta: float) -> float:
        theta = math.exp(log_theta)
        return sum(
            (s.canary_events + s.baseline_events) * event_probability(theta, s.canary_share)
            for s in steps
        )

    log_bound = math.log(max_ratio)
    return math.exp(_bisect(lambda x: expected(x) >= seen, -log_bound, log_bound))


def rate_ratio_bounds(
    steps: Sequence[EventSplit], alpha: float, events_opt: float, max_ratio: float = 1e4
) -> Bounds:
    """Confidence bounds for the canary's event rate over the baseline's, each at ``alpha``."""
    events = sum(s.canary_events + s.baseline_events for s in steps)
    if events == 0:
        return Bounds(math.nan, 0.0, math.inf)
    estimate = rate_ratio_estimate(steps, max_ratio)
    threshold = math.log(1 / alpha)
    log_low, log_high = -math.log(max_ratio), math.log(max_ratio)

    def up(log_theta: float) -> float:
        theta = math.exp(log_theta)
        return _clamped(rate_ratio_evalue(steps, theta, alpha, events_opt, upward=True) - threshold)

    def down(log_theta: float) -> float:
        theta = math.exp(log_theta)
        return _clamped(
            rate_ratio_evalue(steps, theta, alpha, events_opt, upward=False) - threshold
        )

    low = 0.0 if up(log_low) < 0 else math.exp(_root(up, log_low, log_high))
    high = math.inf if down(log_high) < 0 else math.exp(_root(down, log_low, log_high))
    return Bounds(estimate, low, high)


@dataclass(frozen=True)
class ArmBatch:
    """One arm's observations in a batch: count, sum and sum of squares."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0


@dataclass
class MeanDifference:
    """Canary mean minus baseline mean of a quantity in ``[low, high]``, streamed in batches.

    Each batch comes with the canary's share of traffic it was served under. An observation of
    the canary contributes ``d + (x - m_c) / share``, one of the baseline
    ``d - (x - m_b) / (1 - share)``, where ``m_c``, ``m_b`` are the arms' means before the batch
    and ``d = m_c - m_b``: the augmented IPW stream, whose mean is the difference of the arms'
    means whatever ``m_c``, ``m_b`` are, and whose spread is the two-sample one when they are
    right. ``sum`` and ``variance`` (sum of squared deviations from ``d``) feed the
    gamma-exponential mixture with scale ``c`` = the stream's range, which needs the smallest
    share (``min_share``) the rollout may use, known in advance.
    """

    low: float
    high: float
    min_share: float
    count: int = 0
    sum: float = 0.0
    variance: float = 0.0
    arms: dict[str, ArmBatch] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"need low < high, got {self.low}, {self.high}")
        if not 0 < self.min_share <= 0.5:
            raise ValueError(f"min_share must be in (0, 0.5], got {self.min_share}")

    @property
    def scale(self) -> float:
        """The range of the stream: |an increment| <= width * (1 + 1/min_share)."""
        return 2 * (self.high - self.low) * (1 + 1 / self.min_share)

    def _mean(self, arm: str) -> float:
        seen = self.arms.get(arm)
        if seen is None or seen.n == 0:
            return (self.low + self.high) / 2
        return min(self.high, max(self.low, seen.total / seen.n))

    def add(self, share: float, canary: ArmBatch, baseline: ArmBatch) -> None:
        """Fold one batch served at canary ``share`` (0 < share < 1)."""
        if not self.min_share <= share <= 1 - self.min_share:
            raise ValueError(f"share {share} is outside [{self.min_share}, {1 - self.min_share}]")
        m_c, m_b = self._mean("canary"), self._mean("baseline")
        d = m_c - m_b
        for batch, mean, weight in ((canary, m_c, 1 / share), (baseline, m_b, -1 / (1 - share))):
            if batch.n == 0:
                continue
            centred = batch.total - batch.n * mean
            self.sum += batch.n * d + weight * centred
            spread = batch.squares - 2 * mean * batch.total + batch.n * mean * mean
            self.variance += weight * weight * max(spread, 0.0)
            self.count += batch.n
        for arm, batch in (("canary", canary), ("baseline", baseline)):
            seen = self.arms.get(arm, ArmBatch())
            self.arms[arm] = ArmBatch(
                seen.n + batch.n, seen.total + batch.total, seen.squares + batch.squares
            )

    def log_evalue(self, delta0: float, alpha: float, v_opt: float, *, upward: bool) -> float:
        """log e-value against "the difference is at most ``delta0``" (``upward``) or "at
        least"."""
        if self.count == 0:
            return 0.0
        s = self.sum - self.count * delta0
        mixture = GammaExponentialMixture(max(v_opt, 1e-9), alpha, self.scale)
        return mixture.log_e(s if upward else -s, self.variance)

    def bounds(self, alpha: float, v_opt: float) -> Bounds:
        if self.count == 0:
            width = self.high - self.low
            return Bounds(math.nan, -width, width)
        mixture = GammaExponentialMixture(max(v_opt, 1e-9), alpha, self.scale)
        radius = mixture.bound(self.variance, alpha) / self.count
        width = self.high - self.low
        estimate = self.sum / self.count
        return Bounds(estimate, max(-width, estimate - radius), min(width, estimate + radius))
