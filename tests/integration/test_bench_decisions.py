"""The decision benchmark measures the manager's own path.

- Folding a look's rows through the SQL prediction log (``PredictionLog.fold``, what the manager
  reads) gives the same window summary as the benchmark's increments (``fold_look``).
- ``bench/decisions.py --quick`` (200 A/A rollouts at 10%, fixed seed) ends with fewer than 19
  false rollbacks and prints its JSON line last.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from conftest import MODEL, LogWriter
from contract.records import Feedback, PredictionRecord
from contract.sql.engine import open_engine
from rollout.store.predictions import PredictionLog
from rollout.summary import LabelSummary, WindowSummary

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import decisions as bench  # noqa: E402


def _records(look: bench.Look, start_ts: float) -> tuple[list[PredictionRecord], dict]:
    """The look's requests as the router logs them: per arm in the benchmark's order, the
    successful ones first (their outputs in order), then the failed ones."""
    records: list[PredictionRecord] = []
    free: dict[tuple[str, int], list[str]] = defaultdict(list)  # (arm, output) -> unlabelled ids
    ts = start_ts
    for arm, rows in look.arms.items():
        ok = len(rows.latencies) - rows.errors
        for i, latency in enumerate(rows.latencies):
            request_id = uuid.uuid4().hex
            failed = i >= ok
            output = None if failed else rows.outputs[i]
            ts += 1e-4
            records.append(
                PredictionRecord(
                    request_id=request_id,
                    ts=ts,
                    environment="prod",
                    model=MODEL,
                    version="2" if arm == "canary" else "1",
                    arm=arm,
                    rollout_id="r-bench",
                    plan_generation=look.generation,
                    features=None,
                    output=None if failed else json.dumps([output]),
                    latency_ms=latency,
                    error="boom" if failed else None,
                    status_code=500 if failed else 200,
                )
            )
            if not failed:
                free[(arm, int(output))].append(request_id)  # type: ignore[call-overload]
    return records, free


def test_the_store_fold_gives_the_benchmark_increments(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'store.db'}")
    log, writer = PredictionLog(engine), LogWriter(engine)
    rng = np.random.default_rng(11)
    world = bench.World(error=(0.02, 0.05), accuracy=(0.9, 0.8), positive=(0.3, 0.4))
    traffic, pending = bench.Traffic(world, rng), bench.Pending()
    increments = WindowSummary(labels=LabelSummary(min_share=0.5))
    folded: WindowSummary | None = None
    free: dict[tuple[str, int, int], list[str]] = defaultdict(list)
    for number, generation in enumerate((1, 1, 2, 2, 2)):
        look = traffic.look(0.5, generation)
        pending.add(look)
        arrived = pending.arrived(traffic.served)
        bench.fold_look(increments, look, arrived)

        records, ids = _records(look, 1000.0 + number)
        writer.write(records)
        for (arm, output), found in ids.items():
            free[(arm, output, generation)] += found
        at, generations, arms, outputs, values = arrived
        writer.add_feedback(
            [
                Feedback(
                    free[(bench.ARM_NAMES[arm], output, generation)].pop(0),
                    value,
                    2000.0 + float(t) * 1e-3,  # the labels' arrival order
                )
                for t, generation, arm, output, value in zip(
                    at, generations.tolist(), arms.tolist(), outputs.tolist(), values.tolist(),
                    strict=True,
                )
            ]
        )  # fmt: skip
        folded = log.fold("r-bench", 0.0, folded, min_share=0.5)

        assert folded is not None
        for arm in bench.ARM_NAMES:
            assert folded.counts(arm).n_requests == increments.counts(arm).n_requests
            assert folded.counts(arm).n_errors == increments.counts(arm).n_errors
            assert folded.labels.labelled[arm] == increments.labels.labelled[arm]
            assert folded.labels.correct[arm] == increments.labels.correct[arm]
        assert {g: (c.requests, c.errors) for g, c in folded.groups.items()} == {
            g: (c.requests, c.errors) for g, c in increments.groups.items()
        }
        for generation, group in increments.groups.items():  # the latency gate's one stream
            other = folded.groups[generation]
            assert set(group.latency) == set(other.latency) == {"baseline", "canary"}
            assert group.occupied == other.occupied
            for arm, counts in group.latency.items():
                assert np.array_equal(counts, other.latency[arm])
        assert folded.latency.bins is not None and increments.latency.bins is not None
        assert np.array_equal(
            folded.latency.bins.canary_counts, increments.latency.bins.canary_counts
        )
        assert np.array_equal(
            folded.latency.bins.baseline_counts, increments.latency.bins.baseline_counts
        )
        assert folded.outputs.categories.table()[0] == increments.outputs.categories.table()[0]
        assert np.array_equal(
            folded.outputs.categories.table()[1], increments.outputs.categories.table()[1]
        )
        for mine, theirs in (
            (increments.labels.differences, folded.labels.differences),
            (increments.outputs.mix, folded.outputs.mix),  # the category mix's streams
        ):
            assert set(mine) == set(theirs) and mine
            for metric, stream in mine.items():
                assert theirs[metric].count == stream.count
                assert theirs[metric].sum == pytest.approx(stream.sum, rel=1e-9, abs=1e-9)
                assert theirs[metric].variance == pytest.approx(stream.variance, rel=1e-9)
    assert increments.labels.labelled["canary"] > 300  # labels did arrive, late, in between


def test_quick_benchmark_keeps_false_rollbacks_under_the_limit() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "decisions.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["runs"] == bench.QUICK_RUNS
    assert result["aa_false_rollback_rate"] * bench.QUICK_RUNS < bench.QUICK_LIMIT
    assert result["aa_pass_rate"] >= 0.9  # healthy canaries are promoted, not left undecided
    low, high = result["aa_false_rollback_ci95"]
    assert low <= result["aa_false_rollback_rate"] <= high
    assert 0 < result["seconds_per_look"] < 0.05
