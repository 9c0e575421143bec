"""The drift report headed by the feature-drift table (issue 12, item 2): the demo's case, both
arms drawing their 30 features from the same rows, 1,198 against 150; per column our verdict
and Evidently's (the one its own tables below show), a note where they differ, both rules'
chance counts, and the output column showing the gate's test."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd

from monitors import GateResult
from monitors.feature_drift import FeatureDriftTable, FeatureVerdict, compare_features
from monitors.feature_report import feature_table_html
from monitors.reports import drift_report_html
from rollout.demo.models import load_data

N_BASELINE, N_CANARY = 1_198, 150
GATE = GateResult(
    gate="output_drift", test="ks_distance", statistic=0.31, p_value=None, effect_size=0.31,
    threshold=0.1, n_baseline=N_BASELINE, n_canary=N_CANARY, verdict="fail",
    reason="KS distance beyond 0.1", ci_low=0.12, ci_high=0.5, blocking=True, alpha=0.05,
)  # fmt: skip


def rows_of(page: str) -> dict[str, list[str]]:
    """The feature-drift table's rows by column name: each cell's text, unescaped."""
    start = page.index('<section id="feature-drift"')
    block = page[start : page.index("</section>", start)]
    out = {}
    for row in re.findall(r"<tr>(.*?)</tr>", block)[1:]:
        cells = [html.unescape(c) for c in re.findall(r"<td [^>]*>(.*?)</td>", row)]
        out[cells[0]] = cells
    return out


def text_of(page: str, name: str) -> str:
    start = page.index(f'<section id="{name}"')
    text = re.sub(r"<[^>]+>", " ", page[start : page.index("</section>", start)])
    return " ".join(html.unescape(text).split())


def evidently_detected(page: str) -> dict[str, bool]:
    """Evidently's own per-column finding, from its tables in the page."""
    found = re.findall(
        r'"column_name": "([^"]+)", "column_type": "\w+", "stattest_name": '
        r'.*?"data_drift": "([^"]+)"',
        page,
    )
    return {name: verdict == "Detected" for name, verdict in found}


def test_the_demos_report_is_headed_by_our_table_and_evidently_is_the_second_opinion() -> None:
    rows = load_data().serve_X.reset_index(drop=True)
    rng = np.random.default_rng(0)
    baseline = rows.iloc[rng.integers(0, len(rows), N_BASELINE)].reset_index(drop=True)
    canary = rows.iloc[rng.integers(0, len(rows), N_CANARY)].reset_index(drop=True)
    baseline["output"] = rng.uniform(size=N_BASELINE)
    canary["output"] = rng.uniform(0.2, 1.0, N_CANARY)
    page = drift_report_html(baseline, canary, [GATE], permutations=20)

    # order: the gates, our table, Evidently's methods, then Evidently's own report
    at = [page.index(f'<section id="{name}"') for name in ("gate-verdicts", "feature-drift")]
    at.append(page.index('<section id="evidently-methods"'))
    assert at == sorted(at)

    features = [c for c in baseline.columns if c != "output"]
    expected = compare_features(baseline[features], canary[features], permutations=20)
    shown = rows_of(page)
    theirs = evidently_detected(page)
    assert set(theirs) == {*features, "output"}
    flagged_by_evidently = sum(theirs[name] for name in features)
    assert flagged_by_evidently >= 5  # pure noise, yet Evidently flags many at these sizes
    assert expected.flagged == 0
    heading = text_of(page, "feature-drift")
    assert heading.startswith(
        f"Feature drift: 0 of 30 features flagged (Benjamini-Yekutieli at alpha 0.05); "
        f"Evidently's rule flags {flagged_by_evidently} "
        "1,198 baseline and 150 canary rows compared."
    )
    chance = expected.chance
    assert chance is not None
    assert (
        f"ours a median of {chance.ours_median:g} (95th percentile {chance.ours_p95:g}) of 30 "
        f"columns, any at all in {chance.ours_any_share:.0%} of the deals; Evidently's rule a "
        f"median of {chance.evidently_median:g} (95th percentile {chance.evidently_p95:g})."
    ) in heading
    for feature in expected.features:
        cells = shown[feature.name]
        assert cells[1:7] == [
            feature.kind, "KS" if feature.kind == "numeric" else "chi-square",
            f"{feature.distance:.3g}", f"{feature.p_value:.3g}", f"{feature.q_value:.3g}", "-",
        ]  # fmt: skip
        assert cells[9] == ("drifted" if theirs[feature.name] else "-")
        if theirs[feature.name]:
            assert cells[10].startswith("Evidently flags it (its Wasserstein distance (normed) ")
            assert cells[10].endswith("is above alpha 0.05")
        else:
            assert cells[10] == ""
    # Evidently judges the output by the gate's KS, as a p-value: drifted, as the gate failed
    assert shown["output"][:8] == [
        "output", "gate", "output_drift gate: ks_distance (blocking)", "0.31",
        "bounds 0.12 to 0.5", "delta 0.1", "fail", "ks",
    ]  # fmt: skip
    assert shown["output"][9:] == [
        "drifted",
        "Judged by the output-drift gate, not by a test of ours or Evidently's rule",
    ]
    assert list(shown)[1:4] == [f.name for f in expected.features[:3]]  # most drifted first


