"""A bounded sample of a rollout's judged window, per arm, for the rollout page's pictures.

:func:`sample` reads at most ``limit`` of the newest requests of each arm since the window's
start (never the whole prediction log): their latency, whether they failed, the first output
and the first feature row. From it the page draws the outputs' distributions, error rate and
latency quantiles per arm with intervals (:func:`arm_stats`), and the most drifted features
(:func:`feature_drift`: :func:`monitors.feature_drift.compare_features`, a KS or chi-square test
per feature with Benjamini-Yekutieli across features, and how many columns each rule would flag
by chance at these sizes, the same table the drift report opens with).

Retention prunes prediction rows; a finished rollout's page must still draw. So the manager,
before each retention pass, keeps the sample of every rollout that finished since
(:func:`keep_finished_samples`, at most :data:`KEPT_PER_PASS` a pass): the same ``sample`` with
its feature rows cut to :data:`KEPT_FEATURE_ROWS` per arm (and :data:`KEPT_COLUMNS` columns), as
JSON in ``rollout_samples``. :func:`kept_sample` reads it back for the page when no row of the
window remains. Without either, the page says so; the stored evidence (events and looks) still
renders.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from contract.sql.schema import predictions, rollout_samples, rollouts
from monitors.feature_drift import FeatureDriftTable, compare_features
from rollout.lifecycle import ACTIVE_STATES
from rollout.summary import is_number, parse_rows

SAMPLE_PER_ARM = 2_000
ARMS = ("baseline", "canary")
QUANTILES = (0.5, 0.9, 0.99)
PERMUTATIONS = 20  # deals of the rows for the chance counts
KEPT_FEATURE_ROWS = 300  # feature rows per arm a finished rollout's kept sample holds
KEPT_COLUMNS = 200  # ... and columns of each
KEPT_PER_PASS = 20  # finished rollouts whose samples one pass keeps


@dataclass
class ArmSample:
    arm: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    outputs: list[float] = field(default_factory=list)  # numeric outputs only
    features: list[dict[str, object]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.latencies_ms)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class ArmStats:
    arm: str
    n: int
    error_rate: Interval
    latency_ms: dict[float, Interval]  # quantile → estimate and 95% interval


def sample(
    engine: Engine, rollout_id: str, since_ts: float, limit: int = SAMPLE_PER_ARM
) -> dict[str, ArmSample]:
    """The newest ``limit`` requests of each arm of ``rollout_id`` since ``since_ts``."""
    out: dict[str, ArmSample] = {}
    with engine.connect() as conn:
        for arm in ARMS:
            query = (
                select(
                    predictions.c.latency_ms,
                    predictions.c.error,
                    predictions.c.output,
                    predictions.c.features,
                )
                .where(
                    predictions.c.rollout_id == rollout_id,
                    predictions.c.arm == arm,
                    predictions.c.ts >= since_ts,
                )
                .order_by(predictions.c.id.desc())
                .limit(limit)
            )
            taken = out[arm] = ArmSample(arm)
            for latency_ms, error, output, features in conn.execute(query):
                taken.latencies_ms.append(float(latency_ms))
                if error is not None:
                    taken.errors += 1
                    continue
                _add_first(taken, output, features)
    return out


def sample_json(taken: dict[str, ArmSample]) -> str:
    """``taken`` as kept for a finished rollout: JSON, feature rows cut and stored by column,
    floats to 7 significant digits, zlib-compressed and base64-encoded (:func:`sample_from_json`
    reads it back)."""
    body = {}
    for arm, got in taken.items():
        rows = got.features[:KEPT_FEATURE_ROWS]
        columns = list(rows[0])[:KEPT_COLUMNS] if rows else []
        body[arm] = {
            "latencies_ms": [round(v, 3) for v in got.latencies_ms],
            "errors": got.errors,
            "outputs": [_short(v) for v in got.outputs],
            "columns": columns,
            "rows": [[_short(row.get(c)) for c in columns] for row in rows],
        }
    packed = zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 9)
    return base64.b64encode(packed).decode("ascii")


def _short(value: object) -> object:
    """A float to 7 significant digits (what a histogram or a KS test can tell apart)."""
    return float(f"{value:.7g}") if isinstance(value, float) else value


def sample_from_json(text: str) -> dict[str, ArmSample]:
    """The kept sample back (ValueError when it is not one)."""
    try:
        body = json.loads(zlib.decompress(base64.b64decode(text, validate=True)))
    except (zlib.error, binascii.Error) as exc:
        raise ValueError(f"not a kept sample: {exc}") from None
    out: dict[str, ArmSample] = {}
    for arm in ARMS:
        got = body.get(arm) or {}
        columns = [str(c) for c in got.get("columns", [])]
        out[arm] = ArmSample(
            arm,
            [float(v) for v in got.get("latencies_ms", [])],
            int(got.get("errors", 0)),
            [float(v) for v in got.get("outputs", [])],
            [dict(zip(columns, row, strict=False)) for row in got.get("rows", [])],
        )
    return out


def kept_sample(engine: Engine, rollout_id: str) -> tuple[float, dict[str, ArmSample]] | None:
    """(when it was taken, the sample) kept for a finished rollout, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            select(rollout_samples.c.taken_at, rollout_samples.c.body).where(
                rollout_samples.c.rollout_id == rollout_id
            )
        ).first()
    if row is None:
        return None
    try:
        return float(row.taken_at), sample_from_json(row.body)
    except (ValueError, TypeError, AttributeError):
        return None


