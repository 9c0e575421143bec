"""Folding a step window of the prediction log into bounded summaries, on real stores."""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
from sqlalchemy import insert

from conftest import LogWriter, logged
from contract.records import Feedback, PredictionRecord
from contract.sql.engine import open_engine
from contract.sql.schema import predictions
from monitors.anytime import ArmBatch, MeanDifference
from monitors.names import Arm
from rollout.analysis import analyse
from rollout.judge import Look, judge
from rollout.spec import load_spec
from rollout.store.predictions import PredictionLog
from rollout.summary import RESERVOIR_CAP, WindowSummary

SPEC = load_spec(
    {
        "strategy": {"linear": {"steps": 2}},
        "analysis": {
            "gates": [
                {"error_rate": {}},
                {"latency": {"max_ratio": 1.0}},
                {"output_drift": {"method": "ks"}},
                {"quality": {"metric": "accuracy", "min_labels": 10}},
            ]
        },
    }
)


def _records(
    arm: str,
    n: int,
    *,
    start: int = 0,
    ts: float = 100.0,
    version: str | None = None,
    seed: int = 0,
) -> list[PredictionRecord]:
    rng = np.random.default_rng(seed)
    latencies = rng.lognormal(1.0, 0.3, n)
    outputs = rng.integers(0, 2, n)
    return [
        PredictionRecord(
            request_id=f"{arm}-{start + i}",
            ts=ts + i * 1e-3,
            environment="prod",
            model="bc",
            version=version or ("2" if arm == "canary" else "1"),
            arm=arm,
            rollout_id="r1",
            plan_generation=1,
            features=None,
            output=json.dumps([int(outputs[i])]) if i % 50 else None,
            latency_ms=float(latencies[i]),
            error=None if i % 50 else "boom",
            status_code=200 if i % 50 else 500,
        )
        for i in range(n)
    ]


def test_folding_new_rows_gives_the_summary_of_the_whole_window(store_url: str) -> None:
    engine = open_engine(store_url)
    log, writer = PredictionLog(engine), LogWriter(engine)
    writer.write(_records("baseline", 300) + _records("canary", 100, seed=1))
    writer.write(_records("baseline", 50, ts=10.0, start=900))  # before the window: left out
    first = log.fold("r1", since_ts=50.0)
    assert (first.counts("baseline").n_requests, first.counts("canary").n_requests) == (300, 100)
    assert (first.counts("baseline").n_errors, first.counts("canary").n_errors) == (6, 2)
    writer.write(_records("baseline", 200, start=300, seed=2) + _records("canary", 80, start=100))
    writer.add_feedback([Feedback(f"canary-{i}", 1, ts=200.0) for i in range(1, 40)])
    again = log.fold("r1", since_ts=50.0, summary=first)
    fresh = log.fold("r1", since_ts=50.0)
    assert again is first and again.folded == fresh.folded == 680
    for arm in ("baseline", "canary"):
        assert again.counts(arm) == fresh.counts(arm)
        assert np.array_equal(again.latency.values(arm), fresh.latency.values(arm))
    # Labels that arrived after the first fold are in: requests 1..39 (all answered).
    assert again.labels.labelled == {"baseline": 0, "canary": 39}
    expected_correct = sum(
        json.loads(r.output or "[]") == [1] for r in _records("canary", 100, seed=1)[1:40]
    )
    assert again.labels.correct["canary"] == expected_correct
    log.engine.dispose()


def test_a_row_that_commits_behind_the_cursor_is_not_lost(postgres_url: str) -> None:
    """PostgreSQL: concurrent writers may commit ids out of order (SQLite has one writer)."""
    engine = open_engine(postgres_url)
    log = PredictionLog(engine)
    LogWriter(engine).write(_records("canary", 10))
    with engine.begin() as conn:  # leave a hole in the ids, as a slow transaction would
        conn.execute(insert(predictions), [{**_records("canary", 1, start=500)[0].__dict__}])
    summary = log.fold("r1", since_ts=0.0)
    late = {**_records("canary", 2, start=600)[1].__dict__, "id": summary.last_id - 5}
    with engine.begin() as conn:
        conn.execute(predictions.delete().where(predictions.c.id == summary.last_id - 5))
    summary.folded -= 1  # as if that id had not committed yet when we folded
    with engine.begin() as conn:
        conn.execute(insert(predictions), [late])
    again = log.fold("r1", since_ts=0.0, summary=summary)
    assert again is not summary  # rebuilt from scratch
    assert again.counts("canary").n_requests == 11 and again.folded == 11
    engine.dispose()


