"""Sequential change detection on monitoring windows: a Bernoulli-count e-detector.

After a release is promoted the manager folds its traffic into windows (hourly by default) and
counts, per window, requests ``n`` and "bad" ones ``bad``: failed requests, latencies above a
reference quantile, wrong predictions among the labelled requests. :class:`ChangeDetector`
raises an :class:`Alarm` once the bad rate has moved above ``p0``, the bound the release is
held to (:func:`bound_from_reference` derives one from a reference period), and otherwise keeps
looking, window after window, for as long as the release serves.

Construction (Shin, Ramdas & Rinaldo 2023, "E-detectors: a nonparametric framework for
sequential change detection"). For each rate ``p1`` of a grid above ``p0`` (``p0`` times
``RATIOS``, capped halfway between ``p0`` and 1; :func:`alternatives`) a window's likelihood
ratio ``L = (p1 / p0)^bad ((1 - p1) / (1 - p0))^(n - bad)`` is an e-value for "each request
is bad with probability at most p0 given the past": a request contributes a factor of mean
``1 + (p - p0)(p1 - p0) / (p0 (1 - p0))`` at true rate ``p``, increasing in ``p`` (``p1 > p0``,
so the ratio grows with ``bad``) and 1 at ``p0``, hence at most 1 at every rate ``p <= p0``, even
one that varies from request to request, whatever the window sizes. Per alternative, the
Shiryaev-Roberts recursion ``R_t = (R_{t-1} + 1) L_t`` is the sum over every window ``j <= t``
where the change could have begun of the e-process ``L_j ... L_t`` started there, and the
detector is the mixture of e-detectors ``M_t = sum_i w_i R_t^(i)`` (uniform weights), which
alarms when ``M_t >= c`` and then restarts from zero.

Guarantee. Under the null ``E[M_t | past] <= M_{t-1} + 1``, and an alarm removes at least ``c``,
so ``0 <= E[M_T] <= T - c E[alarms in T windows]``: at most ``T / c`` false alarms are expected
in any ``T`` windows with data (and, by Markov's inequality, ``P(any) <= T / c``). The default
``c = streams * windows_per_alarm = 3 * 720`` keeps the expected false alarms of three streams
watched together (errors, latency, wrong predictions) to one per 30 days of hourly windows.

Why mixed detectors rather than a mixed window e-value (:func:`window_log_evalue`, the
per-window mixture ``sum_i w_i L^(i)``, also valid): a change that takes many windows to show
compounds under its own alternative's product, while a product of per-window mixtures pays the
weight ``w_i`` in every window; the mixture of detectors pays ``log(1 / w_i)`` once.

The CUSUM recursion ``C_t = max(C_{t-1}, 1) L_t`` (``= max_j L_j ... L_t``) is carried beside it
for the alarm's reason only: its argmax ``j`` (the alternative with the largest ``C``) is where
the change likely began, and ``bad / n`` since then the changed rate. :func:`advance` steps many
detectors at once, row by row (the benchmark's simulated streams), with the code
:meth:`ChangeDetector.update` runs on one. The state is a few floats per alternative, JSON-safe
through :meth:`ChangeDetector.to_dict` / :meth:`ChangeDetector.from_dict`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special

from monitors._validate import check_alpha, check_bound, check_count, check_fraction

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

RATIOS = (1.1, 1.25, 1.5, 2.0, 3.0, 5.0)  # alternatives: p0 times these
WINDOWS_PER_ALARM = 720  # 30 days of hourly windows per expected false alarm, all streams
STREAMS = 3  # errors, latency exceedances, wrong predictions


def _check_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    values = tuple(ratios)
    if not values:
        raise ValueError("ratios must hold at least one ratio > 1, got none")
    for ratio in values:
        check_bound(ratio, "ratios", minimum=1.0, strict=True)
    return tuple(float(ratio) for ratio in values)


def alternatives(p0: float, ratios: Sequence[float] = RATIOS) -> FloatArray:
    """The alternative rates: ``p0 * ratio`` each, capped at ``(1 + p0) / 2`` (halfway to 1),
    without repeats, ascending."""
    p0 = check_fraction(p0, "p0", low_inclusive=False)
    cap = (1.0 + p0) / 2.0
    return np.unique(np.minimum(p0 * np.asarray(_check_ratios(ratios)), cap))


def log_likelihood_ratios(
    n: npt.ArrayLike, bad: npt.ArrayLike, p0: float, rates: FloatArray
) -> FloatArray:
    """log ``L`` of each window (leading axes) under each alternative in ``rates`` (last axis)."""
    n_ = np.asarray(n, dtype=np.float64)[..., None]
    bad_ = np.asarray(bad, dtype=np.float64)[..., None]
    per_bad = np.log(rates) - math.log(p0)
    per_good = np.log1p(-rates) - math.log1p(-p0)
    return np.asarray(bad_ * per_bad + (n_ - bad_) * per_good, dtype=np.float64)


def window_log_evalue(
    n: npt.ArrayLike, bad: npt.ArrayLike, p0: float, ratios: Sequence[float] = RATIOS
) -> FloatArray:
    """log of one window's mixture e-value ``sum_i w_i L^(i)`` (uniform weights over
    :func:`alternatives`): its mean is at most 1 at every bad rate ``<= p0``."""
    rates = alternatives(p0, ratios)
    log_lr = log_likelihood_ratios(n, bad, p0, rates)
    return np.asarray(special.logsumexp(log_lr, axis=-1) - math.log(rates.size), dtype=np.float64)


@dataclass(frozen=True)
class Advanced:
    """Detectors after one window: ``log_sr`` and ``log_cusum`` (restarted to ``-inf`` where
    they alarmed), the log statistic ``log M_t`` before any restart, which alarmed, and the
    alternative whose CUSUM was largest (before any restart: the alarm's reason)."""

    log_sr: FloatArray
    log_cusum: FloatArray
    log_statistic: FloatArray
    alarmed: BoolArray
    best: npt.NDArray[np.intp]


def advance(
    log_sr: FloatArray,
    log_cusum: FloatArray,
    n: npt.ArrayLike,
    bad: npt.ArrayLike,
    p0: float,
    rates: FloatArray,
    log_threshold: float,
) -> Advanced:
    """One window for every detector (rows of ``log_sr`` / ``log_cusum``, alternatives on the
    last axis; ``n``, ``bad`` one per row): the SR and CUSUM recursions on the log scale, the
    alarm ``log M_t >= log_threshold`` and the restart after it. A row with ``n == 0`` is left as
    it was (no window)."""
    n_ = np.asarray(n, dtype=np.float64)
    log_lr = log_likelihood_ratios(n_, bad, p0, rates)
    new_sr = np.logaddexp(log_sr, 0.0) + log_lr
    new_cusum = np.maximum(log_cusum, 0.0) + log_lr
    empty = (n_ <= 0)[..., None]
    if empty.any():
        new_sr = np.where(empty, log_sr, new_sr)
        new_cusum = np.where(empty, log_cusum, new_cusum)
    log_statistic = _log_mixture(new_sr)
    alarmed = log_statistic >= log_threshold
    restart = alarmed[..., None]
    return Advanced(
        np.where(restart, -np.inf, new_sr),
        np.where(restart, -np.inf, new_cusum),
        log_statistic,
        np.asarray(alarmed, dtype=np.bool_),
        np.asarray(np.argmax(new_cusum, axis=-1), dtype=np.intp),
    )


def _log_mixture(log_sr: FloatArray) -> FloatArray:
    """``log sum_i w_i R^(i)`` with uniform weights (``-inf`` when every ``R`` is 0)."""
    top = np.max(log_sr, axis=-1)
    safe = np.where(np.isfinite(top), top, 0.0)
    total = np.sum(np.exp(log_sr - safe[..., None]), axis=-1)
    with np.errstate(divide="ignore"):
        return np.asarray(safe + np.log(total) - math.log(log_sr.shape[-1]), dtype=np.float64)


@dataclass(frozen=True)
class Alarm:
    """A change: the window that raised it (counting windows with data from 1), the log
    statistic and log threshold, the bound ``p0``, and since the window where the change likely
    began (CUSUM's argmax): how many windows, requests and bad ones, and their rate."""

    window: int
    log_statistic: float
    log_threshold: float
    p0: float
    windows_since_change: int
    n: int
    bad: int

    @property
    def rate(self) -> float:
        """The bad rate since the change likely began."""
        return self.bad / self.n if self.n else math.nan

    @property
    def reason(self) -> str:
        return (
            f"bad rate {100 * self.rate:.3g}% over the last {self.windows_since_change} "
            f"window(s) ({self.bad:,} of {self.n:,}) against a bound of {100 * self.p0:.3g}%: "
            f"e-detector log {self.log_statistic:.2f} >= log threshold {self.log_threshold:.2f}"
        )


def _floats(values: Sequence[float]) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in values]


