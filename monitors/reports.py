"""HTML data-drift reports for engineers to read (Evidently 0.7 `Report` + `DataDriftPreset`).

Decisions never come from here (see `monitors.twosample` / the gates); this renders the same
comparison of canary against baseline, features and outputs, with Evidently's charts.
Evidently is imported lazily: importing `monitors` stays cheap.
"""

from __future__ import annotations

import warnings
from typing import Any


def drift_report_html(baseline: Any, canary: Any) -> str:
    """A self-contained HTML data-drift report of `canary` against `baseline` (DataFrames).

    Both frames need the same columns; at least one row each.
    """
    missing = sorted(set(baseline.columns) ^ set(canary.columns))
    if missing:
        raise ValueError(f"baseline and canary must have the same columns; differ in {missing}")
    if len(baseline) == 0 or len(canary) == 0:
        raise ValueError(f"both frames need rows (baseline {len(baseline)}, canary {len(canary)})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Evidently's own deprecation and runtime notes
        from evidently import Report
        from evidently.presets import DataDriftPreset

        snapshot = Report([DataDriftPreset()]).run(
            current_data=canary[list(baseline.columns)], reference_data=baseline
        )
        html = snapshot.get_html_str(as_iframe=False)
    return str(html)
