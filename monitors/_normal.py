"""The standard normal distribution's tail and quantile functions, from ``scipy.special``.

The same functions ``scipy.stats.norm`` uses (``sf(z) = ndtr(-z)``, ``isf(q) = -ndtri(q)``,
``ppf(p) = ndtri(p)``), without importing ``scipy.stats``, which costs about a second: a gate
that only needs the normal distribution (error rate, accuracy, losses, the mSPRT) loads none
of it.
"""

from __future__ import annotations

from scipy import special


def sf(z: float) -> float:
    """P(Z > z)."""
    return float(special.ndtr(-z))


def isf(q: float) -> float:
    """The z with P(Z > z) = q."""
    return float(-special.ndtri(q))


def ppf(p: float) -> float:
    """The z with P(Z <= z) = p."""
    return float(special.ndtri(p))
