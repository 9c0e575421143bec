"""The prediction log and delayed labels, as the manager reads them.

Routers write one :class:`~contract.records.PredictionRecord` per inference request (the
request's feature rows and outputs are JSON lists) and :class:`~contract.records.Feedback`
labels joined later by request id, through the contract's one writer
(:mod:`contract.sql.predictions`). The manager folds a step's window into a bounded summary with
:meth:`PredictionLog.fold` (only the rows it has not seen, at each look), the input of every
analysis gate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, Connection, Engine, and_, func, or_, select

from contract.names import BASELINE
from contract.records import PredictionRecord
from contract.sql.schema import feedback, predictions
from monitors.names import Arm
from rollout.summary import (
    DEFAULT_MIN_SHARE,
    GroupCounts,
    LabelSummary,
    WindowSummary,
    label_pairs,
    parse_many,
    parse_rows,
)

FOLD_CHUNK = 2000  # rows per fetch when folding a window
LABEL_SETTLE_S = 5.0  # labels this much older than the newest folded one are final


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

    def count(self, rollout_id: str, since_ts: float = 0.0) -> dict[str, int]:
        """Requests per arm for a rollout since ``since_ts``."""
        query = (
            select(predictions.c.arm, func.count())
            .where(predictions.c.rollout_id == rollout_id, predictions.c.ts >= since_ts)
            .group_by(predictions.c.arm)
        )
        with self.engine.connect() as conn:
            return {str(arm): int(n) for arm, n in conn.execute(query)}

    def first_generation(self, rollout_id: str, since_ts: float) -> int | None:
        """The lowest plan generation of a rollout's rows since ``since_ts`` (None: none)."""
        query = select(func.min(predictions.c.plan_generation)).where(
            predictions.c.rollout_id == rollout_id, predictions.c.ts >= since_ts
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else int(found)

    def first_generation_after(self, rollout_id: str, since_ts: float) -> int | None:
        """The lowest plan generation of a rollout's rows since ``since_ts`` that is newer than
        every generation of its rows before then: the first plan written at ``since_ts``
        (rows a router logged under the plan before it are left out). None: none yet."""
        before = (
            select(func.max(predictions.c.plan_generation))
            .where(predictions.c.rollout_id == rollout_id, predictions.c.ts < since_ts)
            .scalar_subquery()
        )
        query = select(func.min(predictions.c.plan_generation)).where(
            predictions.c.rollout_id == rollout_id,
            predictions.c.ts >= since_ts,
            predictions.c.plan_generation > func.coalesce(before, -1),
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else int(found)

    def fold(
        self,
        rollout_id: str,
        since_ts: float,
        summary: WindowSummary | None = None,
        *,
        preview_version: str | None = None,
        min_share: float = DEFAULT_MIN_SHARE,
    ) -> WindowSummary:
        """Fold the window's rows that `summary` has not seen yet; return the summary.

        Reads only rows with an id above ``summary.last_id``, streaming in chunks, so memory
        stays bounded however long the window. On PostgreSQL, where rows of concurrent
        writers can commit out of id order, the rows at or below the cursor are counted first:
        if a row committed behind it (the count differs from ``summary.folded``), the window is
        folded again from scratch. Labels are folded by their arrival time, with a count check
        of their own (`_fold_labels`).
        With `preview_version`, requests pinned to that version stand for the canary arm
        (blue/green preview), beside the baseline's. Requests and errors are also counted per
        plan generation (one traffic split each), and labelled requests feed the quality
        difference streams batch by batch, each batch at its generation's canary share
        (`min_share`: the smallest share the rollout's steps use).
        """
        arms = self._arm_filter(preview_version)
        window = [predictions.c.rollout_id == rollout_id, predictions.c.ts >= since_ts, arms]
        with self.engine.connect() as conn:
            # SQLite has one writer at a time, so ids commit in order; PostgreSQL does not.
            if summary is not None and self.engine.dialect.name != "sqlite":
                behind = conn.execute(
                    select(func.count()).where(*window, predictions.c.id <= summary.last_id)
                ).scalar_one()
                if int(behind) != summary.folded:
                    summary = None
            if summary is None:
                summary = WindowSummary(labels=LabelSummary(min_share=min_share))
            query = (
                select(
                    predictions.c.id,
                    predictions.c.arm,
                    predictions.c.version,
                    predictions.c.output,
                    predictions.c.latency_ms,
                    predictions.c.error,
                    predictions.c.plan_generation,
                )
                .where(*window, predictions.c.id > summary.last_id)
                .order_by(predictions.c.id)
            )
            result = conn.execution_options(yield_per=FOLD_CHUNK).execute(query)
            for chunk in result.partitions():
                _fold_chunk(summary, chunk)
            summary.labels = self._fold_labels(conn, window, summary)
        return summary

    def _arm_filter(self, preview_version: str | None) -> ColumnElement[bool]:
        if preview_version is None:
            return predictions.c.arm.in_(("baseline", "canary"))
        return or_(
            predictions.c.arm == "baseline",
            and_(predictions.c.arm == "pinned", predictions.c.version == preview_version),
        )

    def _fold_labels(
        self, conn: Connection, window: list[ColumnElement[bool]], summary: WindowSummary
    ) -> LabelSummary:
        """Fold the labelled requests of the window whose label arrived since the last look.

        Labels are read from ``labels.cursor_ts - LABEL_SETTLE_S`` on (by the label's arrival
        time), skipping those already folded at the same time (``labels.recent``). Then the
        labelled requests with a label older than the cursor are counted: a label that
        committed late, replaced an earlier one, or whose prediction was logged after it makes
        that count differ from the folded one, and the labels are folded again from scratch.
        """
        labels = summary.labels
        if not self._fold_new_labels(conn, window, labels, summary.groups):
            labels = LabelSummary(min_share=labels.min_share)
            for group in summary.groups.values():  # their label counts are folded again too
                group.labelled = dict.fromkeys(group.labelled, 0)
                group.correct = dict.fromkeys(group.correct, 0)
            self._fold_new_labels(conn, window, labels, summary.groups)
        return labels

    def _fold_new_labels(
        self,
        conn: Connection,
        window: list[ColumnElement[bool]],
        labels: LabelSummary,
        groups: Mapping[int, GroupCounts],
    ) -> bool:
        """Fold labels from the cursor on; False when the folded counts no longer match."""
        joined = predictions.join(feedback, feedback.c.request_id == predictions.c.request_id)
        labelled = [*window, predictions.c.error.is_(None), predictions.c.output.is_not(None)]
        query = (
            select(
                predictions.c.id,
                predictions.c.arm,
                predictions.c.output,
                feedback.c.label,
                feedback.c.ts,
                predictions.c.plan_generation,
            )
            .select_from(joined)
            .where(*labelled, feedback.c.ts >= labels.cursor_ts)
            .order_by(feedback.c.ts)
        )
        replaced = False
        result = conn.execution_options(yield_per=FOLD_CHUNK).execute(query)
        for chunk in result.partitions():
            by_generation: dict[int, dict[Arm, list[tuple[object, object]]]] = {}
            for row_id, arm, output, label, label_ts, generation in chunk:
                seen = labels.recent.get(row_id)
                if seen == label_ts:
                    continue
                replaced = replaced or seen is not None
                labels.recent[row_id] = label_ts
                labels.folded += 1
                labels.newest_ts = max(labels.newest_ts, label_ts)
                by_generation.setdefault(int(generation), {}).setdefault(_sample(arm), []).extend(
                    label_pairs(parse_rows(output), parse_rows(label))
                )
            labels.add_chunk(by_generation, groups)
        labels.cursor_ts = max(labels.cursor_ts, labels.newest_ts - LABEL_SETTLE_S)
        labels.recent = {k: ts for k, ts in labels.recent.items() if ts >= labels.cursor_ts}
        behind = conn.execute(
            select(func.count())
            .select_from(joined)
            .where(*labelled, feedback.c.ts < labels.cursor_ts)
        ).scalar_one()
        return not replaced and int(behind) == labels.folded - len(labels.recent)

    def report_rows(
        self,
        rollout_id: str,
        arm: str,
        since_ts: float = 0.0,
        limit: int = 5000,
        *,
        version: str | None = None,
    ) -> tuple[list[dict[str, object]], list[object]]:
        """Up to ``limit`` successful requests of one arm: (feature rows, outputs), aligned.

        Requests logged without features (sampling) or with several rows are left out, so row
        *i* of the features produced output *i*. `version` keeps only that version's requests
        (the candidate's pinned requests in a blue/green preview).
        """
        query = (
            select(predictions.c.features, predictions.c.output)
            .where(
                predictions.c.rollout_id == rollout_id,
                predictions.c.arm == arm,
                predictions.c.ts >= since_ts,
                predictions.c.error.is_(None),
                predictions.c.features.is_not(None),
                *([] if version is None else [predictions.c.version == version]),
            )
            .order_by(predictions.c.id.desc())
            .limit(limit)
        )
        features: list[dict[str, object]] = []
        outputs: list[object] = []
        with self.engine.connect() as conn:
            for raw_features, raw_output in conn.execute(query):
                rows, values = json.loads(raw_features), parse_rows(raw_output)
                if len(rows) == 1 and len(values) == 1 and isinstance(rows[0], dict):
                    features.append(rows[0])
                    outputs.append(values[0])
        return features, outputs

    def feature_rows(
        self,
        rollout_id: str,
        arm: str,
        since_ts: float,
        after_id: int = 0,
        limit: int = 5000,
        *,
        version: str | None = None,
    ) -> tuple[int, list[dict[str, object]]]:
        """The feature rows of up to ``limit`` requests of one arm since ``since_ts`` with an
        id above ``after_id``, oldest first (every row of a request with several; failed
        requests too: an input is an input), and the last id read (``after_id`` when none).
        Rows that commit behind the cursor (PostgreSQL) are not read again: which rows are
        counted never depends on their values."""
        query = (
            select(predictions.c.id, predictions.c.features)
            .where(
                predictions.c.rollout_id == rollout_id,
                predictions.c.arm == arm,
                predictions.c.ts >= since_ts,
                predictions.c.id > after_id,
                *([] if version is None else [predictions.c.version == version]),
            )
            .order_by(predictions.c.id)
            .limit(limit)
        )
        last, rows = after_id, list[dict[str, object]]()
        with self.engine.connect() as conn:
            for row_id, raw in conn.execute(query):
                last = int(row_id)
                rows.extend(_feature_rows(raw))
        return last, rows

    def candidate_rows(
        self,
        rollout_id: str,
        since_ts: float,
        first_generation: int,
        *,
        later: bool,
        features: bool = False,
        after_id: int = 0,
        limit: int = 5000,
    ) -> tuple[int, list[Any]]:
        """The candidate's outputs (or ``features``: its feature rows) in a rollout's window
        since ``since_ts``, oldest first: of the plan generations before ``first_generation``
        (while it served beside the baseline), or ``later``, from it on (alone, or promoted);
        up to ``limit`` requests above ``after_id``, failed ones left out; and the last id
        read."""
        generation = predictions.c.plan_generation
        column = predictions.c.features if features else predictions.c.output
        query = (
            select(predictions.c.id, column)
            .where(
                predictions.c.rollout_id == rollout_id,
                predictions.c.arm == "canary",
                predictions.c.ts >= since_ts,
                predictions.c.id > after_id,
                predictions.c.error.is_(None),
                generation >= first_generation if later else generation < first_generation,
            )
            .order_by(predictions.c.id)
            .limit(limit)
        )
        last, values = after_id, list[Any]()
        with self.engine.connect() as conn:
            for row_id, raw in conn.execute(query):
                last = int(row_id)
                values.extend(_feature_rows(raw) if features else parse_rows(raw))
        return last, values

    def served_features(
        self,
        environment: str,
        model: str,
        version: str,
        start: float,
        end: float,
        limit: int = 2000,
    ) -> list[dict[str, object]]:
        """The feature rows of the first ``limit`` requests ``version`` answered in
        ``[start, end)``, rollout or not (mirrored shadow copies left out)."""
        query = (
            select(predictions.c.features)
            .where(
                predictions.c.environment == environment,
                predictions.c.model == model,
                predictions.c.version == version,
                predictions.c.ts >= start,
                predictions.c.ts < end,
                predictions.c.arm != "shadow",
                predictions.c.features.is_not(None),
            )
            .order_by(predictions.c.id)
            .limit(limit)
        )
        rows: list[dict[str, object]] = []
        with self.engine.connect() as conn:
            for (raw,) in conn.execute(query):
                rows.extend(_feature_rows(raw))
        return rows

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
                base_rows = parse_rows(baseline_output)
                shadow_rows = parse_rows(shadow_output)
                labels: list[object | None] = (
                    parse_rows(label) if label is not None else [None] * len(base_rows)
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


def _fold_chunk(summary: WindowSummary, chunk: Sequence[Sequence[Any]]) -> None:
    """Fold one chunk of (id, arm, version, output, latency, error, plan generation) rows,
    batched per arm, counted per generation; each generation's outputs feed the mix streams
    at its canary share."""
    batches: dict[Arm, tuple[set[str], list[float], list[int]]] = {}
    raw: dict[int, dict[Arm, list[str]]] = {}  # outputs by generation and arm, in order
    timed: dict[tuple[int, Arm], list[float]] = {}  # latencies by generation and arm
    for row_id, arm, version, output, latency_ms, error, generation in chunk:
        sample = _sample(arm)
        group = summary.groups.get(generation)
        if group is None:
            group = summary.groups[int(generation)] = GroupCounts()
        group.requests[sample] += 1
        group.errors[sample] += error is not None
        versions, latencies, errors = batches.setdefault(sample, (set(), [], [0]))
        versions.add(version)
        latencies.append(float(latency_ms))
        timed.setdefault((int(generation), sample), []).append(float(latency_ms))
        if error is None:
            if output is not None:
                raw.setdefault(int(generation), {}).setdefault(sample, []).append(output)
        else:
            errors[0] += 1
        summary.last_id = max(summary.last_id, int(row_id))
    parsed = {
        generation: {arm: parse_many(rows) for arm, rows in arms.items()}
        for generation, arms in raw.items()
    }
    counted: dict[Arm, npt.NDArray[np.int64]] = {}  # each arm's latencies on LATENCY_EDGES
    for (generation, arm), latencies in timed.items():
        counts = summary.groups[generation].add_latencies(arm, latencies)
        if counts is not None:
            counted[arm] = counts + counted[arm] if arm in counted else counts
    for arm, (versions, latencies, errors) in batches.items():
        outputs = [row for arms in parsed.values() for row in arms.get(arm, [])]
        summary.add_batch(arm, versions, latencies, outputs, errors[0], counted.get(arm))
        summary.folded += len(latencies)
    for generation, arms in parsed.items():
        share = summary.groups[generation].canary_share
        if share is not None and 0 < share < 1:
            summary.outputs.add_streams(
                share, arms.get("canary", []), arms.get("baseline", []), summary.labels.min_share
            )


def _sample(arm: str) -> Arm:
    """The gates' sample of a logged arm: a preview's pinned requests stand for the canary."""
    return "baseline" if arm == BASELINE else "canary"


def _feature_rows(raw: str | None) -> list[dict[str, object]]:
    """A logged request's feature rows (none when it was logged without, or unreadable)."""
    if raw is None:
        return []
    try:
        parsed = json.loads(raw)
    except ValueError:
        return []
    return [row for row in parsed if isinstance(row, dict)] if isinstance(parsed, list) else []
