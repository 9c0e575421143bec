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

import numpy as np
import numpy.typing as npt
from scipy import special

from monitors.boundaries import GammaExponentialMixture, WeightedMixture

SOLVER_STEPS = 60  # at most this many evaluations per root (regula falsi stops far sooner)


@dataclass(frozen=True)
class Bounds:
    """An estimate and its one-sided lower and upper confidence bounds."""

    estimate: float
    low: float
    high: float


def _bisect(predicate: Callable[[float], bool], low: float, high: float) -> float:
    """The boundary point between ``low`` (predicate False) and ``high`` (True)."""
    for _ in range(SOLVER_STEPS):
        middle = (low + high) / 2
        if predicate(middle):
            high = middle
        else:
            low = middle
    return (low + high) / 2


# A mixture of e-processes with weights summing to one is an e-process (Howard et al. 2021,
# the mixture method applied once more): the beta-binomial boundary is tuned for a design
# sample size, and three designs (the given one, a tenth and a hundredth of it) keep it within
# 1.4x of the best bound at 100 requests and within 1.05x at the design point, where one design
# alone is 6.5x wider at 100 requests (tests/unit/monitors/test_anytime.py).
DESIGN_SCALES = np.array([1.0, 0.1, 0.01])
DESIGN_WEIGHTS = np.array([0.7, 0.15, 0.15])
SOLVER_PASSES = 12  # at most this many secant passes per search (each one numpy evaluation)