def test_a_column_ours_flags_and_evidently_does_not_gets_a_note_and_names_are_escaped() -> None:
    feature = FeatureVerdict(
        name="<b>amount</b>", kind="numeric", test="ks", distance=0.2, p_value=1e-6,
        q_value=1e-5, flagged=True, evidently_test="K-S p_value", evidently_score=0.07,
        evidently_flagged=False,
    )  # fmt: skip
    table = FeatureDriftTable((feature,), 0.05, 900, 300, 900, 300, None)
    page = feature_table_html(table)
    assert "<b>" not in page and "&lt;b&gt;amount&lt;/b&gt;" in page
    note = rows_of(page)["<b>amount</b>"][10]
    assert note == (
        "ours flags it (adjusted p-value 1e-05, at most alpha 0.05); Evidently does not "
        "(its K-S p_value p-value 0.07, on this column alone)"
    )
    assert "by chance" not in page  # no permutations, no chance line
    assert "Evidently's rule flags 0" in text_of(page, "feature-drift")


def test_the_output_row_says_why_evidently_and_an_undecided_gate_differ() -> None:
    table = FeatureDriftTable((), 0.05, 900, 300, 900, 300, None)
    gate = GateResult(
        gate="output_drift", test="total_variation", statistic=0.345, p_value=None,
        effect_size=0.345, threshold=0.2, n_baseline=900, n_canary=300, verdict="inconclusive",
        reason="not decided yet", ci_low=0.137, ci_high=0.51, blocking=True, alpha=0.0125,
    )  # fmt: skip
    evidently = ("Total-variation distance", 0.345, True)
    (row,) = rows_of(feature_table_html(table, gate, evidently)).values()
    assert row[7:] == [
        "Total-variation distance", "0.345", "drifted",
        "Evidently reads the estimate alone against delta 0.2; the gate reads its anytime-valid "
        "bounds at alpha 0.0125: inconclusive. Judged by the output-drift gate, not by a test "
        "of ours or Evidently's rule",
    ]  # fmt: skip
    (row,) = rows_of(feature_table_html(table, gate)).values()
    assert row[7:] == [
        "the gate's distance", "", "see below",
        "Judged by the output-drift gate, not by a test of ours or Evidently's rule",
    ]  # fmt: skip


def test_without_an_output_gate_the_output_is_one_of_our_columns() -> None:
    rng = np.random.default_rng(1)
    baseline = pd.DataFrame({"amount": rng.normal(size=300), "output": rng.normal(size=300)})
    canary = pd.DataFrame({"amount": rng.normal(size=100), "output": rng.normal(2, 1, 100)})
    page = drift_report_html(baseline, canary, permutations=0)
    shown = rows_of(page)
    assert list(shown) == ["output", "amount"]
    assert shown["output"][2] == "KS" and shown["output"][6] == "drifted"
