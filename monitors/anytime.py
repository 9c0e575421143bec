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

A look's rate and ratio bounds are searches (:class:`RateSearch`, :class:`RatioSearch`) that
:func:`search_together` runs in one vectorised solve, each ending bit for bit where it would
alone: a look costs one evaluation of all its e-values per pass rather than one per search.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special

from monitors.boundaries import EPSILON, Crossing, GammaExponentialMixture, WeightedMixture

SOLVER_STEPS = 60  # at most this many evaluations per root (regula falsi stops far sooner)


@dataclass(frozen=True)
class Bounds:
    """An estimate and its one-sided lower and upper confidence bounds."""

    estimate: float
    low: float
    high: float


def _bisect(predicate: Crossing, low: float, high: float) -> float:
    """The boundary point between ``low`` (predicate False) and ``high`` (True), by
    ``SOLVER_STEPS`` bisections (the crossing narrowed first, so that few are evaluated)."""
    predicate.narrow(low, high, (high - low) * 0.5**SOLVER_STEPS)
    low, high = predicate.bisect(low, high, SOLVER_STEPS)
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
    over the designs above. Everything that does not depend on ``p0`` is computed once.

    ``blocks`` (sizes summing to the rows) puts the rows of several searches together: the
    designs of each block are mixed as the block alone would mix them (a matrix product's
    rounding depends on its shape), so that every row's value is the one it has alone."""

    def __init__(
        self,
        successes: npt.ArrayLike,
        n: npt.ArrayLike,
        alpha: npt.ArrayLike,
        n_opt: npt.ArrayLike,
        upward: npt.ArrayLike,
        *,
        blocks: Sequence[int] = (),
        weights: npt.NDArray[np.float64] = DESIGN_WEIGHTS,
    ) -> None:
        s = np.atleast_1d(np.asarray(successes, dtype=np.float64))
        m = _shaped(n, s.shape, np.float64)
        up = _shaped(upward, s.shape, np.bool_)
        self.s, self.failures, self.up, self.down = s, m - s, up, ~up
        self.k = _concentrations_of(
            _shaped(alpha, s.shape, np.float64), _shaped(n_opt, s.shape, np.float64)
        )
        self.a_add = np.where(up, self.failures, s)[:, None]
        self.b_add = np.where(up, s, self.failures)[:, None]
        self.empty = m <= 0
        self.any_empty = bool(self.empty.any())
        self.blocks = _spans(blocks)
        self.weights = weights

    def log_e(self, p0: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """log e-value of each row at its ``p0`` (one per row). Near any threshold that matters
        the terms are moderate; far from it they overflow to +inf (overwhelming evidence) or
        underflow to -inf (none), which compare correctly."""
        p = np.minimum(np.maximum(p0, 1e-300), 1 - 1e-16)
        x = 1 - p  # the upward rows' (np.where(self.up, 1 - p, p), in place)
        np.putmask(x, self.down, p)
        x = x[:, None]
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
            mixed = np.exp(per_design)
            if self.blocks:
                weighted = np.concatenate(
                    [mixed[start:end] @ self.weights for start, end in self.blocks]
                )
            else:
                weighted = mixed @ self.weights
            log_e = np.log(weighted)
        if not self.any_empty:
            return np.asarray(log_e, dtype=np.float64)
        return np.asarray(np.where(self.empty, 0.0, log_e), dtype=np.float64)


def _spans(blocks: Sequence[int]) -> list[tuple[int, int]]:
    """Each block's first and end row, when there are several."""
    ends = list(itertools.accumulate(blocks))
    return list(zip([0, *ends[:-1]], ends, strict=True)) if len(ends) > 1 else []


def _shaped(
    values: npt.ArrayLike, shape: tuple[int, ...], dtype: type[np.generic]
) -> npt.NDArray[Any]:
    """``values`` as an array of ``shape`` (broadcast when they are not one already)."""
    array = np.asarray(values, dtype=dtype)
    return array if array.shape == shape else np.broadcast_to(array, shape)


def _concentrations_of(
    alpha: npt.NDArray[np.float64], n_opt: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """:func:`_concentrations` of float rows, computed once for the rows a rollout repeats at
    every look (read only)."""
    return _concentrations_cached(alpha.tobytes(), n_opt.tobytes(), alpha.shape)


@lru_cache(maxsize=256)
def _concentrations_cached(
    alpha: bytes, n_opt: bytes, shape: tuple[int, ...]
) -> npt.NDArray[np.float64]:
    k = _concentrations(
        np.frombuffer(alpha, dtype=np.float64).reshape(shape),
        np.frombuffer(n_opt, dtype=np.float64).reshape(shape),
    )
    k.flags.writeable = False
    return k


def bernoulli_log_e(
    successes: npt.ArrayLike,
    n: npt.ArrayLike,
    p0: npt.ArrayLike,
    alpha: npt.ArrayLike,
    n_opt: npt.ArrayLike,
    *,
    upward: npt.ArrayLike,
    weights: npt.NDArray[np.float64] = DESIGN_WEIGHTS,
) -> npt.NDArray[np.float64]:
    """log e-values of :class:`BernoulliRows`, one per row of the arguments (``weights``: the
    mixture's over the designs ``n_opt`` times ``DESIGN_SCALES``)."""
    rows = BernoulliRows(successes, n, alpha, n_opt, upward, weights=weights)
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
    groups: Sequence[int] = (),
) -> npt.NDArray[np.float64]:
    """Per row, the edge of the region where ``margin >= 0`` (a rejection: it holds below the
    edge, in ``[low, high]``), by the secant method from ``guess`` and ``guess + step`` on every
    row at once, one evaluation of ``margin`` per pass, bisecting once both sides are known and
    a step would leave them. Returns the largest point found where ``margin >= 0``, so that a
    confidence bound built on it stays conservative; ``low`` when none was found (nothing is
    rejected, or the search did not reach one).

    ``groups`` (sizes of consecutive rows, summing to all of them) solves several searches in
    one: each group stops when all of its rows have, as it would alone, so that every row ends
    where its search alone ends it."""
    x_prev = np.minimum(np.maximum(guess, low), high)
    x = np.minimum(np.maximum(guess + step, low), high)
    f_prev, f = margin(x_prev), margin(x)
    best_in = np.where(f_prev >= 0, x_prev, low)  # the largest rejected point seen
    best_in = np.where((f >= 0) & (x > best_in), x, best_in)
    best_out = np.where(f_prev < 0, x_prev, high)  # the smallest point not rejected
    best_out = np.where((f < 0) & (x < best_out), x, best_out)
    tolerance = 1e-6 * np.maximum(1.0, np.abs(high - low))
    if len(groups) > 1:
        starts = np.array([0, *itertools.accumulate(groups[:-1])], dtype=np.intp)
    live: npt.NDArray[np.bool_] | None = None  # the rows of the groups still searching
    # (np.putmask(a, mask, b) is a = np.where(mask, b, a) in place, for a fraction of the cost)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(SOLVER_PASSES):
            closed = best_out - best_in <= tolerance
            if len(groups) <= 1:
                if np.count_nonzero(closed) == closed.size:
                    break
            else:
                done = np.logical_and.reduceat(closed, starts)
                stopped = np.count_nonzero(done)
                if stopped == len(groups):
                    break
                live = (~done).repeat(groups) if stopped else None
            candidate = x - f * (x - x_prev) / (f - f_prev)
            # a step outside what is known (or nan) bisects instead; inside, a rejected point
            # is the new largest rejected one and any other the new smallest non-rejected one
            inside = (candidate > best_in) & (candidate < best_out)
            x_prev, f_prev = x, f
            x = (best_in + best_out) * 0.5
            np.putmask(x, inside, candidate)
            f = margin(x)
            rejected = f >= 0  # nan: not rejected
            if live is None:
                np.putmask(best_in, rejected, x)
                np.putmask(best_out, ~rejected, x)
            else:  # a group that has stopped keeps what it found
                np.putmask(best_in, rejected & live, x)
                np.putmask(best_out, ~rejected & live, x)
    return best_in


def _logit(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(np.log(p) - np.log1p(-p), dtype=np.float64)


def _expit(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(special.expit(x), dtype=np.float64)


P_EDGE = 1e-12  # rates are searched in (P_EDGE, 1 - P_EDGE)


_EDGE = float(_logit(np.array(P_EDGE)))  # the logit of P_EDGE


_Found = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]


class RateSearch:
    """The search of :func:`bernoulli_bounds_many`, to run alone or with others in one
    vectorised solve (:func:`search_together`); :meth:`result` once it has run."""

    def __init__(
        self,
        successes: npt.ArrayLike,
        n: npt.ArrayLike,
        alpha: npt.ArrayLike,
        n_opt: npt.ArrayLike,
    ) -> None:
        self.s = np.atleast_1d(np.asarray(successes, dtype=np.float64))
        self.m = np.atleast_1d(np.asarray(n, dtype=np.float64))
        self.alpha = _shaped(alpha, self.s.shape, np.float64)
        self.n_opt = _shaped(n_opt, self.s.shape, np.float64)
        self.found: _Found | None = None

    def result(self) -> _Found:
        """Rates, lower and upper confidence bounds (each at its ``alpha``); no data gives
        (nan, 0, 1)."""
        assert self.found is not None, "run the search first"
        return self.found


class _Rates:
    """The rate searches of one solve, prepared together (every step is row by row, so each
    row's values are those of its search alone). Each search's rows are its lower bounds, then
    its upper bounds: both searched on the logit scale, the upper ones mirrored so that both
    reject below."""

    def __init__(self, searches: Sequence[RateSearch]) -> None:
        self.searches = searches
        sizes = [search.s.size for search in searches]
        self.ends = list(itertools.accumulate(sizes))
        s = np.concatenate([search.s for search in searches])
        m = np.concatenate([search.m for search in searches])
        a = np.concatenate([search.alpha for search in searches])
        n_opts = np.concatenate([search.n_opt for search in searches])
        lower, upper, twice, sign = _layout(tuple(sizes))
        self.lower, self.upper, self.s, self.m = lower, upper, s, m
        seen = m > 0
        self.rate = np.where(seen, s / np.where(seen, m, 1.0), np.nan)
        # as np.clip(np.nan_to_num(rate, nan=0.5), P_EDGE, 1 - P_EDGE), with fewer calls
        known = np.where(np.isnan(self.rate), 0.5, self.rate)
        middle = _logit(np.minimum(np.maximum(known, P_EDGE), 1 - P_EDGE))
        both = (s[twice], m[twice])
        self.sign = sign
        self.threshold = np.log(1 / a[twice])
        self.rows = _Rows(both[0], both[1], a[twice], n_opts[twice], self.sign > 0)
        # start from the normal approximation on the logit scale (mirrored for the upper bounds)
        smoothed = (both[0] + 0.5) / (both[1] + 1)
        spread = 1 / np.sqrt((both[1] + 1) * smoothed * (1 - smoothed))
        width = np.sqrt(2 * self.threshold + 2)
        self.start = _Start(
            self.sign * _logit(smoothed) - width * spread,
            0.25 * spread,
            np.full(2 * s.size, _EDGE),
            self.sign * middle[twice],
        )
        self.sizes = [2 * size for size in sizes]
        self._has = (seen & (s > 0), seen & (s < m))

    def finish(self, found: npt.NDArray[np.float64]) -> None:
        """Each search's result from where the solve found the edges."""
        low = np.where(self._has[0], _expit(found[self.lower]), 0.0)
        high = np.where(self._has[1], _expit(-found[self.upper]), 1.0)
        low = np.where(low <= 2 * P_EDGE, 0.0, low)
        high = np.where(high >= 1 - 2 * P_EDGE, 1.0, high)
        for search, start, end in zip(self.searches, [0, *self.ends[:-1]], self.ends, strict=True):
            search.found = (self.rate[start:end], low[start:end], high[start:end])


@lru_cache(maxsize=64)
def _layout(
    sizes: tuple[int, ...],
) -> tuple[
    npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float64]
]:
    """Where each search's streams go among the rows of :class:`_Rates` (each search's rows:
    its streams' lower bounds, then their upper bounds): the lower bounds' rows, the upper
    bounds' rows, the stream of each row, and each row's sign (+1 lower, -1 upper). Read only."""
    ends = np.cumsum(sizes)
    lower = np.concatenate(
        [np.arange(end - size, end) + end - size for size, end in zip(sizes, ends, strict=True)]
    )
    upper = lower + np.repeat(sizes, sizes)
    twice = np.empty(2 * int(ends[-1]), dtype=np.intp)
    twice[lower] = twice[upper] = np.arange(int(ends[-1]))
    sign = np.ones(twice.size)
    sign[upper] = -1.0
    for array in (lower, upper, twice, sign):
        array.flags.writeable = False
    return lower, upper, twice, sign


@dataclass(frozen=True)
class _Rows:
    """A search's Bernoulli rows: the arguments of :class:`BernoulliRows`."""

    successes: npt.ArrayLike
    n: npt.ArrayLike
    alpha: npt.ArrayLike
    n_opt: npt.ArrayLike
    upward: npt.ArrayLike


@dataclass(frozen=True)
class _Start:
    """Where :func:`solve` starts a search: ``guess``, ``step``, ``low``, ``high``."""

    guess: npt.NDArray[np.float64]
    step: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]


