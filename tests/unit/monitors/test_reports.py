"""The Evidently HTML drift report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitors.reports import drift_report_html


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