@dataclass
class ChangeDetector:
    """The e-detector of the module docstring for one stream of windows held to ``p0``.

    ``threshold = streams * windows_per_alarm`` (``c``): at most ``windows_per_alarm`` windows
    per expected false alarm across ``streams`` detectors run together. The state (``windows``
    with data so far, ``alarms`` raised, and per alternative: log SR, log CUSUM, the window where
    CUSUM's run began and the requests and bad ones since) is what :meth:`to_dict` stores.
    """

    p0: float
    windows_per_alarm: float = WINDOWS_PER_ALARM
    streams: int = STREAMS
    ratios: tuple[float, ...] = RATIOS
    windows: int = 0
    alarms: int = 0
    log_sr: list[float] = field(default_factory=list)
    log_cusum: list[float] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    n_since: list[int] = field(default_factory=list)
    bad_since: list[int] = field(default_factory=list)
    _rates: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.p0 = check_fraction(self.p0, "p0", low_inclusive=False)
        self.windows_per_alarm = check_bound(
            self.windows_per_alarm, "windows_per_alarm", minimum=1.0, strict=False
        )
        streams = self.streams
        if isinstance(streams, bool) or not isinstance(streams, numbers.Integral) or streams < 1:
            raise ValueError(f"streams must be an int >= 1, got {streams!r}")
        self.streams = int(streams)
        self.ratios = _check_ratios(self.ratios)
        self.windows = check_count(self.windows, "windows")
        self.alarms = check_count(self.alarms, "alarms")
        self._rates = alternatives(self.p0, self.ratios)
        m = self._rates.size
        if not (self.log_sr or self.log_cusum or self.start or self.n_since or self.bad_since):
            self.log_sr, self.log_cusum = [-math.inf] * m, [-math.inf] * m
            self.start, self.n_since, self.bad_since = [0] * m, [0] * m, [0] * m
        for name in ("log_sr", "log_cusum", "start", "n_since", "bad_since"):
            if len(getattr(self, name)) != m:
                raise ValueError(
                    f"{name} must hold one value per alternative ({m} for p0={self.p0:g}, "
                    f"ratios={self.ratios}), got {len(getattr(self, name))}"
                )

    @property
    def threshold(self) -> float:
        """``c``: the alarm level of the statistic ``M_t``."""
        return self.streams * self.windows_per_alarm

    @property
    def log_threshold(self) -> float:
        return math.log(self.threshold)

    @property
    def log_statistic(self) -> float:
        """``log M_t`` now (``-inf`` before the first window and right after an alarm)."""
        return float(_log_mixture(np.array(self.log_sr)))

    @property
    def rates(self) -> FloatArray:
        """The alternative rates (:func:`alternatives`)."""
        return np.array(self._rates)

    def update(self, n: int, bad: int) -> Alarm | None:
        """Fold one window of ``n`` requests, ``bad`` of them bad; the alarm if it raised one
        (the detector then restarts). A window with ``n == 0`` is skipped."""
        n = check_count(n, "n")
        bad = check_count(bad, "bad")
        if bad > n:
            raise ValueError(f"bad must be at most n, got bad={bad} > n={n}")
        if n == 0:
            return None
        self.windows += 1
        for i, log_c in enumerate(self.log_cusum):
            if log_c <= 0.0:  # CUSUM's run begins again here
                self.start[i], self.n_since[i], self.bad_since[i] = self.windows, 0, 0
            self.n_since[i] += n
            self.bad_since[i] += bad
        step = advance(
            np.array(self.log_sr),
            np.array(self.log_cusum),
            n,
            bad,
            self.p0,
            self._rates,
            self.log_threshold,
        )
        best = int(step.best)
        self.log_sr = [float(v) for v in step.log_sr]
        self.log_cusum = [float(v) for v in step.log_cusum]
        if not bool(step.alarmed):
            return None
        self.alarms += 1
        alarm = Alarm(
            window=self.windows,
            log_statistic=float(step.log_statistic),
            log_threshold=self.log_threshold,
            p0=self.p0,
            windows_since_change=self.windows - self.start[best] + 1,
            n=self.n_since[best],
            bad=self.bad_since[best],
        )
        m = len(self.start)
        self.start, self.n_since, self.bad_since = [0] * m, [0] * m, [0] * m
        return alarm

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the parameters and the state (``-inf`` logs as None)."""
        return {
            "p0": self.p0,
            "windows_per_alarm": self.windows_per_alarm,
            "streams": self.streams,
            "ratios": list(self.ratios),
            "windows": self.windows,
            "alarms": self.alarms,
            "log_sr": _floats(self.log_sr),
            "log_cusum": _floats(self.log_cusum),
            "start": list(self.start),
            "n_since": list(self.n_since),
            "bad_since": list(self.bad_since),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChangeDetector:
        """The detector :meth:`to_dict` stored (``ValueError`` naming a missing or bad key)."""
        keys = ["p0", "windows_per_alarm", "streams", "ratios", "windows", "alarms"]
        keys += ["log_sr", "log_cusum", "start", "n_since", "bad_since"]
        missing = [key for key in keys if key not in data]
        if missing:
            raise ValueError(f"detector state lacks {', '.join(missing)}")
        for key in ("ratios", "log_sr", "log_cusum", "start", "n_since", "bad_since"):
            if not isinstance(data[key], list):
                raise ValueError(f"{key} must be a list, got {data[key]!r}")

        def logs(key: str) -> list[float]:
            return [
                -math.inf if v is None else check_bound(v, key, minimum=-math.inf, strict=False)
                for v in data[key]
            ]

        def counts(key: str) -> list[int]:
            return [check_count(v, key) for v in data[key]]

        return cls(
            p0=data["p0"],
            windows_per_alarm=data["windows_per_alarm"],
            streams=data["streams"],
            ratios=tuple(data["ratios"]),
            windows=data["windows"],
            alarms=data["alarms"],
            log_sr=logs("log_sr"),
            log_cusum=logs("log_cusum"),
            start=counts("start"),
            n_since=counts("n_since"),
            bad_since=counts("bad_since"),
        )


def bound_from_reference(
    n_ref: int,
    bad_ref: int,
    *,
    alpha: float = 0.01,
    max_ratio: float = 1.5,
    max_increase: float = 0.005,
) -> float:
    """``p0`` from a reference period of ``n_ref`` requests, ``bad_ref`` bad: the one-sided
    Clopper-Pearson upper bound ``u`` of its rate at ``alpha``, then the larger of
    ``u * max_ratio`` and ``u + max_increase`` (the canary gates' allowances)."""
    n_ref = check_count(n_ref, "n_ref")
    bad_ref = check_count(bad_ref, "bad_ref")
    if n_ref == 0:
        raise ValueError("n_ref must be >= 1 (a reference period with requests), got 0")
    if bad_ref > n_ref:
        raise ValueError(f"bad_ref must be at most n_ref, got bad_ref={bad_ref} > n_ref={n_ref}")
    alpha = check_alpha(alpha)
    max_ratio = check_bound(max_ratio, "max_ratio", minimum=1.0, strict=False)
    max_increase = check_bound(max_increase, "max_increase", minimum=0.0, strict=False)
    upper = (
        1.0
        if bad_ref == n_ref
        else float(special.betaincinv(bad_ref + 1, n_ref - bad_ref, 1 - alpha))
    )
    bound = max(upper * max_ratio, upper + max_increase)
    if bound >= 1.0:
        raise ValueError(
            f"max_ratio={max_ratio:g} and max_increase={max_increase:g} put p0 at {bound:.4g} "
            f">= 1 (the reference rate's upper bound is {upper:.4g}): nothing could exceed it; "
            "lower them"
        )
    return bound