def test_a_preview_judges_requests_pinned_to_the_candidate(store_url: str) -> None:
    engine = open_engine(store_url)
    log = PredictionLog(engine)
    LogWriter(engine).write(
        _records("baseline", 120)
        + _records("pinned", 40, version="3", start=1000)
        + _records("pinned", 25, version="9", start=2000)  # someone pinning another version
    )
    summary = log.fold("r1", since_ts=0.0, preview_version="3")
    assert summary.counts("canary").n_requests == 40
    assert summary.counts("canary").versions == {"3"}
    assert log.fold("r1", since_ts=0.0).counts("canary").n_requests == 0
    log.engine.dispose()


def test_folding_a_long_window_keeps_memory_flat(tmp_path: object) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/store.db")
    log, writer = PredictionLog(engine), LogWriter(engine)
    peaks = []
    for total in (30_000, 150_000):
        writer.write(
            _records("baseline", total - 30_000 * (total > 30_000), start=total, seed=total)
        )
        tracemalloc.start()
        summary = log.fold("r1", since_ts=0.0)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert summary.counts("baseline").n_requests == total
    # Five times the rows (past the reservoir cap), not five times the memory.
    assert summary.latency.values("baseline").size == RESERVOIR_CAP
    assert peaks[1] < 1.5 * peaks[0] + 2_000_000, peaks
    log.engine.dispose()


def test_past_the_cap_the_gates_run_on_bins_moments_and_samples() -> None:
    rng = np.random.default_rng(9)
    summary = WindowSummary()
    n_b, n_c = 60_000, 30_000
    arms: tuple[tuple[Arm, int, float], ...] = (("baseline", n_b, 1.0), ("canary", n_c, 1.15))
    for arm, n, scale in arms:
        latencies = rng.lognormal(1.0, 0.3, n) * scale
        outputs = rng.normal(0.0, 1.0, n)
        for start in range(0, n, 1000):  # as the store folds them: batches per arm
            batch = slice(start, start + 1000)
            summary.add_batch(arm, {"1"}, latencies[batch].tolist(), outputs[batch].tolist(), 0)
    assert not summary.latency.exact and not summary.outputs.numeric.exact
    error_rate, latency, drift, quality = judge(Look(summary, randomised=True), SPEC.analysis)
    assert (latency.n_baseline, latency.n_canary) == (n_b, n_c)  # every request, from bins
    assert latency.verdict == "fail" and latency.ci_low > 1.0  # 15% slower, 1.0 allowed
    assert drift.test == "ks_distance" and drift.ci_low == 0.0  # on the uniform samples
    assert drift.n_baseline == n_b and drift.ci_high < 0.1
    assert error_rate.verdict == "pass" and quality.verdict == "inconclusive"  # no labels
    evidence = analyse(summary, SPEC.analysis, weight_pct=10)
    assert (evidence.verdict, evidence.n_baseline, evidence.n_canary) == ("fail", n_b, n_c)


