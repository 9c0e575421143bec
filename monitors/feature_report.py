"""The feature-drift table that heads a drift report: per column our verdict and Evidently's,
a note wherever the two differ, and how many columns each flags by chance at these sizes.

:func:`feature_table_html` renders a :class:`monitors.feature_drift.FeatureDriftTable` as one
``<section id="feature-drift">``. The ``output`` column, when the output-drift gate judged it,
shows that gate's test, estimate, anytime-valid bounds and verdict, not a test of ours or
Evidently's. Every value is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from monitors.feature_drift import FeatureDriftTable, FeatureVerdict
from monitors.results import GateResult

STYLE = (
    "font-family: sans-serif; margin: 16px; padding: 12px 16px; border: 2px solid #1565c0; "
    "border-radius: 6px; background: #fafafa"
)
HEAD = (
    "column",
    "kind",
    "our test",
    "distance",
    "p-value",
    "BY-adjusted p",
    "ours",
    "Evidently's method",
    "its score",
    "Evidently",
    "note",
)
CELL = 'style="padding: 2px 10px; text-align: left; border-bottom: 1px solid #ddd"'
TESTS = {"ks": "KS", "chi_square": "chi-square"}
# tests whose score is a p-value (drifted at most the threshold), by monitors.twosample's name or
# Evidently's (the report names Evidently's ``ks`` for the output column; its defaults name
# themselves "... p_value"); the rest are distances (drifted at least the threshold)
P_VALUE_TESTS = {"ks", "chi_square", "chisquare", "z", "anderson"}


def feature_table_html(
    table: FeatureDriftTable,
    output_gate: GateResult | None = None,
    output_evidently: tuple[str, float, bool] | None = None,
) -> str:
    """The table as an HTML section (see the module's docstring); ``output_evidently``: how
    Evidently's tables judged the output column (method, score, drifted), when known."""
    m = len(table.features) + (output_gate is not None)
    title = (
        f"Feature drift: {table.flagged} of {len(table.features)} features flagged "
        f"(Benjamini-Yekutieli at alpha {table.alpha:g}); Evidently's rule flags "
        f"{table.evidently_flagged}"
    )
    lines = [
        f"{table.n_baseline:,} baseline and {table.n_canary:,} canary rows compared"
        + _sampled(table)
        + ". Ours: per feature a KS test (numbers) or a chi-square test (categories), flagged "
        "by the Benjamini-Yekutieli procedure, which holds the share of false flags to alpha "
        "whatever the dependence between features. Evidently's: its default rule per column, "
        "with no correction across columns.",
        _chance(table),
    ]
    parts = [f'<section id="feature-drift" style="{STYLE}">', f"<h2>{html.escape(title)}</h2>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in lines if line]
    parts += ['<table style="border-collapse: collapse">', _row(HEAD, "th")]
    if output_gate is not None:
        parts.append(_row(_output_cells(output_gate, output_evidently), "td"))
    parts += [_row(_cells(f, table.alpha, m), "td") for f in table.features]
    parts += ["</table>", "</section>"]
    return "\n".join(parts)


def evidently_verdicts(snapshot: Mapping[str, Any]) -> dict[str, tuple[str, float, bool]]:
    """Each column's (method, score, drifted) from an Evidently 0.7 ``Report`` snapshot's
    ``dict()``: its ``ValueDrift`` metrics, a p-value drifted at most its threshold, a
    distance at least it."""
    out: dict[str, tuple[str, float, bool]] = {}
    for metric in snapshot.get("metrics", []):
        config = metric.get("config", {})
        if "column" not in config or not isinstance(metric.get("value"), int | float):
            continue
        method, score, level = str(config["method"]), float(metric["value"]), config["threshold"]
        drifted = score <= level if _p_value(method) else score >= level
        out[str(config["column"])] = (method, score, bool(drifted))
    return out


def _p_value(method: str) -> bool:
    return method in P_VALUE_TESTS or "p_value" in method


def with_evidently(
    table: FeatureDriftTable, verdicts: Mapping[str, tuple[str, float, bool]]
) -> FeatureDriftTable:
    """``table`` with Evidently's own verdicts (:func:`evidently_verdicts`) where it has one."""
    features = tuple(
        replace(f, evidently_test=found[0], evidently_score=found[1], evidently_flagged=found[2])
        if (found := verdicts.get(f.name)) is not None
        else f
        for f in table.features
    )
    return replace(table, features=features)


def _sampled(table: FeatureDriftTable) -> str:
    if (table.rows_baseline, table.rows_canary) == (table.n_baseline, table.n_canary):
        return ""
    return (
        f" (sampled at random from {table.rows_baseline:,} baseline and "
        f"{table.rows_canary:,} canary rows)"
    )


def _chance(table: FeatureDriftTable) -> str:
    chance = table.chance
    if chance is None:
        return ""
    return (
        f"Flagged by chance at these sizes (the same rows dealt again at random into arms of "
        f"{table.n_baseline:,} and {table.n_canary:,}, {chance.rounds} times): ours a median "
        f"of {chance.ours_median:g} (95th percentile {chance.ours_p95:g}) of "
        f"{len(table.features)} columns, any at all in {chance.ours_any_share:.0%} of the "
        f"deals; Evidently's rule a median of {chance.evidently_median:g} (95th percentile "
        f"{chance.evidently_p95:g})."
    )


def _row(cells: tuple[str, ...], tag: str) -> str:
    inner = "".join(f"<{tag} {CELL}>{html.escape(cell)}</{tag}>" for cell in cells)
    return f"<tr>{inner}</tr>"


def _flag(flagged: bool | None) -> str:
    return "n/a" if flagged is None else "drifted" if flagged else "-"


def _cells(feature: FeatureVerdict, alpha: float, m: int) -> tuple[str, ...]:
    score = "" if feature.evidently_score is None else f"{feature.evidently_score:.3g}"
    return (
        feature.name,
        feature.kind,
        TESTS.get(feature.test, feature.test),
        f"{feature.distance:.3g}",
        f"{feature.p_value:.3g}",
        f"{feature.q_value:.3g}",
        _flag(feature.flagged),
        feature.evidently_test or "",
        score,
        _flag(feature.evidently_flagged),
        _note(feature, alpha, m),
    )


def _note(feature: FeatureVerdict, alpha: float, m: int) -> str:
    """Why the two verdicts differ (empty when they agree)."""
    method = feature.evidently_test
    if not feature.differs or method is None:
        return ""
    if _p_value(method):
        rule = f"its {method} p-value {feature.evidently_score:.3g}, on this column alone"
    else:
        rule = f"its {method} {feature.evidently_score:.3g}, an estimate with no error bound"
    if feature.evidently_flagged:
        return (
            f"Evidently flags it ({rule}; no correction across {m} columns); ours does not: "
            f"the adjusted p-value {feature.q_value:.3g} is above alpha {alpha:g}"
        )
    return (
        f"ours flags it (adjusted p-value {feature.q_value:.3g}, at most alpha {alpha:g}); "
        f"Evidently does not ({rule})"
    )


def _output_cells(gate: GateResult, evidently: tuple[str, float, bool] | None) -> tuple[str, ...]:
    role = "blocking" if gate.blocking else "advisory"
    method, score, flag, note = "the gate's distance", "", "see below", ""
    if evidently is not None:
        method, score, flag = evidently[0], f"{evidently[1]:.3g}", _flag(evidently[2])
        if evidently[2] != (gate.verdict == "fail"):
            note = (
                f"Evidently reads the estimate alone against delta {gate.threshold:g}; the gate "
                f"reads its anytime-valid bounds at alpha {gate.alpha:g}: {gate.verdict}. "
            )
    return (
        "output",
        "gate",
        f"{gate.gate} gate: {gate.test} ({role})",
        f"{gate.statistic:.3g}",
        f"bounds {gate.ci_low:.3g} to {gate.ci_high:.3g}",
        f"delta {gate.threshold:g}",
        gate.verdict,
        method,
        score,
        flag,
        f"{note}Judged by the output-drift gate, not by a test of ours or Evidently's rule",
    )
