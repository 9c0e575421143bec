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
from typing import Protocol

from scipy import special

BISECTIONS = 40  # relative precision ~1e-12 of the bracket: far below any decision's scale


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


def _bisect_bound(mixture: LogE, v: float, alpha: float, s_max: float) -> float:
    threshold = math.log(1 / alpha)
    low, high = 0.0, max(s_max, 1e-12)
    for _ in range(200):  # widen until the e-value crosses (or the support ends)
        if mixture.log_e(high, v) >= threshold or high >= s_max:
            break
        high *= 2
    if mixture.log_e(high, v) < threshold:
        return math.inf  # never reached: no evidence can cross at this v
    for _ in range(BISECTIONS):
        middle = (low + high) / 2
        if mixture.log_e(middle, v) >= threshold:
            high = middle
        else:
            low = middle
    return high


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
        # M = C e^k \int_0^1 x^(a-1) e^(-k x) dx, a = (v + rho) / c^2, k = (c s + v + rho) / c^2
        # (x = 1 - c lambda); the integral is k^-a Gamma(a) P(a, k) for k > 0, and
        # 1F1(a; a + 1; -k) / a otherwise.
        c_sq = self.c * self.c
        shape = (v + self.rho) / c_sq
        k = (self.c * s + v + self.rho) / c_sq
        if k > 0:
            tail = float(special.gammainc(shape, k))
            if tail <= 0:
                return -math.inf
            log_integral = math.lgamma(shape) + math.log(tail) - shape * math.log(k)
        else:
            log_integral = math.log(float(special.hyp1f1(shape, shape + 1, -k))) - math.log(shape)
        return self._lead + log_integral + (self.c * s + v) / c_sq

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
        logs = [log_weight + mixture.log_e(s, v) for log_weight, mixture in self.parts]
        top = max(logs)
        if not math.isfinite(top):
            return top
        return top + math.log(sum(math.exp(x - top) for x in logs))

    def bound(self, v: float, alpha: float, s_max: float) -> float:
        return _bisect_bound(self, v, alpha, s_max)
