"""Rollouts, their events and release records: the manager's tables (SQLAlchemy Core).

- A :class:`RolloutRecord` is one row of ``rollouts``. Writes are optimistic: :meth:`update`
  is ``UPDATE ... WHERE id = :id AND row_version = :seen`` and raises
  :class:`~rollout.errors.ConflictError` when someone else wrote first. At most one rollout per
  (environment, model) is active (a partial unique index), so a second start conflicts.
- An :class:`EventRecord` is one transition with its reason and evidence (JSON).
- A :class:`Release` ties a version that served (or was tried) in an environment to its
  lineage (digest, run id, git commit, config hash), people, times and outcome. ``kind`` says
  what happened: ``initial`` (the first version there), ``promotion`` (a rollout's candidate
  became the baseline, outcome ``succeeded``, or its rollout was ``aborted``), ``rollback``
  (a rollout's candidate was taken out, outcome ``rolled_back``, ``version`` the candidate; or
  ``rollout rollback`` returned to an earlier release, outcome ``succeeded``, ``version`` the one
  serving again). The release serving a version is the newest that *succeeded* with it
  (:meth:`RecordStore.serving_release_id`); traffic plans name it for their baseline.

Every write takes the caller's ``Connection`` so the manager saves a transition, its event, the
traffic plan and a release in one transaction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, func, select
from sqlalchemy.exc import IntegrityError

from contract.sql.schema import releases, rollout_events, rollouts
from rollout.errors import ConflictError
from rollout.lifecycle import ACTIVE_STATES


@dataclass(frozen=True)
class RolloutRecord:
    id: str
    model: str
    environment: str
    strategy: str
    baseline_version: str | None
    candidate_version: str
    spec: str  # canonical JSON of the RolloutSpec
    config_hash: str
    state: str
    step_index: int
    step_started_at: float | None
    created_at: float
    updated_at: float
    started_by: str
    approved_by: str | None = None
    reason: str | None = None
    row_version: int = 0

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["spec"] = json.loads(self.spec)
        return out


@dataclass(frozen=True)
class EventRecord:
    rollout_id: str
    ts: float
    from_state: str | None
    to_state: str
    step_index: int | None
    actor: str
    reason: str
    evidence: Mapping[str, Any] | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Release:
    model: str
    environment: str
    version: str
    previous_version: str | None
    kind: str  # initial | promotion | rollback
    artifact_digest: str | None
    run_id: str | None
    git_commit: str | None
    config_hash: str | None
    rollout_id: str | None
    started_by: str
    approved_by: str | None
    started_at: float
    finished_at: float | None
    outcome: str  # succeeded | rolled_back | aborted
    evidence: Mapping[str, Any] | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def dumps(value: object) -> str:
    """JSON with NaN/inf turned into null (evidence must stay readable by any client)."""
    return json.dumps(json_safe(value), allow_nan=False, sort_keys=True)


def json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


class RecordStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- rollouts --
    def create(self, conn: Connection, record: RolloutRecord) -> RolloutRecord:
        """Insert a rollout; ConflictError if another one is active for the model/env."""
        try:
            conn.execute(rollouts.insert().values(**record.__dict__))
        except IntegrityError as exc:
            raise ConflictError(
                f"{record.model} already has an active rollout in {record.environment}"
            ) from exc
        return record

    def get(self, rollout_id: str, conn: Connection | None = None) -> RolloutRecord | None:
        if conn is None:
            with self.engine.connect() as own:
                return self.get(rollout_id, own)
        row = conn.execute(select(rollouts).where(rollouts.c.id == rollout_id)).first()
        return RolloutRecord(**row._mapping) if row is not None else None

    def active(self, model: str, environment: str) -> RolloutRecord | None:
        query = select(rollouts).where(
            rollouts.c.model == model,
            rollouts.c.environment == environment,
            rollouts.c.state.in_(ACTIVE_STATES),
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return RolloutRecord(**row._mapping) if row is not None else None

    def latest(self, model: str, environment: str) -> RolloutRecord | None:
        query = (
            select(rollouts)
            .where(rollouts.c.model == model, rollouts.c.environment == environment)
            .order_by(rollouts.c.created_at.desc(), rollouts.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return RolloutRecord(**row._mapping) if row is not None else None

    def list_active(self) -> list[RolloutRecord]:
        query = (
            select(rollouts)
            .where(rollouts.c.state.in_(ACTIVE_STATES))
            .order_by(rollouts.c.created_at)
        )
        with self.engine.connect() as conn:
            return [RolloutRecord(**row._mapping) for row in conn.execute(query)]

    def update(self, conn: Connection, record: RolloutRecord, **changes: Any) -> RolloutRecord:
        """Write ``changes`` if nobody wrote since ``record`` was read; returns the new record."""
        new = replace(record, **changes, row_version=record.row_version + 1)
        values = {k: v for k, v in new.__dict__.items() if k not in ("id",)}
        result = conn.execute(
            rollouts.update()
            .where(rollouts.c.id == record.id, rollouts.c.row_version == record.row_version)
            .values(**values)
        )
        if result.rowcount != 1:
            current = self.get(record.id, conn)
            seen = current.row_version if current is not None else "none"
            raise ConflictError(
                f"rollout {record.id} was changed by someone else (read row_version "
                f"{record.row_version}, now {seen}); reload and retry"
            )
        return new

    # -- events --
    def add_event(self, conn: Connection, event: EventRecord) -> None:
        values = {k: v for k, v in event.__dict__.items() if k != "id"}
        values["evidence"] = dumps(event.evidence) if event.evidence is not None else None
        conn.execute(rollout_events.insert().values(**values))

    def events(self, rollout_id: str) -> list[EventRecord]:
        query = (
            select(rollout_events)
            .where(rollout_events.c.rollout_id == rollout_id)
            .order_by(rollout_events.c.id)
        )
        with self.engine.connect() as conn:
            return [_event(row._mapping) for row in conn.execute(query)]

    # -- releases --
    def add_release(self, conn: Connection, release: Release) -> Release:
        values = {k: v for k, v in release.__dict__.items() if k != "id"}
        values["evidence"] = dumps(release.evidence) if release.evidence is not None else None
        result = conn.execute(releases.insert().values(**values))
        key = result.inserted_primary_key
        return replace(release, id=int(key[0]) if key is not None else None)

    def serving_release_id(
        self, conn: Connection, model: str, environment: str, version: str
    ) -> int | None:
        """The release that made ``version`` current in ``environment``: the newest one that
        succeeded with that version (read in ``conn``, so it sees a release just added there)."""
        query = select(func.max(releases.c.id)).where(
            releases.c.model == model,
            releases.c.environment == environment,
            releases.c.version == version,
            releases.c.outcome == "succeeded",
        )
        found = conn.execute(query).scalar()
        return int(found) if found is not None else None

    def release(self, release_id: int) -> Release | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(releases).where(releases.c.id == release_id)).first()
        return _release(row._mapping) if row is not None else None

    def releases(self, model: str, environment: str) -> list[Release]:
        """Every release of ``model`` in ``environment``, newest first."""
        query = (
            select(releases)
            .where(releases.c.model == model, releases.c.environment == environment)
            .order_by(releases.c.id.desc())
        )
        with self.engine.connect() as conn:
            return [_release(row._mapping) for row in conn.execute(query)]


def _event(row: RowMapping) -> EventRecord:
    values = dict(row)
    values["evidence"] = json.loads(values["evidence"]) if values["evidence"] else None
    return EventRecord(**values)


def _release(row: RowMapping) -> Release:
    values = dict(row)
    values["evidence"] = json.loads(values["evidence"]) if values["evidence"] else None
    return Release(**values)
