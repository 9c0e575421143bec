"""The Evidently HTML drift report."""

from __future__ import annotations

import re
from html import unescape

import numpy as np
import pandas as pd
import pytest

from monitors import GateResult
from monitors.reports import drift_report_html, with_gate_verdicts


def test_report_is_html_naming_every_column() -> None:
    rng = np.random.default_rng(0)
    baseline = pd.DataFrame({"amount": rng.normal(size=200), "output": rng.integers(0, 2, 200)})
    canary = pd.DataFrame({"amount": rng.normal(1.0, size=150), "output": rng.integers(0, 2, 150)})
    html = drift_report_html(baseline, canary)
    assert html.lstrip().lower().startswith("<!doctype html")
    assert "amount" in html and "output" in html


def test_report_rejects_mismatched_or_empty_frames() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    with pytest.raises(ValueError, match="same columns"):
        drift_report_html(frame, pd.DataFrame({"b": [1.0]}))
    with pytest.raises(ValueError, match="need rows"):
        drift_report_html(frame, frame.iloc[:0])


def test_gate_verdicts_head_the_page_escaped_and_an_advisory_gate_says_so() -> None:
    page = "<!doctype html><html><head></head><body><div id='root'></div></body></html>"
    drift = GateResult(
        gate="output_drift", test="ks_distance", statistic=0.0312, p_value=None,
        effect_size=0.0312, threshold=0.1, n_baseline=900, n_canary=100,
        verdict="inconclusive", reason='not decided <yet> & "so"', ci_low=0.0, ci_high=0.187,
        blocking=False, alpha=0.05,
    )  # fmt: skip
    latency = GateResult.unmeasured("latency", "hl<b>", "pass", "<script>alert(1)</script>")
    headed = with_gate_verdicts(page, [latency, drift])
    assert headed.startswith(
        '<!doctype html><html><head></head><body>\n<section id="gate-verdicts"'
    )
    assert "<script>" not in headed and "&lt;script&gt;alert(1)&lt;/script&gt;" in headed
    assert "&lt;yet&gt; &amp; &quot;so&quot;" in headed and "hl&lt;b&gt;" in headed
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", headed)).split())
    assert (
        "estimate 0.0312 anytime-valid bounds 0 to 0.187 compared with delta 0.1 alpha 0.05 "
        'role advisory: never decides verdict inconclusive: not decided <yet> & "so" '
        "outputs judged baseline 900, canary 100 Other gates latency (hl<b>, blocking): pass: "
    ) in text
    assert with_gate_verdicts(page, []) == page  # no gates, no block


@pytest.mark.parametrize(
    ("outputs", "judged"),
    [
        (np.linspace(0.0, 1.0, 120), '"column_type": "num", "stattest_name": "K-S p_value"'),
        (np.arange(120) % 3, '"column_type": "cat", "stattest_name": "Total-variation distance"'),
    ],
)
def test_without_gates_floats_get_ks_and_ints_total_variation(
    outputs: np.ndarray, judged: str
) -> None:
    """The gate counts ints as categories and judges floats by KS; so does the report."""
    frame = pd.DataFrame({"output": outputs})
    page = drift_report_html(frame, frame.iloc[::-1].reset_index(drop=True))
    assert f'"column_name": "output", {judged}' in page
    assert 'id="gate-verdicts"' not in page and 'id="evidently-methods"' in page
