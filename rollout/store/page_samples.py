"""A bounded sample of a rollout's judged window, per arm: what the dashboard's rollout page
draws (:mod:`rollout.web.sample` turns it into statistics and pictures).

:func:`sample` reads at most ``limit`` of the newest requests of each arm since the window's
start (never the whole prediction log): their latency, whether they failed, the first output
and the first feature row. :func:`window_start` says where that window began: the last
verdict's window for a finished rollout, else the current step's.

Retention prunes prediction rows; a finished rollout's page must still draw. So the manager,
before each retention pass, keeps the sample of every rollout that finished since
(:func:`keep_finished_samples`, at most :data:`KEPT_PER_PASS` a pass): the same ``sample`` with
its feature rows cut to :data:`KEPT_FEATURE_ROWS` per arm (and :data:`KEPT_COLUMNS` columns), as
JSON in ``rollout_samples``. :func:`kept_sample` reads it back for the page when no row of the
window remains. Only the newest :data:`KEPT_ROLLOUTS` samples are kept (:func:`drop_old_samples`):
an older one's row stays with an empty body, so the rollout is not sampled again.

It lives in the store, not in :mod:`rollout.web`, because the manager keeps the samples and
the manager does not import the web layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from contract.sql.schema import predictions, rollout_samples, rollouts
from rollout.lifecycle import ACTIVE_STATES
from rollout.store.packed import by_column, from_columns, pack, short, unpack
from rollout.store.records import EventRecord, RolloutRecord
from rollout.summary import is_number, parse_rows

SAMPLE_PER_ARM = 2_000
ARMS = ("baseline", "canary")
KEPT_FEATURE_ROWS = 300  # feature rows per arm a finished rollout's kept sample holds
KEPT_COLUMNS = 200  # ... and columns of each
KEPT_PER_PASS = 20  # finished rollouts whose samples one pass keeps
KEPT_ROLLOUTS = 1_000  # the newest samples kept (about 100 KiB each); older ones are dropped
DROPPED_PER_PASS = 200  # samples one pass drops at most


@dataclass
class PageSample:
    arm: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    outputs: list[float] = field(default_factory=list)  # numeric outputs only
    features: list[dict[str, object]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.latencies_ms)


def sample(
    engine: Engine, rollout_id: str, since_ts: float, limit: int = SAMPLE_PER_ARM
) -> dict[str, PageSample]:
    """The newest ``limit`` requests of each arm of ``rollout_id`` since ``since_ts``."""
    out: dict[str, PageSample] = {}
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
            taken = out[arm] = PageSample(arm)
            for latency_ms, error, output, features in conn.execute(query):
                taken.latencies_ms.append(float(latency_ms))
                if error is not None:
                    taken.errors += 1
                    continue
                _add_first(taken, output, features)
    return out


def sample_json(taken: dict[str, PageSample]) -> str:
    """``taken`` as kept for a finished rollout: feature rows cut and stored by column, floats
    to 7 significant digits, packed (:mod:`rollout.store.packed`; :func:`sample_from_json`
    reads it back)."""
    body = {}
    for arm, got in taken.items():
        body[arm] = {
            "latencies_ms": [round(v, 3) for v in got.latencies_ms],
            "errors": got.errors,
            "outputs": [short(v) for v in got.outputs],
            **by_column(got.features[:KEPT_FEATURE_ROWS], KEPT_COLUMNS),
        }
    return pack(body)


def sample_from_json(text: str) -> dict[str, PageSample]:
    """The kept sample back (ValueError when it is not one)."""
    body = unpack(text)
    out: dict[str, PageSample] = {}
    for arm in ARMS:
        got = body.get(arm) or {}
        out[arm] = PageSample(
            arm,
            [float(v) for v in got.get("latencies_ms", [])],
            int(got.get("errors", 0)),
            [float(v) for v in got.get("outputs", [])],
            from_columns(got),
        )
    return out


def kept_sample(engine: Engine, rollout_id: str) -> tuple[float, dict[str, PageSample]] | None:
    """(when it was taken, the sample) kept for a finished rollout, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            select(rollout_samples.c.taken_at, rollout_samples.c.body).where(
                rollout_samples.c.rollout_id == rollout_id
            )
        ).first()
    if row is None or not row.body:  # none, or dropped (:func:`drop_old_samples`)
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


def drop_old_samples(
    engine: Engine, keep: int = KEPT_ROLLOUTS, limit: int = DROPPED_PER_PASS
) -> int:
    """Empty the body of up to ``limit`` samples beyond the newest ``keep`` (by when they were
    taken); how many. The row stays, so :func:`keep_finished_samples` does not take it again,
    and :func:`kept_sample` reads it as none."""
    with engine.begin() as conn:
        beyond = list(
            conn.execute(
                select(rollout_samples.c.rollout_id)
                .where(rollout_samples.c.body != "")
                .order_by(rollout_samples.c.taken_at.desc(), rollout_samples.c.rollout_id.desc())
                .offset(keep)
                .limit(limit)
            ).scalars()
        )
        if beyond:
            conn.execute(
                update(rollout_samples)
                .where(rollout_samples.c.rollout_id.in_(beyond))
                .values(body="")
            )
    return len(beyond)


def _add_first(taken: PageSample, output: str | None, features: str | None) -> None:
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


def last_evidence(events: Sequence[EventRecord]) -> Mapping[str, Any] | None:
    """The newest event's evidence that has gates (what the last verdict was made of)."""
    for event in reversed(events):
        if event.evidence and event.evidence.get("gates"):
            return event.evidence
    return None


def window_start(rollout: RolloutRecord, evidence: Mapping[str, Any] | None) -> float:
    """Where the judged window began: a finished rollout's last verdict's window (``evidence``,
    :func:`last_evidence`), else the current step's."""
    if not rollout.active and evidence is not None and evidence.get("window_start"):
        return float(evidence["window_start"])
    return float(rollout.step_started_at or rollout.created_at)
