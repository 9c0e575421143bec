"""Always-valid p-values: the mixture sequential probability ratio test (mSPRT).

A gate that is checked after every batch must not be judged by a fixed-horizon p-value: with
enough looks a healthy canary eventually crosses ``p < alpha`` by chance (Kayenta's problem).
Here every test statistic is an estimate ``theta_hat`` of a difference with (asymptotic)
variance ``V`` (which shrinks like 1/n), and the evidence against H0: ``theta <= null`` is the
likelihood ratio of a Gaussian model mixed over alternatives ``theta - null ~ N+(0, tau^2)``
(half-normal, one-sided) or ``N(0, tau^2)`` (two-sided). With ``x = theta_hat - null``::

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 x^2 / (2 V (V + tau^2))) * [2 Phi(u)]_one-sided
    u = x tau / sqrt(V (V + tau^2))

``Lambda`` is a nonnegative (super)martingale under H0, so by Ville's inequality
``P(sup_n Lambda_n >= 1/alpha) <= alpha``: the p-value ``min(1, 1 / Lambda)`` is always valid.
A caller that stops (rolls back) at the first look with ``p < alpha`` keeps the false-rollback
rate at ``alpha`` however often it looks; a caller that keeps looking after a rejection should
carry the running minimum of the p-values (`running_min`).

`tau` is the size of effect the test is tuned to. A single scale is slow to catch effects far
larger than `tau` in small samples, so the evidence is a mixture of four such ratios at scales
``tau, 3 tau, 10 tau, 30 tau`` with weights ``1/2, 1/6, 1/6, 1/6`` (a mixture of martingales is
a martingale, so validity is unchanged; the price is at most a factor 2 of evidence at `tau`).

Every function is vectorised over numpy arrays, so the decision benchmark judges thousands of
simulated rollouts at once with this same code.

`n_for_power` gives the observations per arm at which an effect of a given size is detected with
the given probability (normal approximation), reported when a gate is still inconclusive.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import special

from monitors import _normal as normal

FloatLike = float | npt.NDArray[np.float64]

_LOG2 = math.log(2.0)
MIN_VARIANCE = 1e-18
TAU_MULTIPLIERS = (1.0, 3.0, 10.0, 30.0)
TAU_WEIGHTS = (0.5, 1.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0)


def log_mixture_ratio(
    excess: npt.ArrayLike, variance: npt.ArrayLike, tau: float, *, one_sided: bool = True
) -> npt.NDArray[np.float64]:
    """log Lambda for an estimate exceeding its null by `excess` with variance `variance`."""
    x = np.asarray(excess, dtype=np.float64)
    v = np.maximum(np.asarray(variance, dtype=np.float64), MIN_VARIANCE)
    t2 = float(tau) ** 2
    log_lr = 0.5 * np.log(v / (v + t2)) + t2 * x * x / (2.0 * v * (v + t2))
    if one_sided:
        u = x * float(tau) / np.sqrt(v * (v + t2))
        log_lr = log_lr + _LOG2 + special.log_ndtr(u)
    return np.asarray(log_lr, dtype=np.float64)


def log_evidence(
    excess: npt.ArrayLike, variance: npt.ArrayLike, tau: float, *, one_sided: bool = True
) -> npt.NDArray[np.float64]:
    """log of the weighted mixture of `log_mixture_ratio` over the scales ``TAU_MULTIPLIERS``."""
    terms = [
        math.log(weight) + log_mixture_ratio(excess, variance, tau * scale, one_sided=one_sided)
        for scale, weight in zip(TAU_MULTIPLIERS, TAU_WEIGHTS, strict=True)
    ]
    return np.asarray(special.logsumexp(np.stack(terms), axis=0), dtype=np.float64)


def always_valid_p(
    excess: npt.ArrayLike, variance: npt.ArrayLike, tau: float, *, one_sided: bool = True
) -> npt.NDArray[np.float64]:
    """``min(1, 1 / Lambda)``: the always-valid p-value at this look."""
    log_lr = log_evidence(excess, variance, tau, one_sided=one_sided)
    return np.asarray(np.exp(-np.maximum(log_lr, 0.0)), dtype=np.float64)


def running_min(p_values: npt.ArrayLike, axis: int = -1) -> npt.NDArray[np.float64]:
    """Running minimum along `axis`: the always-valid p-value of a test that kept looking."""
    return np.asarray(np.minimum.accumulate(np.asarray(p_values, dtype=np.float64), axis=axis))


def check_tau(tau: float, name: str = "tau") -> float:
    """Return `tau` if it is a finite number > 0."""
    if isinstance(tau, bool) or not isinstance(tau, int | float) or not math.isfinite(tau):
        raise ValueError(f"{name} must be a finite number > 0, got {tau!r}")
    if tau <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {tau!r}")
    return float(tau)


def n_for_power(
    variance_per_pair: float,
    effect: float,
    tau: float,
    *,
    alpha: float,
    power: float = 0.8,
    one_sided: bool = True,
) -> int:
    """Observations per arm (equal arms) to reject with probability `power` at `effect`.

    `variance_per_pair` is the variance of one canary observation plus one baseline observation
    (so ``V = variance_per_pair / n``). Uses the normal approximation at a single look; the
    sequential test needs at most this many in expectation. Returns 0 for a zero effect.
    """
    if not effect > 0.0 or not variance_per_pair > 0.0:
        return 0
    z_power = float(normal.ppf(power))
    target = math.log(1.0 / alpha)

    def detected(n: float) -> bool:
        v = variance_per_pair / n
        x = effect - z_power * math.sqrt(v)
        if x <= 0.0:
            return False
        return float(log_evidence(x, v, tau, one_sided=one_sided)) >= target

    high = 2.0
    while not detected(high):
        high *= 2.0
        if high > 1e12:
            return int(high)
    low = high / 2.0
    while high - low > 1.0:
        middle = (low + high) / 2.0
        if detected(middle):
            high = middle
        else:
            low = middle
    return math.ceil(high)