@pytest.mark.parametrize("outputs", [["a", "b", "b"], [0, 1, 1], [0.0, 1.0, 1.0]])
def test_category_outputs_past_the_cap_use_the_full_counts(outputs: list[object]) -> None:
    summary = WindowSummary()
    sizes: tuple[tuple[Arm, int], ...] = (("baseline", 21_000), ("canary", 7_000))
    for arm, n in sizes:
        for i in range(0, n, 500):
            rows = [outputs[j % 3] for j in range(i, i + 500)]
            summary.add_batch(arm, {"1"}, [1.0] * 500, rows, 0)
    spec = load_spec(
        {"strategy": {"linear": {"steps": 2}}, "analysis": {"gates": ["output_drift"]}}
    )
    (drift,) = judge(Look(summary, randomised=True), spec.analysis)
    assert drift.test == "total_variation" and (drift.n_baseline, drift.n_canary) == (21_000, 7_000)
    assert drift.effect_size == pytest.approx(abs(7000 / 21000 - 2334 / 7000), abs=1e-12)
    assert drift.ci_low == 0.0 and drift.verdict == "pass"


def test_labels_fold_incrementally_and_survive_late_and_replaced_labels(store_url: str) -> None:
    engine = open_engine(store_url)
    log, writer = PredictionLog(engine), LogWriter(engine)
    writer.write(_records("baseline", 200) + _records("canary", 100, seed=1))

    def labels(ids: range, label: int, ts: float, arm: str = "canary") -> None:
        writer.add_feedback([Feedback(f"{arm}-{i}", label, ts=ts) for i in ids])

    def same_as_fresh(summary: WindowSummary) -> None:
        whole = log.fold("r1", since_ts=0.0)
        fresh = whole.labels
        assert (summary.labels.labelled, summary.labels.correct) == (
            fresh.labelled,
            fresh.correct,
        )
        # the plan generation's counts are folded again with the labels, never twice
        group, again = summary.groups[1], whole.groups[1]
        assert (group.labelled, group.correct) == (again.labelled, again.correct)
        assert group.labelled == summary.labels.labelled
        assert group.correct == summary.labels.correct

    labels(range(1, 21), 1, ts=1000.0)
    summary = log.fold("r1", since_ts=0.0)
    assert summary.labels.labelled["canary"] == 20
    labels(range(21, 41), 0, ts=1010.0)
    labels(range(1, 31), 1, ts=1011.0, arm="baseline")
    first = summary.labels
    summary = log.fold("r1", since_ts=0.0, summary=summary)
    assert summary.labels is first  # only the new labels were read
    assert summary.labels.labelled == {"baseline": 30, "canary": 40}
    assert summary.labels.cursor_ts == 1011.0 - 5.0
    same_as_fresh(summary)
    # A label that commits late, stamped before the cursor, is still counted.
    labels(range(41, 46), 1, ts=1001.0)
    summary = log.fold("r1", since_ts=0.0, summary=summary)
    assert summary.labels is not first  # noticed by the count: folded again
    assert summary.labels.labelled["canary"] == 45
    same_as_fresh(summary)
    # A corrected label replaces the first one instead of counting twice.
    before = summary.labels
    labels(range(1, 21), 0, ts=1020.0)
    summary = log.fold("r1", since_ts=0.0, summary=summary)
    assert summary.labels is not before
    assert summary.labels.labelled["canary"] == 45
    same_as_fresh(summary)
    log.engine.dispose()


def test_a_window_is_counted_per_plan_generation_and_labels_feed_the_difference_streams(
    store_url: str,
) -> None:
    engine = open_engine(store_url)
    log, writer = PredictionLog(engine), LogWriter(engine)
    step1 = _records("baseline", 90) + _records("canary", 10, seed=1)
    step2 = [
        replace(r, plan_generation=2)
        for r in _records("baseline", 50, start=500) + _records("canary", 50, start=500, seed=2)
    ]
    writer.write(step1 + step2)
    writer.add_feedback([Feedback(r.request_id, 1, ts=100.0) for r in step1 + step2 if r.output])
    summary = log.fold("r1", since_ts=0.0, min_share=0.1)
    assert sorted(summary.groups) == [1, 2]
    assert summary.groups[1].canary_share == pytest.approx(0.1)
    assert summary.groups[2].canary_share == pytest.approx(0.5)
    assert summary.groups[2].errors == {"baseline": 1, "canary": 1}  # every 50th failed
    accuracy = summary.labels.differences["accuracy"]
    labelled = summary.labels.labelled["baseline"] + summary.labels.labelled["canary"]
    assert accuracy.count == labelled == sum(1 for r in step1 + step2 if r.output)
    for generation, rows in ((1, step1), (2, step2)):
        for arm in ("baseline", "canary"):
            mine = [r for r in rows if r.arm == arm and r.output]
            assert summary.groups[generation].labelled[arm] == len(mine)
            assert summary.groups[generation].correct[arm] == sum(r.output == "[1]" for r in mine)
    log.engine.dispose()


