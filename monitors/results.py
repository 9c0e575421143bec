"""The value every gate returns: one frozen `GateResult` per (gate, check).

Contract:

- `verdict` is ``"pass"``, ``"fail"`` or ``"inconclusive"``. ``inconclusive`` means "not enough
  evidence yet" (too few observations in an arm); the caller decides whether to wait, pause or
  roll back. ``fail`` means the canary is worse than the baseline by more than the gate allows,
  at the stated ``threshold``.
- `statistic`, `effect_size` and the values in `details` are plain floats; they are NaN when
  they could not be computed (an empty arm). `p_value` is None where the test has none (PSI) or
  could not be computed.
- `effect_size` is *canary minus baseline* in the gate's natural unit (rate difference,
  Hodges-Lehmann shift in ms, PSI, KS D, Cramer's V, accuracy difference).
- `ci_low` / `ci_high` bound `effect_size` at every look of a rollout at once (the judge's
  gates); `blocking` is False for a gate that is reported and never decides; `alpha` is the
  error rate its bounds are held to.
- `to_dict()` is JSON-safe: NaN and +/-inf become None, so ``json.dumps(result.to_dict(),
  allow_nan=False)`` always works.

Results are frozen; `details` is copied on construction (mutating the mapping you passed in does
not change the result). Results are hashable; `details` takes no part in the hash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from monitors.names import VERDICTS, Verdict


@dataclass(frozen=True)
class GateResult:
    """Outcome of one statistical gate comparing the canary arm with the baseline arm."""

    gate: str
    test: str
    statistic: float
    p_value: float | None
    effect_size: float
    threshold: float
    n_baseline: int
    n_canary: int
    verdict: Verdict
    reason: str
    details: Mapping[str, float] = field(default_factory=dict, hash=False)
    ci_low: float = math.nan  # anytime-valid bounds of effect_size (NaN: the gate has none)
    ci_high: float = math.nan
    blocking: bool = True  # False: reported, never decides (an advisory gate)
    alpha: float = math.nan  # the error rate the gate's bounds are held to

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        for name in ("n_baseline", "n_canary"):
            n = getattr(self, name)
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"{name} must be a non-negative int, got {n!r}")
        for name in ("statistic", "effect_size", "threshold", "ci_low", "ci_high", "alpha"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.p_value is not None:
            object.__setattr__(self, "p_value", float(self.p_value))
        object.__setattr__(self, "details", {str(k): float(v) for k, v in self.details.items()})

    @classmethod
    def unmeasured(cls, gate: str, test: str, verdict: Verdict, reason: str) -> GateResult:
        """A result with no statistic: a check (e.g. a digest) or a test that could not run."""
        return cls(
            gate=gate,
            test=test,
            statistic=math.nan,
            p_value=None,
            effect_size=math.nan,
            threshold=math.nan,
            n_baseline=0,
            n_canary=0,
            verdict=verdict,
            reason=reason,
        )

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-safe dict of every field (NaN and +/-inf become None)."""
        return {
            "gate": self.gate,
            "test": self.test,
            "statistic": _json_float(self.statistic),
            "p_value": _json_float(self.p_value),
            "effect_size": _json_float(self.effect_size),
            "threshold": _json_float(self.threshold),
            "n_baseline": self.n_baseline,
            "n_canary": self.n_canary,
            "verdict": self.verdict,
            "reason": self.reason,
            "details": {k: _json_float(v) for k, v in self.details.items()},
            "ci_low": _json_float(self.ci_low),
            "ci_high": _json_float(self.ci_high),
            "blocking": self.blocking,
            "alpha": _json_float(self.alpha),
        }


def _json_float(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)
