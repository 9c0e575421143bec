"""HTML data-drift reports for engineers to read (Evidently 0.7 `Report` + `DataDriftPreset`).

Decisions never come from here (the judge's gates make them); this renders the same comparison
of canary against baseline, features and outputs, with Evidently's charts, headed by what the
gates decided (:func:`with_gate_verdicts`): the output-drift gate's distance, its anytime-valid
bounds, the delta and alpha it is held to, its verdict. So that the tables do not contradict the
gate by another measure, Evidently judges the ``output`` column by the gate's distance: numbers
by its KS test, categories by their total-variation distance (``tv_distance``, registered here:
Evidently's own "TVD" is a p-value of 1,000 permutations, 37 s on 20,000 rows per arm). Feature
columns keep Evidently's defaults. Below the gates, the feature-drift table
(:mod:`monitors.feature_report`): per column our test with false alarms controlled across
columns and Evidently's verdict, a note where they differ, and how many columns each flags by
chance at these sizes; the ``output`` column there shows the gate's test. Evidently's own report
follows as the second opinion. Evidently is imported lazily: importing `monitors` stays cheap.
"""

from __future__ import annotations

import functools
import html
import math
import re
import warnings
from collections.abc import Sequence
from typing import Any

from monitors.feature_drift import compare_features
from monitors.feature_report import evidently_verdicts, feature_table_html, with_evidently
from monitors.results import GateResult

OUTPUT = "output"  # the column of predicted values
DISTANCES = {  # the output-drift gate's tests, named as the judge names them
    "ks_distance": "KS distance of the outputs",
    "total_variation": "total-variation distance of the output mix",
}
TV_METHOD = "tv_distance"
_STYLE = (
    "font-family: sans-serif; margin: 16px; padding: 12px 16px; border: 2px solid {}; "
    "border-radius: 6px; background: #fafafa"
)
_COLOURS = {"fail": "#c62828", "pass": "#2e7d32", "inconclusive": "#f9a825"}


def drift_report_html(
    baseline: Any, canary: Any, gates: Sequence[GateResult] = (), *, permutations: int = 50
) -> str:
    """A self-contained HTML data-drift report of `canary` against `baseline` (DataFrames).

    Both frames need the same columns; at least one row each. `gates` (the step's results, or
    just the ``output_drift`` one) head the report; the output-drift gate's test also says how
    Evidently reads the ``output`` column (categories or numbers). Below them, the feature-drift
    table (:func:`monitors.feature_drift.compare_features`, ``permutations`` deals for its
    chance counts); Evidently's own report below that, as a second opinion.
    """
    missing = sorted(set(baseline.columns) ^ set(canary.columns))
    if missing:
        raise ValueError(f"baseline and canary must have the same columns; differ in {missing}")
    if len(baseline) == 0 or len(canary) == 0:
        raise ValueError(f"both frames need rows (baseline {len(baseline)}, canary {len(canary)})")
    columns = list(baseline.columns)
    baseline, canary = baseline[columns], canary[columns]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Evidently's own deprecation and runtime notes
        from evidently import Dataset, Report
        from evidently.presets import DataDriftPreset

        definition = Dataset.from_pandas(canary).data_definition
        preset, note = DataDriftPreset(), ""
        if OUTPUT in columns:
            drift = _output_drift(gates)
            categorical = _categorical(baseline[OUTPUT], canary[OUTPUT], drift)
            preset, note = _output_method(definition, categorical, drift)
        snapshot = Report([preset]).run(
            current_data=Dataset.from_pandas(canary, data_definition=definition),
            reference_data=Dataset.from_pandas(baseline, data_definition=definition),
        )
        page = str(snapshot.get_html_str(as_iframe=False))
        verdicts = evidently_verdicts(snapshot.dict())
    output_gate = _output_drift(gates) if OUTPUT in columns else None
    judged = [c for c in columns if c != OUTPUT or output_gate is None]
    table = None
    if judged:
        table = compare_features(baseline[judged], canary[judged], permutations=permutations)
        table = with_evidently(table, verdicts)
    shown = (
        "The gates decide; Evidently's tables below are for reading. They compare "
        f"{len(baseline):,} baseline and {len(canary):,} canary rows. {note}"
    )
    block = f'<section id="evidently-methods" style="{_STYLE.format("#9e9e9e")}"><p>'
    block += html.escape(f"{shown}Other columns: Evidently's defaults.")
    page = _at_top(page, f"{block}</p></section>")
    if table is not None:
        page = _at_top(page, feature_table_html(table, output_gate, verdicts.get(OUTPUT)))
    return with_gate_verdicts(page, gates)


