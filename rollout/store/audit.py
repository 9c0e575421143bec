"""The audit log: append-only and hash-chained (README, "Security").

Every mutating API call, allowed or denied, is one :class:`AuditEntry`. Each row's ``hash`` is
``sha256(prev_hash + canonical JSON of the row)`` (:func:`row_hash`; the row without its two
hashes, keys sorted, no spaces), and ``prev_hash`` is the hash of the row before it
(:data:`GENESIS` for the first). Changing, removing or reordering a row breaks the chain at that
row or the next; :meth:`AuditLog.verify` walks it and names the first broken link. (Removing
the newest rows leaves a valid, shorter chain: compare :attr:`Verification.head_hash` with a copy
kept elsewhere to notice that.)

Appends keep one chain across threads and processes: the append transaction first takes a
write lock (``BEGIN IMMEDIATE`` on SQLite, ``pg_advisory_xact_lock`` on PostgreSQL), then reads
the last row and inserts ``id = last id + 1`` with ``prev_hash = last hash``. The primary key
and a unique constraint on ``prev_hash`` back that up: an appender that lost a race gets an
integrity error and retries on the new last row.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from contract.clock import SYSTEM_CLOCK, Clock
from contract.sql.schema import audit_log
from rollout.store.records import json_safe

Outcome = Literal["allowed", "denied", "failed"]
GENESIS = "0" * 64
_PG_LOCK_KEY = 7_405_100_502  # pg_advisory_xact_lock key for audit appends
_ATTEMPTS = 50


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: float
    identity: str
    verb: str
    model: str | None
    environment: str | None
    outcome: str
    status_code: int
    detail: str  # canonical JSON
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["detail"] = json.loads(self.detail)
        return out


@dataclass(frozen=True)
class Verification:
    ok: bool
    rows: int  # rows checked (up to and including the first broken one)
    head_hash: str  # hash of the last row that verified (GENESIS when none)
    broken_id: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def canonical(value: object) -> str:
    return json.dumps(
        json_safe(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str
    )


def row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    """sha256 hex of ``prev_hash`` + the canonical JSON of ``row`` without its hashes."""
    body = {k: v for k, v in row.items() if k not in ("prev_hash", "hash")}
    return hashlib.sha256((prev_hash + canonical(body)).encode()).hexdigest()


class AuditLog:
    def __init__(self, engine: Engine, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.engine = engine

    def append(
        self,
        identity: str,
        verb: str,
        model: str | None,
        environment: str | None,
        outcome: Outcome,
        status_code: int,
        detail: Mapping[str, Any] | None = None,
        ts: float | None = None,
    ) -> AuditEntry:
        """Append one row at the end of the chain (serialised with every other appender)."""
        row: dict[str, Any] = {
            "ts": self.clock.time() if ts is None else float(ts),
            "identity": identity[:255],
            "verb": verb[:64],
            "model": None if model is None else model[:255],
            "environment": None if environment is None else environment[:64],
            "outcome": outcome,
            "status_code": int(status_code),
            "detail": canonical(detail or {}),
        }
        for attempt in range(_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    _lock(conn)
                    last = conn.execute(
                        select(audit_log.c.id, audit_log.c.hash)
                        .order_by(audit_log.c.id.desc())
                        .limit(1)
                    ).first()
                    full = {"id": (last[0] + 1) if last else 1, **row}
                    prev_hash = str(last[1]) if last else GENESIS
                    entry = AuditEntry(**full, prev_hash=prev_hash, hash=row_hash(prev_hash, full))
                    conn.execute(audit_log.insert().values(**entry.__dict__))
                    return entry
            except (IntegrityError, OperationalError) as exc:
                if isinstance(exc, OperationalError) and "locked" not in str(exc):
                    raise
                time.sleep(random.uniform(0, 0.005 * (attempt + 1)))  # lost a race: retry
        raise RuntimeError(f"could not append to the audit log after {_ATTEMPTS} attempts")

    def list(
        self,
        *,
        model: str | None = None,
        environment: str | None = None,
        identity: str | None = None,
        environments: Collection[str] | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first; ``environments`` (when given) limits rows to those environments."""
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(max(1, limit))
        if model is not None:
            query = query.where(audit_log.c.model == model)
        if environment is not None:
            query = query.where(audit_log.c.environment == environment)
        if identity is not None:
            query = query.where(audit_log.c.identity == identity)
        if environments is not None:
            query = query.where(audit_log.c.environment.in_(sorted(environments)))
        with self.engine.connect() as conn:
            return [AuditEntry(**row._mapping) for row in conn.execute(query)]

    def verify(self, batch: int = 1000) -> Verification:
        """Walk the chain from the first row; the first row whose link is broken, if any."""
        prev_hash, expected_id, rows = GENESIS, 1, 0
        with self.engine.connect() as conn:
            while True:
                page = conn.execute(
                    select(audit_log)
                    .where(audit_log.c.id >= expected_id)
                    .order_by(audit_log.c.id)
                    .limit(batch)
                ).all()
                for found in page:
                    entry = AuditEntry(**found._mapping)
                    rows += 1
                    reason = _broken(entry, expected_id, prev_hash)
                    if reason is not None:
                        return Verification(False, rows, prev_hash, entry.id, reason)
                    prev_hash, expected_id = entry.hash, entry.id + 1
                if len(page) < batch:
                    return Verification(True, rows, prev_hash)


def _broken(entry: AuditEntry, expected_id: int, prev_hash: str) -> str | None:
    if entry.id != expected_id:
        return f"row {entry.id} follows row {expected_id - 1}: rows {expected_id}.. are missing"
    if entry.prev_hash != prev_hash:
        where = f"row {entry.id - 1}" if entry.id > 1 else "the start of the chain"
        return (
            f"row {entry.id}: prev_hash is not the hash of {where} "
            "(a row before it was changed or removed)"
        )
    body = {k: v for k, v in entry.__dict__.items() if k not in ("prev_hash", "hash")}
    if row_hash(entry.prev_hash, body) != entry.hash:
        return f"row {entry.id}: its hash does not match its content (the row was changed)"
    return None


def _lock(conn: Connection) -> None:
    """Take the store's write lock for this transaction before reading the chain's end."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
