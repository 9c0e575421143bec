"""Time-uniform boundaries: mixture supermartingales and the curves they never cross.

A process ``S_t`` (a running sum of centred increments) with a variance process ``V_t`` is
*sub-psi* when ``exp(lambda * S_t - psi(lambda) * V_t)`` is a supermartingale for every
``lambda`` in a range. Mixing that supermartingale over ``lambda`` gives one supermartingale
``M(S_t, V_t)`` whose log is computed here; by Ville's inequality it exceeds ``1/alpha`` with
probability at most ``alpha`` *ever*, so ``{S : log M(S, V) < log(1/alpha)}`` is a boundary
that holds at every time at once, however often it is looked at.

The mixtures are those of Howard, Ramdas, McAuliffe & Sekhon (2021), "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Annals of Statistics 49(2), section 3
(the same closed forms as their reference library, ``confseq``):

- :class:`NormalMixture`: sub-Gaussian processes (psi = lambda^2 / 2) mixed over
  ``lambda ~ N(0, 1/rho)``, two-sided, or over its positive half, one-sided.
- :class:`GammaExponentialMixture`: sub-exponential processes with scale ``c``
  (``psi_E(l) = (-log(1 - c l) - c l) / c^2``) mixed over ``lambda`` in ``[0, 1/c)`` with density
  proportional to ``(1 - c lambda)^(rho/c^2 - 1) exp(lambda rho / c)``. Bounded increments with
  a predictable centring are sub-exponential with ``c`` the range (their empirical-Bernstein
  theorem), which is how the manager's mean differences use it.
- :class:`BetaBinomialMixture`: sub-Bernoulli processes with increments in ``[-g, h]``. For
  Bernoulli(p0) observations (``g = p0``, ``h = 1 - p0``) it is exactly the Bayes factor of a
  beta prior on the mean against ``p0``: valid at any rate however rare.

Each mixture is tuned for an intrinsic time ``v_opt`` (the boundary is tightest near it; any
``v_opt`` gives a valid boundary): ``rho = v_opt / (2 log(1/a) + log(1 + 2 log(1/a)))`` with
``a = alpha`` two-sided and ``2 alpha`` one-sided. ``tests/unit/monitors/test_boundaries.py``
checks every closed form against a numerical integral of its mixture, and their coverage by
simulation. :meth:`Mixture.bound` is the smallest ``s`` at which ``log M(s, v)`` reaches
``log(1/alpha)`` (bisection); :meth:`Mixture.log_e` is the log e-value of an observed
``(s, v)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

from scipy import special
from scipy.special import cython_special

BISECTIONS = 40  # relative precision ~1e-12 of the bracket: far below any decision's scale
EPSILON = 2.0**-52  # a double's relative spacing; rounding errors are counted in it


class LogE(Protocol):
    def log_e(self, s: float, v: float) -> float:
        """log M(s, v): the log of the mixture supermartingale at sum ``s``, variance ``v``."""
        ...


class Mixture(LogE, Protocol):
    def bound(self, v: float, alpha: float) -> float:
        """The smallest ``s >= 0`` with ``log_e(s, v) >= log(1/alpha)``."""
        ...


def best_rho(v_opt: float, alpha: float, *, one_sided: bool) -> float:
    """The mixture precision that makes the boundary tightest at intrinsic time ``v_opt``."""
    if v_opt <= 0:
        raise ValueError(f"v_opt must be > 0, got {v_opt}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    a = 2 * alpha if one_sided else alpha
    log_inv = math.log(1 / a)
    return v_opt / (2 * log_inv + math.log(1 + 2 * log_inv))


class Crossing:
    """The predicate ``value(x) >= level`` of a ``value`` that never decreases in ``x`` (an
    e-value as its sum grows, an expected count as its ratio grows), for a bisection to ask.

    Each point is evaluated once, and only where the answer is not yet known for certain:
    computed with rounding errors of at most ``noise``, the value may wobble where it crosses
    ``level``, but below a point where it fell short by more than twice ``noise`` every point
    fails as computed too, and above one where it reached ``level`` by twice ``noise`` every
    point holds. :meth:`narrow` evaluates a few points near the crossing first (regula falsi),
    so that :meth:`bisect` then finds all of its answers but a few already known: the answers,
    so the result, of evaluating every midpoint, for a fraction of the cost. (With ``noise``
    infinite no answer is inferred.)
    """

    __slots__ = ("failed_at", "failed_by", "gaps", "held_at", "held_by", "level", "noise", "value")

    def __init__(self, value: Callable[[float], float], level: float, noise: float = 0.0) -> None:
        self.value, self.level, self.noise = value, level, noise
        self.failed_at, self.failed_by = -math.inf, math.nan  # below it, sure fails; its gap
        self.held_at, self.held_by = math.inf, math.nan  # above it, sure holds; its gap
        self.gaps: dict[float, float] = {}  # value - level at every point evaluated

    def __call__(self, x: float) -> bool:
        if x <= self.failed_at:
            return False
        if x >= self.held_at:
            return True
        return self.gap(x) >= 0  # (a nan gap fails, as the value's comparison does)

    def gap(self, x: float) -> float:
        """``value(x) - level`` (its sign is the comparison's), evaluated once."""
        found = self.gaps.get(x)
        if found is not None:
            return found
        gap = self.gaps[x] = self.value(x) - self.level
        if gap >= 2 * self.noise:
            if x < self.held_at:
                self.held_at, self.held_by = x, gap
        elif gap < -2 * self.noise and x > self.failed_at:
            self.failed_at, self.failed_by = x, gap
        return gap

    def bisect(self, low: float, high: float, steps: int) -> tuple[float, float]:
        """``low`` and ``high`` after ``steps`` halvings: each midpoint replaces ``high`` where
        the predicate holds, ``low`` where it fails."""
        for _ in range(steps):
            middle = (low + high) / 2
            if middle <= self.failed_at:
                low = middle
            elif middle >= self.held_at or self.gap(middle) >= 0:
                high = middle
            else:
                low = middle
        return low, high

    def narrow(self, low: float, high: float, width: float, passes: int = 24) -> None:
        """Evaluate at ``low`` and ``high`` unless known, then at up to ``passes`` points in
        between (the Illinois variant of regula falsi) until the failing and holding points
        found are at most ``width`` apart, or the value is within its rounding of ``level``;
        then just outside that wobble, so that the answers known for certain close in on it.
        Only which answers are known changes."""
        if not (math.isfinite(low) and math.isfinite(high) and low < high and width > 0):
            return
        a, fa = (self.failed_at, self.failed_by) if self.failed_at >= low else (low, self.gap(low))
        b, fb = (self.held_at, self.held_by) if self.held_at <= high else (high, self.gap(high))
        if not (fa < 0 <= fb and math.isfinite(fa) and math.isfinite(fb)):
            return  # no crossing between them (or no gaps to interpolate)
        side, scale_a, scale_b = 0, 1.0, 1.0  # Illinois: halve the gap of an end that stays
        for _ in range(passes):
            if b - a <= width:
                return
            slope = (fb - fa) / (b - a)
            x = b - fb * scale_b * (b - a) / (fb * scale_b - fa * scale_a)
            if not a < x < b:  # (or nan) bisect
                x = a + (b - a) / 2
                if not a < x < b:  # a and b are adjacent floats
                    return
            gap = self.gap(x)
            if not math.isfinite(gap):
                return
            if gap >= 0:
                b, fb = x, gap
                scale_a, scale_b, side = (scale_a / 2 if side == 1 else 1.0), 1.0, 1
            else:
                a, fa = x, gap
                scale_a, scale_b, side = 1.0, (scale_b / 2 if side == -1 else 1.0), -1
            if abs(gap) < 2 * self.noise:  # within the wobble: sure points just outside it
                self._outside(x, 4 * self.noise / slope, low, high)
                return

    def _outside(self, x: float, step: float, low: float, high: float) -> None:
        """Evaluate below and above ``x``, ``step`` away and then farther, until the answer
        there is sure."""
        if not (step > 0 and math.isfinite(step)):
            return
        for side in (-1.0, 1.0):
            distance = step
            for _ in range(8):
                point = x + side * distance
                if not low < point < high:
                    break
                gap = self.gap(point)
                if (gap < -2 * self.noise) if side < 0 else (gap >= 2 * self.noise):
                    break
                distance *= 4


def _at(mixture: LogE, v: float) -> Callable[[float], float]:
    """``s -> mixture.log_e(s, v)``, with what depends on ``v`` alone computed once when the
    mixture can (``at``)."""
    at: Callable[[float], Callable[[float], float]] | None = getattr(mixture, "at", None)
    if at is not None:
        return at(v)
    return lambda s: mixture.log_e(s, v)


def _bisect_bound(mixture: LogE, v: float, alpha: float, s_max: float) -> float:
    threshold = math.log(1 / alpha)
    low, high = 0.0, max(s_max, 1e-12)
    # a mixture that bounds its rounding lets the bisection infer most answers (Crossing); any
    # other has every midpoint evaluated
    noise: Callable[[float, float], float] | None = getattr(mixture, "noise", None)
    value = _at(mixture, v)
    crosses = Crossing(value, threshold)
    for _ in range(200):  # widen until the e-value crosses (or the support ends)
        if crosses(high) or high >= s_max:
            break
        high *= 2
    if crosses.gap(high) < 0:
        return math.inf  # never reached: no evidence can cross at this v
    rounding = math.inf if noise is None else noise(v, high)
    if not math.isfinite(rounding):
        for _ in range(BISECTIONS):
            middle = (low + high) / 2
            if value(middle) >= threshold:
                high = middle
            else:
                low = middle
        return high
    crosses.noise = rounding
    crosses.narrow(low, high, (high - low) * 0.5**BISECTIONS)
    return crosses.bisect(low, high, BISECTIONS)[1]


class NormalMixture:
    """Sub-Gaussian: ``exp(lambda S - lambda^2 V / 2)`` mixed over ``lambda ~ N(0, 1/rho)``
    (two-sided), or over its positive half (one-sided, evidence that S drifts upward)."""

    def __init__(self, v_opt: float, alpha: float, *, one_sided: bool = True) -> None:
        self.rho = best_rho(v_opt, alpha, one_sided=one_sided)
        self.one_sided = one_sided

    def log_e(self, s: float, v: float) -> float:
        total = v + self.rho
        if self.one_sided:
            return (
                0.5 * math.log(4 * self.rho / total)
                + s * s / (2 * total)
                + float(special.log_ndtr(s / math.sqrt(total)))
            )
        return 0.5 * math.log(self.rho / total) + s * s / (2 * total)

    def bound(self, v: float, alpha: float) -> float:
        if not self.one_sided:  # closed form (their eq. (14))
            total = v + self.rho
            return math.sqrt(total * (math.log(total / self.rho) + 2 * math.log(1 / alpha)))
        return _bisect_bound(self, v, alpha, math.sqrt(v + self.rho) * 10)


class GammaExponentialMixture:
    """Sub-exponential with scale ``c``: ``exp(lambda S - psi_E(lambda) V)``,
    ``psi_E(l) = (-log(1 - c l) - c l) / c^2``, mixed over a gamma distribution of
    ``lambda`` on ``[0, 1/c)``. One-sided: evidence that S drifts upward."""

    def __init__(self, v_opt: float, alpha: float, c: float) -> None:
        if c <= 0:
            raise ValueError(f"c must be > 0, got {c}")
        self.rho = best_rho(v_opt, alpha, one_sided=True)
        self.c = c
        shape = self.rho / (c * c)
        self._lead = (
            shape * math.log(shape)
            - math.lgamma(shape)
            - math.log(float(special.gammainc(shape, shape)))
        )

    def log_e(self, s: float, v: float) -> float:
        return self.at(v)(s)

    def at(self, v: float) -> Callable[[float], float]:
        """``s -> log_e(s, v)``, what depends on ``v`` alone computed once."""
        # M = C e^k \int_0^1 x^(a-1) e^(-k x) dx, a = (v + rho) / c^2, k = (c s + v + rho) / c^2
        # (x = 1 - c lambda); the integral is k^-a Gamma(a) P(a, k) for k > 0, and
        # 1F1(a; a + 1; -k) / a otherwise. (cython_special: the ufuncs' own code, without a
        # ufunc call's cost for one number.)
        c, rho, lead = self.c, self.rho, self._lead
        c_sq = c * c
        shape = (v + rho) / c_sq
        log_gamma = math.lgamma(shape) if shape > 0 else None  # (v < 0: when asked, as before)
        gammainc, log = cython_special.gammainc, math.log

        def log_e(s: float) -> float:
            cs = c * s
            k = (cs + v + rho) / c_sq
            if k > 0:
                tail: float = gammainc(shape, k)
                if tail <= 0:
                    return -math.inf
                lead_gamma = math.lgamma(shape) if log_gamma is None else log_gamma
                log_integral = lead_gamma + log(tail) - shape * log(k)
            else:
                confluent = float(cython_special.hyp1f1(shape, shape + 1, -k))
                log_integral = math.log(confluent) - math.log(shape)
            return lead + log_integral + (cs + v) / c_sq

        return log_e

    def noise(self, v: float, s_max: float) -> float:
        """A bound on the rounding error of :meth:`log_e` at ``v`` for ``s`` in ``[0, s_max]``:
        16 units of 2**-52 of the terms it adds (which cancel to a few units of their size),
        and 1e-12 for the incomplete gamma function's own."""
        c_sq = self.c * self.c
        shape = (v + self.rho) / c_sq
        if not shape > 0:
            return math.inf
        widest = (self.c * s_max + v + self.rho) / c_sq  # k grows with s from shape
        terms = (
            abs(self._lead)
            + abs(math.lgamma(shape))
            + shape * max(abs(math.log(shape)), abs(math.log(widest)))
            + (self.c * s_max + v) / c_sq
            + 1
        )
        return 16 * EPSILON * terms + 1e-12

    def bound(self, v: float, alpha: float) -> float:
        return _bisect_bound(self, v, alpha, math.sqrt(v + self.rho) * 10 + self.c * 50)


class BetaBinomialMixture:
    """Sub-Bernoulli with increments in ``[-g, h]`` (a Bernoulli(g) observation minus its mean
    has ``h = 1 - g``): the binomial likelihood ratio mixed over a beta distribution; exact for
    Bernoulli data, so valid at any rate however rare. One-sided (upward) or two-sided."""

    def __init__(
        self, v_opt: float, alpha: float, g: float, h: float, *, one_sided: bool = True
    ) -> None:
        if g <= 0 or h <= 0:
            raise ValueError(f"g and h must be > 0, got {g}, {h}")
        self.g, self.h, self.one_sided = g, h, one_sided
        rho = best_rho(v_opt, alpha, one_sided=one_sided)
        self.r = max(rho - g * h, 1e-3 * g * h)
        self._x = h / (g + h) if one_sided else 1.0
        self._normalizer = _log_incomplete_beta(
            self.r / (g * (g + h)), self.r / (h * (g + h)), self._x
        )

    def log_e(self, s: float, v: float) -> float:
        g, h = self.g, self.h
        a = (self.r + v - g * s) / (g * (g + h))
        b = (self.r + v + h * s) / (h * (g + h))
        if a <= 0 or b <= 0:
            return math.inf if a <= 0 else -math.inf
        return (
            v / (g * h) * math.log(g + h)
            - (v + h * s) / (h * (g + h)) * math.log(g)
            - (v - g * s) / (g * (g + h)) * math.log(h)
            + _log_incomplete_beta(a, b, self._x)
            - self._normalizer
        )

    def bound(self, v: float, alpha: float) -> float:
        return _bisect_bound(self, v, alpha, v / self.g)


def _log_incomplete_beta(a: float, b: float, x: float) -> float:
    """log of the (unregularized) incomplete beta function B(x; a, b)."""
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    if x >= 1.0:
        return log_beta
    regularized = float(special.betainc(a, b, x))
    return math.log(regularized) + log_beta if regularized > 0 else -math.inf


class WeightedMixture:
    """A weighted mixture of mixtures (weights summing to one) is again a supermartingale
    (Howard et al. 2021, the mixture method once more): several designs ``v_opt`` at once, so
    that the boundary is near the best one far from the main design too."""

    def __init__(self, parts: list[tuple[float, LogE]]) -> None:
        total = sum(weight for weight, _ in parts)
        if not parts or abs(total - 1.0) > 1e-9:
            raise ValueError(f"weights must sum to 1, got {total}")
        self.parts = [(math.log(weight), mixture) for weight, mixture in parts]

    def log_e(self, s: float, v: float) -> float:
        return self.at(v)(s)

    def at(self, v: float) -> Callable[[float], float]:
        """``s -> log_e(s, v)``, what depends on ``v`` alone computed once."""
        parts = [(log_weight, _at(mixture, v)) for log_weight, mixture in self.parts]

        def log_e(s: float) -> float:
            logs = [log_weight + part(s) for log_weight, part in parts]
            top = max(logs)
            if not math.isfinite(top):
                return top
            total = 0.0  # as sum(): left to right
            for x in logs:
                total += math.exp(x - top)
            return top + math.log(total)

        return log_e

    def noise(self, v: float, s_max: float) -> float:
        """A bound on the rounding error of :meth:`log_e` (the parts' and the sum's); infinite
        when a part has none."""
        total = 1e-12
        for _, mixture in self.parts:
            part: Callable[[float, float], float] | None = getattr(mixture, "noise", None)
            if part is None:
                return math.inf
            total += part(v, s_max)
        return total

    def bound(self, v: float, alpha: float, s_max: float) -> float:
        return _bisect_bound(self, v, alpha, s_max)
