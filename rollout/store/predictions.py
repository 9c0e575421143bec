"""The prediction log and delayed labels.

Routers append :class:`PredictionRecord` rows in batches (one per inference request; the
request's feature rows and outputs are JSON lists) and :class:`Feedback` labels joined later by
request id. The manager reads them back per arm with :meth:`PredictionLog.arm_samples`, the
input of every analysis gate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, and_, func, select
from sqlalchemy.dialects import postgresql, sqlite

from rollout.store.schema import feedback, predictions


@dataclass(frozen=True)
class PredictionRecord:
    request_id: str
    ts: float
    environment: str
    model: str
    version: str
    arm: str  # baseline | canary | shadow | pinned
    rollout_id: str | None
    plan_generation: int
    features: str | None  # JSON list of rows, or None when not sampled
    output: str | None  # JSON list of predictions; None on error
    latency_ms: float
    error: str | None
    status_code: int


@dataclass(frozen=True)
class Feedback:
    request_id: str
    label: object  # a scalar, or one label per row of the request
    ts: float


@dataclass
class ArmSample:
    """What one arm did in a window: the raw material of the gates."""

    arm: str
    versions: set[str] = field(default_factory=set)
    n_requests: int = 0
    n_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    outputs: list[object] = field(default_factory=list)  # one per predicted row
    labelled: list[tuple[object, object]] = field(default_factory=list)  # (output, label) per row


class PredictionLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(self, records: Sequence[PredictionRecord]) -> None:
        if not records:
            return
        with self.engine.begin() as conn:
            conn.execute(predictions.insert(), [r.__dict__ for r in records])

    def add_feedback(self, labels: Sequence[Feedback]) -> None:
        """Store labels; a second label for the same request id replaces the first."""
        if not labels:
            return
        rows = [
            {"request_id": f.request_id, "label": json.dumps(f.label), "ts": f.ts} for f in labels
        ]
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(feedback)
        upsert = stmt.on_conflict_do_update(
            index_elements=["request_id"],
            set_={"label": stmt.excluded.label, "ts": stmt.excluded.ts},
        )
        with self.engine.begin() as conn:
            conn.execute(upsert, rows)

    def count(self, rollout_id: str, since_ts: float = 0.0) -> dict[str, int]:
        """Requests per arm for a rollout since ``since_ts``."""
        query = (
            select(predictions.c.arm, func.count())
            .where(predictions.c.rollout_id == rollout_id, predictions.c.ts >= since_ts)
            .group_by(predictions.c.arm)
        )
        with self.engine.connect() as conn:
            return {str(arm): int(n) for arm, n in conn.execute(query)}

    def arm_samples(
        self, rollout_id: str, since_ts: float = 0.0, until_ts: float | None = None
    ) -> dict[str, ArmSample]:
        """Per arm: requests, errors, latencies, outputs and labelled outputs in the window."""
        conditions = [predictions.c.rollout_id == rollout_id, predictions.c.ts >= since_ts]
        if until_ts is not None:
            conditions.append(predictions.c.ts < until_ts)
        query = (
            select(
                predictions.c.arm,
                predictions.c.version,
                predictions.c.output,
                predictions.c.latency_ms,
                predictions.c.error,
                feedback.c.label,
            )
            .select_from(
                predictions.outerjoin(feedback, feedback.c.request_id == predictions.c.request_id)
            )
            .where(and_(*conditions))
            .order_by(predictions.c.id)
        )
        samples: dict[str, ArmSample] = {}
        with self.engine.connect() as conn:
            for arm, version, output, latency_ms, error, label in conn.execute(query):
                sample = samples.setdefault(arm, ArmSample(arm=arm))
                sample.versions.add(version)
                sample.n_requests += 1
                sample.latencies_ms.append(float(latency_ms))
                if error is not None:
                    sample.n_errors += 1
                    continue
                outputs = _rows(json.loads(output)) if output is not None else []
                sample.outputs.extend(outputs)
                if label is not None:
                    labels = _rows(json.loads(label))
                    if len(labels) == 1 and len(outputs) > 1:
                        labels = labels * len(outputs)
                    sample.labelled.extend(zip(outputs, labels, strict=False))
        return samples

    def report_rows(
        self, rollout_id: str, arm: str, since_ts: float = 0.0, limit: int = 5000
    ) -> tuple[list[dict[str, object]], list[object]]:
        """Up to ``limit`` successful requests of one arm: (feature rows, outputs), aligned.

        Requests logged without features (sampling) or with several rows are left out, so row
        *i* of the features produced output *i*.
        """
        query = (
            select(predictions.c.features, predictions.c.output)
            .where(
                predictions.c.rollout_id == rollout_id,
                predictions.c.arm == arm,
                predictions.c.ts >= since_ts,
                predictions.c.error.is_(None),
                predictions.c.features.is_not(None),
            )
            .order_by(predictions.c.id.desc())
            .limit(limit)
        )
        features: list[dict[str, object]] = []
        outputs: list[object] = []
        with self.engine.connect() as conn:
            for raw_features, raw_output in conn.execute(query):
                rows, values = json.loads(raw_features), _rows(json.loads(raw_output))
                if len(rows) == 1 and len(values) == 1 and isinstance(rows[0], dict):
                    features.append(rows[0])
                    outputs.append(values[0])
        return features, outputs

    def paired(
        self, rollout_id: str, since_ts: float = 0.0
    ) -> list[tuple[object, object, object | None]]:
        """(baseline output, shadow output, label or None) per row of every request the
        shadow answered too (same request id) since ``since_ts``; errors are left out."""
        shadow = predictions.alias("shadow")
        query = (
            select(predictions.c.output, shadow.c.output, feedback.c.label)
            .select_from(
                predictions.join(
                    shadow,
                    and_(
                        shadow.c.request_id == predictions.c.request_id,
                        shadow.c.rollout_id == rollout_id,
                        shadow.c.arm == "shadow",
                    ),
                ).outerjoin(feedback, feedback.c.request_id == predictions.c.request_id)
            )
            .where(
                predictions.c.rollout_id == rollout_id,
                predictions.c.arm == "baseline",
                predictions.c.ts >= since_ts,
                predictions.c.error.is_(None),
                shadow.c.error.is_(None),
            )
            .order_by(predictions.c.id)
        )
        pairs: list[tuple[object, object, object | None]] = []
        with self.engine.connect() as conn:
            for baseline_output, shadow_output, label in conn.execute(query):
                if baseline_output is None or shadow_output is None:
                    continue
                base_rows = _rows(json.loads(baseline_output))
                shadow_rows = _rows(json.loads(shadow_output))
                labels: list[object | None] = (
                    _rows(json.loads(label)) if label is not None else [None] * len(base_rows)
                )
                if len(labels) == 1 and len(base_rows) > 1:
                    labels = labels * len(base_rows)
                pairs.extend(zip(base_rows, shadow_rows, labels, strict=False))
        return pairs

    def recent(self, environment: str, model: str, limit: int = 100) -> list[PredictionRecord]:
        query = (
            select(predictions)
            .where(predictions.c.environment == environment, predictions.c.model == model)
            .order_by(predictions.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                PredictionRecord(**{k: v for k, v in row._mapping.items() if k != "id"})
                for row in conn.execute(query)
            ]


def _rows(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else [value]


def iter_feedback(payload: object) -> Iterable[tuple[str, object]]:
    """(request_id, label) pairs from ``{"request_id", "label"}`` or a list of them.

    Raises ``ValueError`` naming the offending item and field.
    """
    items = payload if isinstance(payload, list) else [payload]
    for index, item in enumerate(items):
        where = f"item {index}" if isinstance(payload, list) else "body"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object with 'request_id' and 'label'")
        request_id = item.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise ValueError(f"{where}: 'request_id' must be a non-empty string")
        if "label" not in item:
            raise ValueError(f"{where}: 'label' is missing")
        yield request_id, item["label"]
