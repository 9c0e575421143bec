"""The audit log on real SQLite and PostgreSQL stores: one hash chain, tampering found at the
right row, concurrent appenders (threads and processes) never fork the chain."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from sqlalchemy import select, update

from contract.sql.engine import open_engine
from contract.sql.schema import audit_log
from rollout.cli import main
from rollout.store.audit import GENESIS, AuditLog, row_hash


def _fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(f"user{i % 2}", "pause", "bc", "prod", "allowed", 200, {"i": i}, ts=100.0 + i)


def test_rows_chain_and_verify(store_url: str) -> None:
    engine = open_engine(store_url)
    log = AuditLog(engine)
    assert log.verify().to_dict() == {
        "ok": True, "rows": 0, "head_hash": GENESIS, "broken_id": None, "reason": None,
    }  # fmt: skip
    first = log.append("alice", "start", "bc", "dev", "allowed", 201, {"candidate": "1"}, ts=1.5)
    second = log.append("bob", "promote", "bc", "prod", "denied", 403, {"needs": ["deployer"]})
    assert (first.id, first.prev_hash) == (1, GENESIS)
    assert (second.id, second.prev_hash) == (2, first.hash)
    assert first.hash == row_hash(
        GENESIS,
        {
            "id": 1, "ts": 1.5, "identity": "alice", "verb": "start", "model": "bc",
            "environment": "dev", "outcome": "allowed", "status_code": 201,
            "detail": '{"candidate":"1"}',
        },
    )  # fmt: skip
    assert [row.id for row in log.list()] == [2, 1]
    assert [row.id for row in log.list(environment="dev")] == [1]
    assert [row.id for row in log.list(identity="bob", model="bc")] == [2]
    assert [row.id for row in log.list(environments={"prod", "staging"})] == [2]
    assert log.list(limit=1)[0].to_dict()["detail"] == {"needs": ["deployer"]}
    result = log.verify()
    assert (result.ok, result.rows, result.head_hash) == (True, 2, second.hash)
    engine.dispose()


def test_a_changed_row_is_found_at_its_id(store_url: str) -> None:
    engine = open_engine(store_url)
    log = AuditLog(engine)
    _fill(log, 6)
    with engine.begin() as conn:  # someone with database access edits row 3
        conn.execute(update(audit_log).where(audit_log.c.id == 3).values(identity="mallory"))
    result = log.verify()
    assert (result.ok, result.broken_id, result.rows) == (False, 3, 3)
    assert result.reason == "row 3: its hash does not match its content (the row was changed)"

    with engine.begin() as conn:  # ... and recomputes its hash: row 4 no longer links to it
        row = conn.execute(select(audit_log).where(audit_log.c.id == 3)).one()._mapping
        body = {k: v for k, v in row.items() if k not in ("prev_hash", "hash")}
        conn.execute(
            update(audit_log)
            .where(audit_log.c.id == 3)
            .values(hash=row_hash(row["prev_hash"], body))
        )
    result = log.verify()
    assert (result.ok, result.broken_id) == (False, 4)
    assert result.reason is not None and "prev_hash is not the hash of row 3" in result.reason
    engine.dispose()


def test_a_removed_row_is_found(store_url: str) -> None:
    engine = open_engine(store_url)
    log = AuditLog(engine)
    _fill(log, 5)
    with engine.begin() as conn:
        conn.execute(audit_log.delete().where(audit_log.c.id == 2))
    result = log.verify()
    assert (result.ok, result.broken_id) == (False, 3)
    assert result.reason == "row 3 follows row 1: rows 2.. are missing"
    engine.dispose()


def test_concurrent_threads_and_processes_keep_one_chain(store_url: str) -> None:
    engine = open_engine(store_url)
    log = AuditLog(engine)
    errors: list[BaseException] = []

    def appender(name: str) -> None:
        try:
            for i in range(15):
                log.append(name, "pause", "bc", "prod", "allowed", 200, {"i": i})
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    script = (
        "import sys\n"
        "from rollout.store.audit import AuditLog\n"
        "from contract.sql.engine import open_engine\n"
        "log = AuditLog(open_engine(sys.argv[1]))\n"
        "for i in range(15):\n"
        "    log.append(sys.argv[2], 'abort', 'bc', 'prod', 'allowed', 200, {'i': i})\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, store_url, f"proc{p}"]) for p in range(2)
    ]
    threads = [threading.Thread(target=appender, args=(f"thread{t}",)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [proc.wait(timeout=60) for proc in processes] == [0, 0]
    assert errors == []
    result = log.verify()
    assert (result.ok, result.rows) == (True, 6 * 15)
    rows = log.list(limit=1000)
    assert sorted(row.id for row in rows) == list(range(1, 91))
    assert {row.identity for row in rows} == {
        "thread0", "thread1", "thread2", "thread3", "proc0", "proc1",
    }  # fmt: skip
    engine.dispose()


def test_cli_lists_and_verifies(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    engine = open_engine(store_url)
    log = AuditLog(engine)
    log.append("alice", "start", "bc", "dev", "allowed", 201, {"candidate": "1"})
    log.append("bob", "promote", "bc", "prod", "denied", 403, {"message": "bob may not promote"})
    head = log.append("bob", "pause", "other", "prod", "failed", 404, {"error_code": "not_found"})
    base = ["--store-url", store_url, "audit"]
    assert main([*base, "--verify"]) == 0
    assert capsys.readouterr().out == f"audit log ok: 3 rows, head {head.hash}\n"
    assert main([*base, "bc", "--env", "prod", "--json"]) == 0
    assert [(r["id"], r["identity"]) for r in json.loads(capsys.readouterr().out)] == [(2, "bob")]
    assert main(base) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["3", "2", "1"]
    assert lines[3].endswith("denied   403     bob may not promote")
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.id == 2).values(outcome="allowed"))
    assert main([*base, "--verify"]) == 1
    assert capsys.readouterr().out.startswith("audit log broken at row 2: ")
    engine.dispose()