def _numbers(arm: str, values: np.ndarray) -> list[PredictionRecord]:
    return [logged("r1", arm, "2" if arm == "canary" else "1", float(v)) for v in values]


def test_outputs_feed_the_cut_stream_and_the_mix_streams_at_each_generations_share(
    store_url: str,
) -> None:
    engine = open_engine(store_url)
    log, writer = PredictionLog(engine), LogWriter(engine)
    rng = np.random.default_rng(4)
    first_b, first_c = rng.normal(0, 1, 200), rng.normal(0.5, 1, 50)
    writer.write(_numbers("baseline", first_b) + _numbers("canary", first_c))
    summary = log.fold("r1", since_ts=0.0, min_share=0.1)
    # the first batch's baseline median is the cut; that batch stays out of its stream
    assert summary.outputs.cut == pytest.approx(float(np.median(first_b)))
    assert summary.outputs.below_cut is not None and summary.outputs.below_cut.count == 0
    then_b, then_c = rng.normal(0, 1, 300), rng.normal(0.5, 1, 100)
    writer.write(_numbers("baseline", then_b) + _numbers("canary", then_c))
    log.fold("r1", since_ts=0.0, summary=summary, min_share=0.1)
    cut = float(np.median(first_b))
    expected = MeanDifference(0.0, 1.0, 0.1)
    below_c, below_b = int((then_c <= cut).sum()), int((then_b <= cut).sum())
    expected.add(150 / 650, ArmBatch(100, below_c, below_c), ArmBatch(300, below_b, below_b))
    stream = summary.outputs.below_cut
    assert (stream.count, stream.sum, stream.variance) == pytest.approx(
        (expected.count, expected.sum, expected.variance)
    )
    assert stream.bounds(0.05, 5000).estimate < 0  # fewer canary values below the cut
    assert summary.outputs.mix == {}  # numbers, not categories
    log.engine.dispose()

    # categories: one stream per category, fed every batch (the first one too)
    categories = WindowSummary()
    categories.outputs.add("canary", [1, 1, 0])
    categories.outputs.add("baseline", [0, 0, 1, 0])
    categories.outputs.add_streams(3 / 7, [1, 1, 0], [0, 0, 1, 0], 0.1)
    mix = categories.outputs.mix
    assert list(mix) == ["1", "0"]  # in the order they appeared
    assert mix["1"].count == 7 and mix["1"].arms["canary"] == ArmBatch(3, 2.0, 2.0)
    assert mix["0"].arms["baseline"] == ArmBatch(4, 3.0, 3.0)


def test_the_first_generation_after_a_moment_leaves_out_a_stale_routers_rows(
    store_url: str,
) -> None:
    """The watch's window starts at the plan written when it began: rows a router logged under
    the plan before it (after that moment, before it read the new plan) are left out."""
    engine = open_engine(store_url)
    log, writer = PredictionLog(engine), LogWriter(engine)
    assert log.first_generation_after("r1", 150.0) is None
    before = _records("canary", 10, ts=100.0)
    stale = [replace(r, request_id=f"stale-{i}", ts=160.0 + i) for i, r in enumerate(before)]
    writer.write(before + stale)
    assert log.first_generation_after("r1", 150.0) is None  # nothing newer yet
    assert log.first_generation("r1", 150.0) == 1
    new = [replace(r, request_id=f"new-{i}", plan_generation=2) for i, r in enumerate(stale)]
    writer.write(new)
    assert log.first_generation_after("r1", 150.0) == 2
    assert log.first_generation_after("r1", 50.0) == 1  # nothing before: every generation counts
    engine.dispose()
