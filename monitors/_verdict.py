"""Turning computed numbers into a `GateResult`: the min_n rule and reason formatting.

`make_result` applies the one rule every gate shares: when either arm has fewer than `min_n`
observations the verdict is ``inconclusive`` and the reason says how many more each arm needs
(also stored as ``details["baseline_needed"]`` / ``details["canary_needed"]``). Every result
carries ``details["min_n"]``.
"""

from __future__ import annotations

from collections.abc import Mapping

from monitors.names import Verdict
from monitors.results import GateResult


def shortfall_reason(n_baseline: int, n_canary: int, min_n: int, unit: str) -> str | None:
    """Return the "too little data" sentence, or None when both arms have `min_n`."""
    baseline_needed = max(0, min_n - n_baseline)
    canary_needed = max(0, min_n - n_canary)
    if baseline_needed == 0 and canary_needed == 0:
        return None
    parts = []
    if baseline_needed:
        parts.append(f"{baseline_needed} more baseline")
    if canary_needed:
        parts.append(f"{canary_needed} more canary")
    return (
        f"too little data: need {' and '.join(parts)} {unit} "
        f"(min_n={min_n} per arm; have {n_baseline} baseline, {n_canary} canary)"
    )


def power_shortfall(
    n_baseline: int, n_canary: int, n_power: int, unit: str, target: str
) -> tuple[str, dict[str, float]] | None:
    """The "not yet powered" reason and needed counts, or None when both arms have `n_power`."""
    baseline_needed = max(0, n_power - n_baseline)
    canary_needed = max(0, n_power - n_canary)
    if baseline_needed == 0 and canary_needed == 0:
        return None
    reason = (
        f"no significant harm yet, but underpowered: need {baseline_needed} more baseline and "
        f"{canary_needed} more canary {unit} ({n_power} per arm) to detect {target}"
    )
    return reason, {
        "baseline_needed": float(baseline_needed),
        "canary_needed": float(canary_needed),
    }


def hold_until_powered(
    verdict: Verdict,
    reason: str,
    details: dict[str, float],
    n_baseline: int,
    n_canary: int,
    unit: str,
    target: str,
) -> tuple[Verdict, str]:
    """Turn a ``pass`` into ``inconclusive`` while an arm has fewer than ``details["n_for_power"]``.

    The needed counts are added to ``details``; other verdicts pass through unchanged.
    """
    if verdict != "pass":
        return verdict, reason
    short = power_shortfall(n_baseline, n_canary, int(details["n_for_power"]), unit, target)
    if short is None:
        return verdict, reason
    details |= short[1]
    return "inconclusive", short[0]


def make_result(
    *,
    gate: str,
    test: str,
    statistic: float,
    p_value: float | None,
    effect_size: float,
    threshold: float,
    n_baseline: int,
    n_canary: int,
    min_n: int,
    unit: str,
    verdict: Verdict,
    reason: str,
    details: Mapping[str, float],
) -> GateResult:
    """Build the result, downgrading the verdict to inconclusive when an arm is short of data."""
    all_details = {**details, "min_n": float(min_n)}
    lacking = shortfall_reason(n_baseline, n_canary, min_n, unit)
    if lacking is not None:
        verdict = "inconclusive"
        reason = lacking
        all_details["baseline_needed"] = float(max(0, min_n - n_baseline))
        all_details["canary_needed"] = float(max(0, min_n - n_canary))
    return GateResult(
        gate=gate,
        test=test,
        statistic=statistic,
        p_value=p_value,
        effect_size=effect_size,
        threshold=threshold,
        n_baseline=n_baseline,
        n_canary=n_canary,
        verdict=verdict,
        reason=reason,
        details=all_details,
    )


def fmt_p(p_value: float, alpha: float) -> str:
    """Format "p=0.0031 < 0.05" / "p=0.41 >= 0.05"."""
    relation = "<" if p_value < alpha else ">="
    return f"p={p_value:.2g} {relation} {alpha:g}"


def fmt_pct(rate: float) -> str:
    """Format a proportion as a percentage with two decimals: 0.021 -> "2.10%"."""
    return f"{100.0 * rate:.2f}%"


def fmt_pts(diff: float) -> str:
    """Format a proportion difference in percentage points with a sign: 0.011 -> "+1.10 pts"."""
    return f"{100.0 * diff:+.2f} pts"