def bernoulli_bounds_many(
    successes: npt.ArrayLike, n: npt.ArrayLike, alpha: npt.ArrayLike, n_opt: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Rates, lower and upper confidence bounds (each at its ``alpha``) of several Bernoulli
    streams at once; no data gives (nan, 0, 1). Both bounds of every stream are searched
    together on the logit scale, the upper ones mirrored so that both reject below."""
    search = RateSearch(successes, n, alpha, n_opt)
    search_together([search])
    return search.result()


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

    events = [(s.canary_events + s.baseline_events, s.canary_share) for s in steps]

    def expected(log_theta: float) -> float:
        theta = math.exp(log_theta)
        total: float = 0  # each step's events times event_probability(theta, share), summed
        for n, share in events:
            total += n * (share * theta / (share * theta + 1 - share))
        return total

    log_bound = math.log(max_ratio)
    # each term's rounding is a few parts in 2**52 of it (more where 1 - share cancels), and
    # near the crossing the terms add up to about `seen`: 16 times that bounds the sum's
    wobble = max(1 / (1 - share) for _, share in events) + len(events) + 6
    crossing = Crossing(expected, seen, noise=16 * EPSILON * wobble * seen)
    return math.exp(_bisect(crossing, -log_bound, log_bound))


class RatioSearch:
    """The search of :func:`rate_ratio_bounds`, to run alone or with others in one vectorised
    solve (:func:`search_together`); :meth:`result` once it has run."""

    def __init__(
        self,
        steps: Sequence[EventSplit],
        alpha: float,
        events_opt: float,
        max_ratio: float = 1e4,
        *,
        alpha_high: float | None = None,
    ) -> None:
        used = [s for s in steps if s.canary_events + s.baseline_events > 0]
        self.k = k = len(used)
        self.found: npt.NDArray[np.float64] | None = None
        self.edge = edge = math.log(max_ratio)
        self.estimate = math.nan
        if not used:
            return
        self.estimate = estimate = rate_ratio_estimate(used, max_ratio)
        self.rows = _Rows(
            [s.canary_events for s in used] * 2,
            [s.canary_events + s.baseline_events for s in used] * 2,
            np.array([alpha] * k + [alpha if alpha_high is None else alpha_high] * k),
            np.full(2 * k, events_opt, dtype=np.float64),
            np.array([True] * k + [False] * k),
        )
        self.shares = np.array([s.canary_share for s in used] * 2, dtype=np.float64)
        self.thresholds = np.log(1 / np.array([alpha, alpha if alpha_high is None else alpha_high]))
        threshold = float(self.thresholds[0])
        if estimate == 0 or estimate == math.inf:  # every event on one arm: search all the way
            centre = edge if estimate == math.inf else -edge
        else:
            centre = min(max(math.log(estimate), -edge), edge)
        canary = sum(s.canary_events for s in used) + 0.5
        baseline = sum(s.baseline_events for s in used) + 0.5
        spread = math.sqrt(1 / canary + 1 / baseline)  # the log ratio's standard error
        spread *= math.sqrt(2 * threshold + 2)
        self.start = _Start(
            np.array([centre - spread, -centre - spread]),
            np.array([0.1 * spread, 0.1 * spread]),
            np.array([-edge, -edge]),
            np.array([centre, -centre]),
        )

    def result(self) -> Bounds:
        if not self.k:
            return Bounds(math.nan, 0.0, math.inf)
        assert self.found is not None, "run the search first"
        found, edge = self.found, self.edge
        low = 0.0 if found[0] <= -edge else math.exp(found[0])
        high = math.inf if found[1] <= -edge else math.exp(-found[1])
        return Bounds(self.estimate, low, high)


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
    search = RatioSearch(steps, alpha, events_opt, max_ratio, alpha_high=alpha_high)
    search_together([search])
    return search.result()


def search_together(searches: Sequence[RateSearch | RatioSearch]) -> None:
    """Run several searches in one vectorised solve, each one's result as it is alone.

    One evaluation of every search's Bernoulli rows per pass (a block each, see
    :class:`BernoulliRows`) instead of one per search and pass: each search is a group of
    :func:`solve`, which stops it where it would stop alone. The rows of the rate searches
    come first (a row per unknown), then those of the ratio searches (each step's row twice,
    for the lower and the upper bound, summed into two unknowns)."""
    given = [s for s in searches if isinstance(s, RateSearch)]
    for search in given:
        if not search.s.size:
            search.found = (np.zeros(0), np.zeros(0), np.zeros(0))
    rated = [s for s in given if s.s.size]
    ratios = [s for s in searches if isinstance(s, RatioSearch) and s.k]
    if rated or ratios:
        _Joint(_Rates(rated) if rated else None, ratios).run()


class _Joint:
    """The one solve of :func:`search_together`, and its margin."""

    def __init__(self, rates: _Rates | None, ratios: Sequence[RatioSearch]) -> None:
        self.rates, self.ratios = rates, ratios
        self.parts: list[_Rates | RatioSearch] = [*([rates] if rates else []), *ratios]
        self.sizes = [*(rates.sizes if rates else []), *(2 for _ in ratios)]  # unknowns
        self.blocks = [*(rates.sizes if rates else []), *(2 * r.k for r in ratios)]  # rows
        self.rows = BernoulliRows(
            *(
                np.concatenate(
                    [np.atleast_1d(np.asarray(getattr(s.rows, name))) for s in self.parts]
                )
                for name in ("successes", "n", "alpha", "n_opt", "upward")
            ),
            blocks=self.blocks,
        )
        self.n_rate = n_rate = rates.sign.size if rates else 0
        self.shares = np.concatenate([r.shares for r in ratios]) if ratios else np.zeros(0)
        # each ratio search: its first unknown, first row, steps and thresholds
        self.at: list[tuple[int, int, int, float, float]] = []
        first = n_rate
        for i, r in enumerate(ratios):
            low_at, high_at = r.thresholds.tolist()
            self.at.append((n_rate + 2 * i, first, r.k, low_at, high_at))
            first += 2 * r.k

    def run(self) -> None:
        def joined(name: str) -> npt.NDArray[np.float64]:
            return np.concatenate([getattr(s.start, name) for s in self.parts])

        found = solve(
            self.margin,
            joined("guess"),
            joined("step"),
            joined("low"),
            joined("high"),
            groups=self.sizes,
        )
        if self.rates is not None:
            self.rates.finish(found[: self.n_rate])
        for search, (u, *_) in zip(self.ratios, self.at, strict=True):
            search.found = found[u : u + 2]

    def probabilities(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Each row's ``p0`` at the unknowns ``x``."""
        n_rate, rates = self.n_rate, self.rates
        p = np.empty(self.shares.size + n_rate)
        if rates is not None:
            special.expit(rates.sign * x[:n_rate], out=p[:n_rate])
        if self.at:
            theta = np.empty(self.shares.size)
            for u, first, k, _, _ in self.at:
                theta[first - n_rate : first - n_rate + k] = math.exp(x[u])
                theta[first - n_rate + k : first - n_rate + 2 * k] = math.exp(-x[u + 1])
            chance = self.shares * theta  # as _event_probabilities
            np.divide(chance, chance + 1 - self.shares, out=p[n_rate:])
        return p

    def margins(self, log_e: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Each unknown's margin from the rows' log e-values."""
        n_rate, rates = self.n_rate, self.rates
        f = np.empty(n_rate + 2 * len(self.at))
        if rates is not None:
            np.subtract(log_e[:n_rate], rates.threshold, out=f[:n_rate])
        for u, first, k, low_at, high_at in self.at:
            if k == 1:  # a sum of one
                f[u], f[u + 1] = log_e[first] - low_at, log_e[first + 1] - high_at
            else:
                f[u] = float(log_e[first : first + k].sum()) - low_at
                f[u + 1] = float(log_e[first + k : first + 2 * k].sum()) - high_at
        return f

    def margin(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return self.margins(self.rows.log_e(self.probabilities(x)))


VARIANCE_GRID = 1.01  # a boundary is computed for the variance rounded up to this grid


def boundary_on_grid(alpha: float, v_opt: float, c: float, variance: float) -> float:
    """The boundary of :meth:`MeanDifference._mixture` at ``variance`` rounded up to a point of
    a 1% geometric grid, cached: a mixture's boundary grows with the variance (each of its
    parts ``exp(lambda s - psi(lambda) v)`` falls as ``v`` grows, for every ``lambda``), so the
    rounded one is a little wider, never narrower, and a look whose variance grew by less than
    1% (a long window, looked at often) costs a dictionary lookup."""
    if not variance > 0:
        return _boundary(alpha, v_opt, c, None)
    index = math.ceil(math.log(variance) / math.log(VARIANCE_GRID) - 1e-9)
    return _boundary(alpha, v_opt, c, index)


@lru_cache(maxsize=16_384)
def _boundary(alpha: float, v_opt: float, c: float, index: int | None) -> float:
    v = 0.0 if index is None else VARIANCE_GRID**index
    s_max = math.sqrt(v + v_opt) * 10 + c * 50
    return _gamma_mixture(alpha, v_opt, c).bound(v, alpha, s_max)


@lru_cache(maxsize=256)
def _gamma_mixture(alpha: float, v_opt: float, c: float) -> WeightedMixture:
    """:meth:`MeanDifference._mixture` (fixed for a rollout, so built once)."""
    return WeightedMixture(
        [
            (float(weight), GammaExponentialMixture(max(v_opt * scale, 1e-9), alpha, c))
            for scale, weight in zip(DESIGN_SCALES, DESIGN_WEIGHTS, strict=True)
        ]
    )


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
        return _gamma_mixture(alpha, v_opt, self.scale)

    def bounds(self, alpha: float, v_opt: float) -> Bounds:
        if self.count == 0:
            width = self.high - self.low
            return Bounds(math.nan, -width, width)
        radius = boundary_on_grid(alpha, v_opt, self.scale, self.variance) / self.count
        width = self.high - self.low
        estimate = self.sum / self.count
        return Bounds(estimate, max(-width, estimate - radius), min(width, estimate + radius))
