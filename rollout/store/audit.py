"""The audit log: append-only, chained with a key the database never holds (README, "Security").

Every mutating API or CLI call, allowed or denied, and every rollout transition the manager
makes, is one :class:`AuditEntry`. Each row's ``hash`` is
``HMAC-SHA256(key, prev_hash + canonical JSON of the row)`` (:func:`keyed_hash`; the row
without its two hashes, keys sorted, no spaces) and ``prev_hash`` is the hash of the row before
it (:data:`GENESIS` for the first). The key comes from outside the store
(:mod:`rollout.audit_key`), so someone who can write the database but not read the key cannot
recompute a hash: an edited, inserted, removed or renumbered row breaks the chain at that row or
the next, and :meth:`AuditLog.verify` names the first broken one.

What the chain alone cannot show is that its newest rows were removed (or all of them, or the
whole chain rebuilt from an older key-holder's copy). For that the head (``count`` = the last
id, and its ``hash``) is exported outside the store (:meth:`AuditLog.export_head`: the manager
loop appends it to ``ROLLOUT_AUDIT_HEAD_FILE``), and :meth:`AuditLog.verify` with a
:class:`Head` refuses a chain shorter than the head, a chain whose row ``count`` does not carry
the head's hash, and an empty chain when the head says there were rows.

Rows written before the chain was keyed (``alg = 'sha256'``, ``hash = sha256(prev_hash +
canonical JSON)``) are not lost: the first keyed append verifies them once and appends a
checkpoint row (verb :data:`SEAL_VERB`, detail ``sealed_rows`` and ``sealed_head``) whose
``prev_hash`` is their head; the keyed chain continues from it. :meth:`AuditLog.verify` checks
both segments, and refuses an unkeyed row after the checkpoint, keyed rows after unsealed
unkeyed ones, and unkeyed rows that were never sealed. :meth:`AuditLog.seal` seals without an
entry of its own (the API does at start, the manager loop before each head export).

Appends keep one chain across threads and processes: the append transaction first takes a
write lock (``BEGIN IMMEDIATE`` on SQLite, ``pg_advisory_xact_lock`` on PostgreSQL), then reads
the last row and inserts ``id = last id + 1`` with ``prev_hash = last hash``. The primary key
and a unique constraint on ``prev_hash`` back that up: an appender that lost a race gets an
integrity error and retries on the new last row. :meth:`AuditLog.append_in` appends inside a
caller's transaction (the manager's transitions: the event and its row commit together).

A row's detail is at most :data:`MAX_DETAIL_CHARS` of canonical JSON: a bigger one is stored as
its size, sha256 and a short excerpt, so no caller can make the log store what it sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from contract.clock import SYSTEM_CLOCK, Clock
from contract.sql.schema import audit_log
from rollout.store.records import json_safe

Outcome = Literal["allowed", "denied", "failed"]
GENESIS = "0" * 64
KEYED = "hmac-sha256"
UNKEYED = "sha256"  # rows written before the chain was keyed (migration 0011)
SEAL_VERB = "audit.seal"
MAX_DETAIL_CHARS = 4096
EXCERPT_CHARS = 256
HEAD_TAIL_BYTES = 65_536  # the most of a head file read to find its last line
_LEGACY_FIELDS = (
    "id", "ts", "identity", "verb", "model", "environment", "outcome", "status_code", "detail",
)  # fmt: skip
_PG_LOCK_KEY = 7_405_100_502  # pg_advisory_xact_lock key for audit appends
_ATTEMPTS = 50
_T = TypeVar("_T")


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
    address: str | None = None
    user_agent: str | None = None
    count: int = 1
    alg: str = KEYED

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["detail"] = json.loads(self.detail)
        return out

    def body(self) -> dict[str, Any]:
        """What the hash covers: every field but the two hashes (the old fields when unkeyed)."""
        if self.alg == UNKEYED:
            return {name: getattr(self, name) for name in _LEGACY_FIELDS}
        return {k: v for k, v in self.__dict__.items() if k not in ("prev_hash", "hash")}


@dataclass(frozen=True)
class Head:
    """The chain's end as exported: ``count`` rows (the last id) ending in ``hash``."""

    count: int
    hash: str
    ts: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def parse(cls, given: str) -> Head:
        """``HASH:COUNT``, or a head file (JSON lines; its last line counts)."""
        hash_part, _, count_part = given.rpartition(":")
        if len(hash_part) == 64 and count_part.isdigit():
            if not all(c in "0123456789abcdef" for c in hash_part):
                raise ValueError(f"head: expected 64 lowercase hex digits, got {hash_part!r}")
            return cls(int(count_part), hash_part)
        return cls.read(Path(given))

    @classmethod
    def read(cls, path: Path) -> Head:
        """The last head in ``path`` (reads at most its last :data:`HEAD_TAIL_BYTES`)."""
        try:
            with path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - HEAD_TAIL_BYTES))
                tail = handle.read(HEAD_TAIL_BYTES).decode("utf-8", errors="replace")
        except OSError as exc:
            raise ValueError(f"head: cannot read {path}: {exc.strerror or exc}") from exc
        lines = [line for line in tail.splitlines() if line.strip()]
        if not lines:
            raise ValueError(f"head: {path} holds no exported head")
        try:
            data = json.loads(lines[-1])
            count, digest = int(data["count"]), str(data["hash"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f'head: the last line of {path} is not {{"count": N, "hash": HEX, ...}}'
            ) from exc
        if count < 0 or len(digest) != 64:
            raise ValueError(f"head: the last line of {path} has a bad count or hash")
        ts = data.get("ts")
        return cls(count, digest, float(ts) if isinstance(ts, int | float) else None)


@dataclass(frozen=True)
class Verification:
    ok: bool
    rows: int  # rows checked (up to and including the first broken one)
    head_hash: str  # hash of the last row that verified (GENESIS when none)
    broken_id: int | None = None
    reason: str | None = None
    sealed_rows: int = 0  # unkeyed rows before the keyed checkpoint
    head: Head | None = None  # the exported head it was checked against

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["head"] = None if self.head is None else self.head.to_dict()
        return out


def canonical(value: object) -> str:
    return json.dumps(
        json_safe(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str
    )


def row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    """The unkeyed hash (rows before 0011): sha256 hex of ``prev_hash`` + canonical JSON."""
    body = {k: v for k, v in row.items() if k not in ("prev_hash", "hash")}
    return hashlib.sha256((prev_hash + canonical(body)).encode()).hexdigest()


def keyed_hash(key: bytes, prev_hash: str, row: Mapping[str, Any]) -> str:
    """HMAC-SHA256 hex, under ``key``, of ``prev_hash`` + the canonical JSON of ``row``."""
    body = {k: v for k, v in row.items() if k not in ("prev_hash", "hash")}
    return hmac.new(key, (prev_hash + canonical(body)).encode(), hashlib.sha256).hexdigest()


def bounded_detail(detail: Mapping[str, Any] | None) -> str:
    """``detail`` as canonical JSON, or (over :data:`MAX_DETAIL_CHARS`) its size, sha256 and
    the first :data:`EXCERPT_CHARS` characters."""
    full = canonical(detail or {})
    if len(full) <= MAX_DETAIL_CHARS:
        return full
    return canonical(
        {
            "truncated": True,
            "chars": len(full),
            "sha256": hashlib.sha256(full.encode()).hexdigest(),
            "excerpt": full[:EXCERPT_CHARS],
        }
    )


class AuditLog:
    def __init__(self, engine: Engine, key: bytes | None, clock: Clock = SYSTEM_CLOCK) -> None:
        """``key`` None: read only (list and head; append and verify need the key)."""
        if key is not None and len(key) < 16:
            raise ValueError("the audit key must be at least 16 bytes")
        self.clock = clock
        self.engine = engine
        self._key_or_none = key

    @property
    def _key(self) -> bytes:
        if self._key_or_none is None:
            raise ValueError("the audit log was opened without its key: it can only be read")
        return self._key_or_none

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
        *,
        address: str | None = None,
        user_agent: str | None = None,
        count: int = 1,
    ) -> AuditEntry:
        """Append one row at the end of the chain (serialised with every other appender)."""
        row = self._row(
            identity, verb, model, environment, outcome, status_code, detail, ts,
            address, user_agent, count,
        )  # fmt: skip
        return self._locked(lambda conn: self._insert(conn, row))

    def seal(self) -> AuditEntry | None:
        """Seal the unkeyed rows from before 0011 now (the API and the manager loop do at
        start); the checkpoint row, or None when there is nothing to seal."""

        def seal_in(conn: Connection) -> AuditEntry | None:
            last = conn.execute(
                select(audit_log.c.id, audit_log.c.hash, audit_log.c.alg)
                .order_by(audit_log.c.id.desc())
                .limit(1)
            ).first()
            if last is None or last[2] != UNKEYED:
                return None
            return self._insert_entry(
                conn, self._seal(conn, int(last[0]), str(last[1]), self.clock.time())
            )

        return self._locked(seal_in)

    def _locked(self, write: Callable[[Connection], _T]) -> _T:
        """``write`` in a transaction holding the chain's lock, retried when it lost a race."""
        for attempt in range(_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    _lock(conn)
                    return write(conn)
            except (IntegrityError, OperationalError) as exc:
                if isinstance(exc, OperationalError) and "locked" not in str(exc):
                    raise
                time.sleep(random.uniform(0, 0.005 * (attempt + 1)))  # lost a race: retry
        raise RuntimeError(f"could not append to the audit log after {_ATTEMPTS} attempts")

    def append_in(
        self,
        conn: Connection,
        identity: str,
        verb: str,
        model: str | None,
        environment: str | None,
        detail: Mapping[str, Any] | None = None,
        ts: float | None = None,
    ) -> AuditEntry:
        """Append an ``allowed`` row inside the caller's write transaction (which already wrote
        on SQLite, so it holds the write lock; on PostgreSQL the advisory lock is taken here)."""
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        row = self._row(identity, verb, model, environment, "allowed", 0, detail, ts, None, None, 1)
        return self._insert(conn, row)

    def _row(
        self,
        identity: str,
        verb: str,
        model: str | None,
        environment: str | None,
        outcome: Outcome,
        status_code: int,
        detail: Mapping[str, Any] | None,
        ts: float | None,
        address: str | None,
        user_agent: str | None,
        count: int,
    ) -> dict[str, Any]:
        return {
            "ts": self.clock.time() if ts is None else float(ts),
            "identity": identity[:255],
            "verb": verb[:64],
            "model": None if model is None else model[:255],
            "environment": None if environment is None else environment[:64],
            "outcome": outcome,
            "status_code": int(status_code),
            "detail": bounded_detail(detail),
            "address": None if address is None else address[:64],
            "user_agent": None if user_agent is None else user_agent[:255],
            "count": max(1, int(count)),
            "alg": KEYED,
        }

    def _insert(self, conn: Connection, row: Mapping[str, Any]) -> AuditEntry:
        last = conn.execute(
            select(audit_log.c.id, audit_log.c.hash, audit_log.c.alg)
            .order_by(audit_log.c.id.desc())
            .limit(1)
        ).first()
        last_id, last_hash = (int(last[0]), str(last[1])) if last else (0, GENESIS)
        if last is not None and last[2] == UNKEYED:  # rows from before the key: seal them
            seal = self._insert_entry(conn, self._seal(conn, last_id, last_hash, row["ts"]))
            last_id, last_hash = seal.id, seal.hash
        return self._insert_entry(conn, {"id": last_id + 1, **row}, last_hash)

    def _insert_entry(
        self, conn: Connection, full: Mapping[str, Any], prev_hash: str | None = None
    ) -> AuditEntry:
        if prev_hash is None:
            prev_hash = str(full["prev_hash"])
        body = {k: v for k, v in full.items() if k not in ("prev_hash", "hash")}
        entry = AuditEntry(**body, prev_hash=prev_hash, hash=keyed_hash(self._key, prev_hash, body))
        conn.execute(audit_log.insert().values(**entry.__dict__))
        return entry

    def _seal(self, conn: Connection, last_id: int, last_hash: str, ts: float) -> dict[str, Any]:
        """The keyed checkpoint over the unkeyed rows 1..``last_id`` (verified once, here)."""
        legacy = _walk(conn, None, None)
        detail: dict[str, Any] = {"sealed_rows": last_id, "sealed_head": last_hash}
        if not legacy.ok:  # sealed as found: verify keeps reporting the broken row
            detail["unkeyed_chain_broken_at"] = legacy.broken_id
        return {
            **self._row("manager", SEAL_VERB, None, None, "allowed", 0, detail, ts, None, None, 1),
            "id": last_id + 1,
            "prev_hash": last_hash,
        }

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

    def head(self) -> Head:
        """The chain's end now: the last id and its hash (0 and :data:`GENESIS` when empty)."""
        with self.engine.connect() as conn:
            last = conn.execute(
                select(audit_log.c.id, audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)
            ).first()
        now = self.clock.time()
        return Head(int(last[0]), str(last[1]), now) if last else Head(0, GENESIS, now)

    def export_head(self, path: Path) -> Head:
        """Append the head to ``path`` as one JSON line (``time``, ``ts``, ``count``, ``hash``),
        after sealing unkeyed rows (a head is only ever exported over a keyed chain)."""
        self.seal()
        head = self.head()
        line = canonical(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(head.ts or 0)),
                "ts": head.ts,
                "count": head.count,
                "hash": head.hash,
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        return head

    def verify(self, head: Head | None = None) -> Verification:
        """Walk the chain from row 1 with the key: the first broken row, if any; with ``head``
        (the last exported one) also a chain shorter than it, or rebuilt under it."""
        with self.engine.connect() as conn:
            return _walk(conn, self._key, head)


def _walk(
    conn: Connection, key: bytes | None, head: Head | None, batch: int = 1000
) -> Verification:
    """Verify the chain (``key`` None: only its unkeyed rows, as the seal does)."""
    prev_hash, expected_id, rows, sealed = GENESIS, 1, 0, 0
    keyed_from: int | None = None
    head_row_hash: str | None = None

    def broken(entry_id: int | None, reason: str) -> Verification:
        return Verification(False, rows, prev_hash, entry_id, reason, sealed, head)

    first_page = True
    while True:
        query = select(audit_log).order_by(audit_log.c.id).limit(batch)
        if not first_page:  # the first page starts at the lowest id (an inserted id 0 shows)
            query = query.where(audit_log.c.id >= expected_id)
        first_page = False
        page = conn.execute(query).all()
        for found in page:
            entry = AuditEntry(**found._mapping)
            rows += 1
            if entry.id != expected_id:
                if entry.id < expected_id:
                    return broken(
                        entry.id, f"row {entry.id}: ids start at 1 (a row was inserted before it)"
                    )
                return broken(
                    entry.id,
                    f"row {entry.id} follows row {expected_id - 1}: "
                    f"rows {expected_id}.. are missing",
                )
            if entry.prev_hash != prev_hash:
                if entry.id == 1:
                    return broken(1, "row 1: prev_hash is not the genesis hash (a re-based chain)")
                return broken(
                    entry.id,
                    f"row {entry.id}: prev_hash is not the hash of row {entry.id - 1} "
                    "(a row before it was changed or removed)",
                )
            if entry.alg == UNKEYED:
                if keyed_from is not None:
                    return broken(
                        entry.id,
                        f"row {entry.id}: unkeyed (sha256) after the chain was keyed at row "
                        f"{keyed_from}",
                    )
                if row_hash(entry.prev_hash, entry.body()) != entry.hash:
                    return broken(
                        entry.id,
                        f"row {entry.id}: its hash does not match its content "
                        "(the row was changed)",
                    )
                sealed += 1
            elif entry.alg == KEYED:
                if key is None:  # the seal's check of the unkeyed rows stops here
                    return Verification(True, rows - 1, prev_hash, None, None, sealed)
                if keyed_from is None:
                    keyed_from = entry.id
                    if sealed and not _seals(entry, sealed):
                        return broken(
                            entry.id,
                            f"row {entry.id}: the unkeyed rows 1..{sealed} before it are not "
                            "sealed by a keyed checkpoint",
                        )
                if keyed_hash(key, entry.prev_hash, entry.body()) != entry.hash:
                    return broken(
                        entry.id,
                        f"row {entry.id}: its HMAC does not match its content (the row was "
                        "changed, or written without the audit key)",
                    )
            else:
                return broken(entry.id, f"row {entry.id}: unknown hash algorithm {entry.alg!r}")
            prev_hash, expected_id = entry.hash, entry.id + 1
            if head is not None and entry.id == head.count:
                head_row_hash = entry.hash
        if len(page) < batch:
            break
    if key is not None and sealed and keyed_from is None:
        return broken(
            None,
            f"rows 1..{sealed} are unkeyed and not sealed (anyone who can write the store could "
            "have rewritten them): start the API or manager with the audit key to seal them",
        )
    if head is not None and head.count > 0:
        if rows == 0:
            return broken(None, f"the chain is empty but the exported head had {head.count} rows")
        if rows < head.count:
            return broken(
                None,
                f"the chain ends at row {rows} but the exported head had {head.count} rows: "
                f"rows {rows + 1}..{head.count} were removed",
            )
        if head_row_hash != head.hash:
            return broken(
                head.count,
                f"row {head.count}: its hash is not the exported head's (the chain was rebuilt)",
            )
    return Verification(True, rows, prev_hash, None, None, sealed, head)


def _seals(entry: AuditEntry, sealed: int) -> bool:
    """Whether ``entry`` is the keyed checkpoint over the ``sealed`` unkeyed rows before it."""
    if entry.verb != SEAL_VERB:
        return False
    detail = json.loads(entry.detail)
    return bool(
        detail.get("sealed_rows") == sealed and detail.get("sealed_head") == entry.prev_hash
    )


def _lock(conn: Connection) -> None:
    """Take the store's write lock for this transaction before reading the chain's end."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