def keep_finished_samples(
    engine: Engine,
    window_start: Callable[[str], float],
    now: float,
    limit: int = KEPT_PER_PASS,
) -> int:
    """Keep the sample of up to ``limit`` finished rollouts that have none yet, newest first
    (``window_start(rollout_id)``: where its judged window began); how many were kept."""
    with engine.connect() as conn:
        due = conn.execute(
            select(rollouts.c.id)
            .where(
                rollouts.c.state.not_in(ACTIVE_STATES),
                rollouts.c.id.not_in(select(rollout_samples.c.rollout_id)),
            )
            .order_by(rollouts.c.updated_at.desc())
            .limit(limit)
        ).scalars()
        due_ids = list(due)
    kept = 0
    for rollout_id in due_ids:
        since = window_start(rollout_id)
        body = sample_json(sample(engine, rollout_id, since))
        try:
            with engine.begin() as conn:
                conn.execute(
                    rollout_samples.insert().values(
                        rollout_id=rollout_id, taken_at=now, since_ts=since, body=body
                    )
                )
        except IntegrityError:  # another manager kept it first
            continue
        kept += 1
    return kept


def _add_first(taken: ArmSample, output: str | None, features: str | None) -> None:
    """The first predicted row's output (when numeric) and feature row of a request."""
    try:
        values = parse_rows(output)
        rows = parse_rows(features)
    except ValueError:
        return
    if values and is_number(values[0]) and math.isfinite(float(values[0])):  # type: ignore[arg-type]
        taken.outputs.append(float(values[0]))  # type: ignore[arg-type]
    if rows and isinstance(rows[0], dict):
        taken.features.append(rows[0])


def wilson(successes: int, n: int) -> Interval:
    """A proportion with its 95% Wilson interval (scipy's; 0 of 0: an interval of [0, 1])."""
    if n == 0:
        return Interval(0.0, 0.0, 1.0)
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return Interval(successes / n, float(ci.low), float(ci.high))


def quantile_interval(values: list[float], q: float) -> Interval:
    """The ``q`` quantile with a distribution-free 95% interval from order statistics."""
    ordered = np.sort(np.asarray(values, dtype=float))
    n = len(ordered)
    estimate = float(np.quantile(ordered, q))
    low_rank = int(stats.binom.ppf(0.025, n, q))
    high_rank = int(stats.binom.ppf(0.975, n, q))
    low = float(ordered[max(0, low_rank - 1)])
    high = float(ordered[min(n - 1, high_rank)])
    return Interval(estimate, min(low, estimate), max(high, estimate))


def arm_stats(taken: ArmSample) -> ArmStats:
    latency = {q: quantile_interval(taken.latencies_ms, q) for q in QUANTILES} if taken.n else {}
    return ArmStats(taken.arm, taken.n, wilson(taken.errors, taken.n), latency)


def feature_drift(
    baseline: list[dict[str, object]], canary: list[dict[str, object]]
) -> FeatureDriftTable | None:
    """Every feature of the two arms' sampled rows, most drifted first, false alarms controlled
    across features (``PERMUTATIONS`` deals for the chance counts); None without rows."""
    if len(baseline) < 2 or len(canary) < 2:
        return None
    return compare_features(
        pd.DataFrame(baseline), pd.DataFrame(canary), permutations=PERMUTATIONS, seed=0
    )


def numeric(rows: list[dict[str, object]], name: str) -> list[float]:
    return [float(row[name]) for row in rows if is_number(row.get(name))]  # type: ignore[arg-type]