def with_gate_verdicts(page: str, gates: Sequence[GateResult]) -> str:
    """`page` (an HTML report) headed by the gates' verdicts: the output-drift gate in full
    (distance, estimate, anytime-valid bounds, delta, alpha, role, verdict), others in a line.
    Unchanged without gates."""
    if not gates:
        return page
    drift = _output_drift(gates)
    colour = _COLOURS[drift.verdict] if drift is not None else "#9e9e9e"
    parts = [f'<section id="gate-verdicts" style="{_STYLE.format(colour)}">']
    if drift is not None:
        parts += [f"<h2>Output drift gate: {html.escape(drift.verdict)}</h2>"]
        parts += ['<table style="border-collapse: collapse">']
        parts += [
            f'<tr><th style="text-align: left; padding-right: 16px">{html.escape(name)}</th>'
            f"<td>{html.escape(value)}</td></tr>"
            for name, value in _drift_rows(drift)
        ]
        parts += ["</table>"]
    others = [g for g in gates if g is not drift]
    if others:
        parts += ["<h3>Other gates</h3>" if drift is not None else "<h2>Gates</h2>", "<ul>"]
        parts += [f"<li>{html.escape(_one_line(g))}</li>" for g in others]
        parts += ["</ul>"]
    return _at_top(page, "\n".join([*parts, "</section>"]))


def _drift_rows(drift: GateResult) -> list[tuple[str, str]]:
    """The output-drift gate's figures, formatted as the judge prints them."""
    role = "blocking: its verdict decides the step" if drift.blocking else "advisory: never decides"
    return [
        ("distance", f"{DISTANCES.get(drift.test, drift.test)} ({drift.test})"),
        ("estimate", f"{drift.statistic:.3g}"),
        ("anytime-valid bounds", f"{drift.ci_low:.3g} to {drift.ci_high:.3g}"),
        ("compared with delta", f"{drift.threshold:g}"),
        ("alpha", f"{drift.alpha:g}"),
        ("role", role),
        ("verdict", f"{drift.verdict}: {drift.reason}"),
        ("outputs judged", f"baseline {drift.n_baseline:,}, canary {drift.n_canary:,}"),
    ]


def _one_line(gate: GateResult) -> str:
    role = "blocking" if gate.blocking else "advisory"
    return f"{gate.gate} ({gate.test}, {role}): {gate.verdict}: {gate.reason}"


def _output_drift(gates: Sequence[GateResult]) -> GateResult | None:
    return next((g for g in gates if g.gate == "output_drift"), None)


def _categorical(baseline: Any, canary: Any, drift: GateResult | None) -> bool:
    """Whether the outputs are categories: as the gate judged them, else unless they are
    floats (the gate counts ints as categories); anything but numbers always is."""
    if any(values.dtype.kind not in "iuf" for values in (baseline, canary)):
        return True
    if drift is not None and drift.test in DISTANCES:
        return drift.test == "total_variation"
    return any(values.dtype.kind != "f" for values in (baseline, canary))


def _output_method(definition: Any, categorical: bool, drift: GateResult | None) -> tuple[Any, str]:
    """The preset judging ``output`` by the gate's distance (its column type set to match in
    `definition`), and a sentence saying how."""
    from evidently.legacy.calculations.stattests import ks_stat_test
    from evidently.presets import DataDriftPreset

    for kind in ("numerical", "categorical", "text", "unknown", "list", "datetime"):
        names = getattr(definition, f"{kind}_columns") or []
        if OUTPUT in names:
            names.remove(OUTPUT)
    getattr(definition, f"{'categorical' if categorical else 'numerical'}_columns").append(OUTPUT)
    if not categorical:
        note = (
            f'Column {OUTPUT}: Evidently\'s method "{ks_stat_test.name}" '
            f"({ks_stat_test.display_name}), drift when p < {ks_stat_test.default_threshold:g}: "
            "a fixed-horizon test of equality, where the gate bounds the KS distance. "
        )
        return DataDriftPreset(per_column_method={OUTPUT: ks_stat_test.name}), note
    delta = drift.threshold if drift is not None and math.isfinite(drift.threshold) else 0.1
    note = (
        f'Column {OUTPUT}: method "{_tv_method()}" (total-variation distance of the two mixes, '
        f"registered with Evidently by monitors.reports), drift when above {delta:g}: the "
        "estimate alone, where the gate bounds it. "
    )
    preset = DataDriftPreset(
        per_column_method={OUTPUT: _tv_method()}, per_column_threshold={OUTPUT: delta}
    )
    return preset, note


@functools.cache
def _tv_method() -> str:
    """Register the total-variation distance with Evidently (once); its method name."""
    from evidently.legacy.calculations.stattests import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    method = StatTest(
        name=TV_METHOD,
        display_name="Total-variation distance",
        allowed_feature_types=[ColumnType.Categorical],
        default_threshold=0.1,
    )
    register_stattest(method, default_impl=_tv_distance)
    return TV_METHOD


def _tv_distance(reference: Any, current: Any, _kind: Any, threshold: float) -> tuple[float, bool]:
    """Half the summed gaps of the two category shares; drifted above `threshold`."""
    gaps = reference.value_counts(normalize=True).sub(
        current.value_counts(normalize=True), fill_value=0.0
    )
    distance = float(gaps.abs().sum() / 2)
    return distance, distance > threshold


def _at_top(page: str, block: str) -> str:
    """`block` right after the page's opening body tag, above what Evidently renders."""
    body = re.search(r"<body\b[^>]*>", page)
    at = body.end() if body else 0
    return f"{page[:at]}\n{block}\n{page[at:]}"