def _concentrations(alpha: npt.ArrayLike, n_opt: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Each design's beta-prior concentration ``k`` (last axis): the one-sided beta-binomial
    mixture of Howard et al. tuned for ``n_opt`` observations (``rho = v_opt / (2 L +
    log(1 + 2 L))``, ``L = log(1 / (2 alpha))``, less the prior's own variance), per unit of
    ``p (1 - p)``."""
    log_inv = np.log(1 / (2 * np.asarray(alpha, dtype=np.float64)))[..., None]
    designs = np.asarray(n_opt, dtype=np.float64)[..., None] * DESIGN_SCALES
    return np.asarray(
        np.maximum(designs / (2 * log_inv + np.log1p(2 * log_inv)) - 1, 1e-3), dtype=np.float64
    )


class BernoulliRows:
    """Several Bernoulli e-processes evaluated together at any ``p0`` per row: row ``i`` has
    ``successes[i]`` of ``n[i]``, its ``alpha`` and design ``n_opt``, and tests "the rate is at
    most p0" (``upward``) or "at least p0". :meth:`log_e` is the Bayes factor of a
    Beta(k p0, k (1 - p0)) prior truncated to ``p >= p0`` (or ``<= p0``) against ``p0`` -- the
    closed form of Howard et al.'s one-sided beta-binomial mixture for Bernoulli data -- mixed
    over the designs above. Everything that does not depend on ``p0`` is computed once."""

    def __init__(
        self,
        successes: npt.ArrayLike,
        n: npt.ArrayLike,
        alpha: npt.ArrayLike,
        n_opt: npt.ArrayLike,
        upward: npt.ArrayLike,
    ) -> None:
        s = np.atleast_1d(np.asarray(successes, dtype=np.float64))
        m = np.broadcast_to(np.asarray(n, dtype=np.float64), s.shape)
        up = np.broadcast_to(np.asarray(upward, dtype=bool), s.shape)
        self.s, self.failures, self.up = s, m - s, up
        self.k = _concentrations(np.broadcast_to(alpha, s.shape), np.broadcast_to(n_opt, s.shape))
        self.a_add = np.where(up, m - s, s)[:, None]
        self.b_add = np.where(up, s, m - s)[:, None]
        self.empty = m <= 0

    def log_e(self, p0: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """log e-value of each row at its ``p0`` (one per row). Near any threshold that matters
        the terms are moderate; far from it they overflow to +inf (overwhelming evidence) or
        underflow to -inf (none), which compare correctly."""
        p = np.minimum(np.maximum(p0, 1e-300), 1 - 1e-16)
        x = np.where(self.up, 1 - p, p)[:, None]
        a0 = self.k * x
        b0 = self.k - a0
        a, b = a0 + self.a_add, b0 + self.b_add
        likelihood = (self.s * np.log(p) + self.failures * np.log1p(-p))[:, None]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            per_design = (
                special.betaln(a, b)
                - special.betaln(a0, b0)
                - likelihood
                + np.log(special.betainc(a, b, x) / special.betainc(a0, b0, x))
            )
            log_e = np.log(np.exp(per_design) @ DESIGN_WEIGHTS)
        return np.asarray(np.where(self.empty, 0.0, log_e), dtype=np.float64)


def bernoulli_log_e(
    successes: npt.ArrayLike,
    n: npt.ArrayLike,
    p0: npt.ArrayLike,
    alpha: npt.ArrayLike,
    n_opt: npt.ArrayLike,
    *,
    upward: npt.ArrayLike,
) -> npt.NDArray[np.float64]:
    """log e-values of :class:`BernoulliRows`, one per row of the arguments."""
    rows = BernoulliRows(successes, n, alpha, n_opt, upward)
    return rows.log_e(np.broadcast_to(np.asarray(p0, dtype=np.float64), rows.s.shape))


def bernoulli_log_evalue(
    successes: float, n: float, p0: float, alpha: float, n_opt: float, *, upward: bool
) -> float:
    """One log e-value of :func:`bernoulli_log_e`."""
    if n <= 0:
        return 0.0
    return float(bernoulli_log_e(successes, n, p0, alpha, n_opt, upward=upward)[0])


def solve(
    margin: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]],
    guess: npt.NDArray[np.float64],
    step: npt.NDArray[np.float64],
    low: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Per row, the edge of the region where ``margin >= 0`` (a rejection: it holds below the
    edge, in ``[low, high]``), by the secant method from ``guess`` and ``guess + step`` on every
    row at once, one evaluation of ``margin`` per pass, bisecting once both sides are known and
    a step would leave them. Returns the largest point found where ``margin >= 0``, so that a
    confidence bound built on it stays conservative; ``low`` when none was found (nothing is
    rejected, or the search did not reach one)."""
    x_prev = np.minimum(np.maximum(guess, low), high)
    x = np.minimum(np.maximum(guess + step, low), high)
    f_prev, f = margin(x_prev), margin(x)
    best_in = np.where(f_prev >= 0, x_prev, low)  # the largest rejected point seen
    best_in = np.where((f >= 0) & (x > best_in), x, best_in)
    best_out = np.where(f_prev < 0, x_prev, high)  # the smallest point not rejected
    best_out = np.where((f < 0) & (x < best_out), x, best_out)
    tolerance = 1e-6 * np.maximum(1.0, np.abs(high - low))
    for _ in range(SOLVER_PASSES):
        if bool(np.all(best_out - best_in <= tolerance)):
            break
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            candidate = x - f * (x - x_prev) / (f - f_prev)
        # a step outside what is known (or nan) bisects instead; inside, a rejected point is
        # the new largest rejected one and any other the new smallest non-rejected one
        inside = (candidate > best_in) & (candidate < best_out)
        x_prev, f_prev = x, f
        x = np.where(inside, candidate, (best_in + best_out) * 0.5)
        f = margin(x)
        rejected = f >= 0  # nan: not rejected
        best_in = np.where(rejected, x, best_in)
        best_out = np.where(rejected, best_out, x)
    return best_in


def _logit(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(np.log(p) - np.log1p(-p), dtype=np.float64)


def _expit(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(special.expit(x), dtype=np.float64)


P_EDGE = 1e-12  # rates are searched in (P_EDGE, 1 - P_EDGE)


def bernoulli_bounds_many(
    successes: npt.ArrayLike, n: npt.ArrayLike, alpha: npt.ArrayLike, n_opt: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Rates, lower and upper confidence bounds (each at its ``alpha``) of several Bernoulli
    streams at once; no data gives (nan, 0, 1). Both bounds of every stream are searched
    together on the logit scale, the upper ones mirrored so that both reject below."""
    s = np.atleast_1d(np.asarray(successes, dtype=np.float64))
    m = np.atleast_1d(np.asarray(n, dtype=np.float64))
    count = s.size
    a = np.broadcast_to(np.asarray(alpha, dtype=np.float64), s.shape)
    n_opts = np.broadcast_to(np.asarray(n_opt, dtype=np.float64), s.shape)
    seen = m > 0
    rate = np.where(seen, s / np.where(seen, m, 1.0), np.nan)
    middle = _logit(np.clip(np.nan_to_num(rate, nan=0.5), P_EDGE, 1 - P_EDGE))
    edge = float(_logit(np.array(P_EDGE)))
    both = (np.concatenate([s, s]), np.concatenate([m, m]))
    sign = np.concatenate([np.ones(count), -np.ones(count)])
    threshold = np.log(1 / np.concatenate([a, a]))
    rows = BernoulliRows(
        both[0], both[1], np.concatenate([a, a]), np.concatenate([n_opts] * 2), sign > 0
    )

    def margin(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return rows.log_e(_expit(sign * x)) - threshold

    # start from the normal approximation on the logit scale (mirrored for the upper bounds)
    smoothed = (both[0] + 0.5) / (both[1] + 1)
    spread = 1 / np.sqrt((both[1] + 1) * smoothed * (1 - smoothed))
    width = np.sqrt(2 * threshold + 2)
    guess = sign * _logit(smoothed) - width * spread
    found = solve(
        margin,
        guess,
        0.25 * spread,
        np.full(2 * count, edge),
        np.concatenate([middle, -middle]),
    )
    low = np.where(seen & (s > 0), _expit(found[:count]), 0.0)
    high = np.where(seen & (s < m), _expit(-found[count:]), 1.0)
    low = np.where(low <= 2 * P_EDGE, 0.0, low)
    high = np.where(high >= 1 - 2 * P_EDGE, 1.0, high)
    return rate, low, high


def bernoulli_bounds(successes: int, n: int, alpha: float, n_opt: float) -> Bounds:
    """Lower and upper confidence bounds for a Bernoulli rate, each at level ``alpha``."""
    rate, low, high = bernoulli_bounds_many([successes], [n], alpha, n_opt)
    return Bounds(float(rate[0]), float(low[0]), float(high[0]))


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


def _event_rows(
    steps: Sequence[EventSplit], alpha: float, events_opt: float, upward: bool
) -> tuple[BernoulliRows, npt.NDArray[np.float64]]:
    """Each step with events as a Bernoulli row, and the steps' canary shares."""
    used = [s for s in steps if s.canary_events + s.baseline_events > 0]
    return (
        BernoulliRows(
            [s.canary_events for s in used],
            [s.canary_events + s.baseline_events for s in used],
            alpha,
            events_opt,
            upward,
        ),
        np.array([s.canary_share for s in used], dtype=np.float64),
    )


def _event_probabilities(
    theta: float | npt.NDArray[np.float64], share: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    return np.asarray(share * theta / (share * theta + 1 - share), dtype=np.float64)


def rate_ratio_evalue(
    steps: Sequence[EventSplit], theta0: float, alpha: float, events_opt: float, *, upward: bool
) -> float:
    """log e-value against "the canary's rate is at most ``theta0`` times the baseline's"
    (``upward``; evidence it is higher) or "at least" (evidence it is lower): the product of
    the steps' e-values."""
    if not any(s.canary_events + s.baseline_events for s in steps):
        return 0.0
    rows, shares = _event_rows(steps, alpha, events_opt, upward)
    return float(np.sum(rows.log_e(_event_probabilities(theta0, shares))))


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
    steps: Sequence[EventSplit],
    alpha: float,
    events_opt: float,
    max_ratio: float = 1e4,
    *,
    alpha_high: float | None = None,
) -> Bounds:
    """Confidence bounds for the canary's event rate over the baseline's, the lower at
    ``alpha`` and the upper at ``alpha_high`` (default ``alpha``): both searched at once on the
    log scale (the upper one mirrored). A ratio ``r`` below the lower bound is rejected by
    :func:`rate_ratio_evalue` (upward) at ``alpha``, one above the upper bound (downward) at
    ``alpha_high``."""
    used = [s for s in steps if s.canary_events + s.baseline_events > 0]
    if not used:
        return Bounds(math.nan, 0.0, math.inf)
    estimate = rate_ratio_estimate(used, max_ratio)
    k = len(used)
    rows = BernoulliRows(
        [s.canary_events for s in used] * 2,
        [s.canary_events + s.baseline_events for s in used] * 2,
        np.repeat([alpha, alpha if alpha_high is None else alpha_high], k),
        events_opt,
        np.repeat([True, False], k),
    )
    shares = np.array([s.canary_share for s in used] * 2, dtype=np.float64)
    thresholds = np.log(1 / np.array([alpha, alpha if alpha_high is None else alpha_high]))
    threshold = float(thresholds[0])
    edge = math.log(max_ratio)

    def margin(y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        theta = np.repeat([math.exp(y[0]), math.exp(-y[1])], k)
        log_e = rows.log_e(_event_probabilities(theta, shares))
        return np.array([log_e[:k].sum(), log_e[k:].sum()]) - thresholds

    if estimate == 0 or estimate == math.inf:  # every event on one arm: search all the way
        centre = edge if estimate == math.inf else -edge
    else:
        centre = min(max(math.log(estimate), -edge), edge)
    canary = sum(s.canary_events for s in used) + 0.5
    baseline = sum(s.baseline_events for s in used) + 0.5
    spread = math.sqrt(1 / canary + 1 / baseline)  # the log ratio's standard error
    spread *= math.sqrt(2 * threshold + 2)
    found = solve(
        margin,
        np.array([centre - spread, -centre - spread]),
        np.array([0.1 * spread, 0.1 * spread]),
        np.array([-edge, -edge]),
        np.array([centre, -centre]),
    )
    low = 0.0 if found[0] <= -edge else math.exp(found[0])
    high = math.inf if found[1] <= -edge else math.exp(-found[1])
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
        return self._mixture(alpha, v_opt).log_e(s if upward else -s, self.variance)

    def _mixture(self, alpha: float, v_opt: float) -> WeightedMixture:
        """The gamma-exponential mixture at the design ``v_opt``, a tenth and a hundredth of
        it (weights as the Bernoulli designs'), so that a small window is not judged by a
        boundary tuned for a large one."""
        return WeightedMixture(
            [
                (
                    float(weight),
                    GammaExponentialMixture(max(v_opt * scale, 1e-9), alpha, self.scale),
                )
                for scale, weight in zip(DESIGN_SCALES, DESIGN_WEIGHTS, strict=True)
            ]
        )

    def bounds(self, alpha: float, v_opt: float) -> Bounds:
        if self.count == 0:
            width = self.high - self.low
            return Bounds(math.nan, -width, width)
        mixture = self._mixture(alpha, v_opt)
        s_max = math.sqrt(self.variance + v_opt) * 10 + self.scale * 50
        radius = mixture.bound(self.variance, alpha, s_max) / self.count
        width = self.high - self.low
        estimate = self.sum / self.count
        return Bounds(estimate, max(-width, estimate - radius), min(width, estimate + radius))
