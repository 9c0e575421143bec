"""The audit log on real SQLite and PostgreSQL stores: one keyed chain, every tamper of attack 6
(issue 11) found and named, the exported head catching truncation, the unkeyed chain from before
0011 sealed, not lost; concurrent appenders (threads and processes) never fork the chain."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text, update

from contract.sql.engine import normalize_url, open_engine
from contract.sql.migrations import upgrade
from contract.sql.schema import audit_log
from rollout.cli import main
from rollout.store.audit import (
    GENESIS,
    SEAL_VERB,
    AuditLog,
    Head,
    canonical,
    keyed_hash,
    row_hash,
)

KEY = b"k" * 32  # the key the log is written with (kept outside the store)
MALLORY = b"m" * 32  # a key-less attacker's best guess


def _fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(f"user{i % 2}", "pause", "bc", "prod", "allowed", 200, {"i": i}, ts=100.0 + i)


def _rows(engine: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(audit_log).order_by(audit_log.c.id))]


def _rewrite(engine: Any, rows: list[dict[str, Any]], key: bytes = MALLORY) -> None:
    """What someone with write access to the store (but not the key) can do: replace the whole
    table with ``rows``, each re-chained and re-hashed with the best key they have."""
    prev = rows[0]["prev_hash"] if rows else GENESIS
    with engine.begin() as conn:
        conn.execute(audit_log.delete())
        for row in rows:
            body = {k: v for k, v in row.items() if k not in ("prev_hash", "hash")}
            new = {**body, "prev_hash": prev, "hash": keyed_hash(key, prev, body)}
            conn.execute(audit_log.insert().values(**new))
            prev = new["hash"]


def test_rows_chain_with_an_hmac_and_verify(store_url: str) -> None:
    engine = open_engine(store_url)
    log = AuditLog(engine, KEY)
    assert log.verify().to_dict() == {
        "ok": True, "rows": 0, "head_hash": GENESIS, "broken_id": None, "reason": None,
        "sealed_rows": 0, "head": None,
    }  # fmt: skip
    first = log.append(
        "alice", "start", "bc", "dev", "allowed", 201, {"candidate": "1"}, ts=1.5,
        address="10.0.0.7", user_agent="curl/8.5",
    )  # fmt: skip
    second = log.append("bob", "promote", "bc", "prod", "denied", 403, {"needs": ["deployer"]})
    assert (first.id, first.prev_hash, second.id, second.prev_hash) == (1, GENESIS, 2, first.hash)
    body = {
        "id": 1, "ts": 1.5, "identity": "alice", "verb": "start", "model": "bc",
        "environment": "dev", "outcome": "allowed", "status_code": 201,
        "detail": '{"candidate":"1"}', "address": "10.0.0.7", "user_agent": "curl/8.5",
        "count": 1, "alg": "hmac-sha256",
    }  # fmt: skip
    expected = hmac.new(KEY, (GENESIS + canonical(body)).encode(), hashlib.sha256)  # spelled out
    assert first.hash == expected.hexdigest()
    assert first.hash != row_hash(GENESIS, body)  # not the unkeyed sha256 of old
    assert [row.id for row in log.list()] == [2, 1]
    assert [row.id for row in log.list(environment="dev")] == [1]
    assert [row.id for row in log.list(identity="bob", model="bc")] == [2]
    assert [row.id for row in log.list(environments={"prod", "staging"})] == [2]
    assert log.list(limit=1)[0].to_dict()["detail"] == {"needs": ["deployer"]}
    assert log.list()[1].address == "10.0.0.7"
    result = log.verify()
    assert (result.ok, result.rows, result.head_hash) == (True, 2, second.hash)
    # Another key (a verifier with the wrong one, or rows written without it) fails at row 1.
    wrong = AuditLog(engine, MALLORY).verify()
    assert (wrong.ok, wrong.broken_id) == (False, 1)
    assert wrong.reason is not None and "HMAC does not match" in wrong.reason
    engine.dispose()


def test_a_big_detail_is_stored_as_its_size_hash_and_an_excerpt(store_url: str) -> None:
    engine = open_engine(store_url)
    log = AuditLog(engine, KEY)
    spec = {"spec": "x" * 12_000_000}  # a viewer's 12 MB invalid spec, echoed back in an error
    entry = log.append("vic", "apply", None, None, "failed", 422, spec)
    stored = json.loads(entry.detail)
    assert len(entry.detail) < 1_000
    assert (stored["truncated"], stored["chars"]) == (True, len(canonical(spec)))
    assert stored["sha256"] == hashlib.sha256(canonical(spec).encode()).hexdigest()
    assert stored["excerpt"] == canonical(spec)[:256]
    assert log.verify().ok
    engine.dispose()


def test_edit_and_rehash_is_found_at_the_edited_row(store_url: str) -> None:
    engine = open_engine(store_url)
    log = AuditLog(engine, KEY)
    _fill(log, 6)
    rows = _rows(engine)
    rows[2]["identity"] = "mallory"  # row 3, then every hash recomputed (without the key)
    _rewrite(engine, rows)
    result = log.verify()
    assert (result.ok, result.broken_id, result.rows) == (False, 1, 1)  # row 1 was re-hashed too
    # re-hashing only from the edited row on: found there
    good = _fill_fresh(engine, 6)
    good[2]["identity"] = "mallory"
    _rewrite_from(engine, good, 2)
    result = log.verify()
    assert (result.ok, result.broken_id) == (False, 3)
    assert result.reason == (
        "row 3: its HMAC does not match its content (the row was changed, or written without "
        "the audit key)"
    )
    # The unkeyed sha256 rehash of old is no better: the row now claims to be unkeyed.
    good = _fill_fresh(engine, 6)
    with engine.begin() as conn:
        row = good[2]
        body = {k: v for k, v in row.items() if k not in ("prev_hash", "hash")}
        body.update(identity="mallory", alg="sha256")
        legacy = {k: body[k] for k in ("id", "ts", "identity", "verb", "model", "environment",
                                        "outcome", "status_code", "detail")}  # fmt: skip
        conn.execute(
            update(audit_log)
            .where(audit_log.c.id == 3)
            .values(identity="mallory", alg="sha256", hash=row_hash(row["prev_hash"], legacy))
        )
    result = log.verify()
    assert (result.ok, result.broken_id) == (False, 3)
    assert result.reason == "row 3: unkeyed (sha256) after the chain was keyed at row 1"
    engine.dispose()


def _fill_fresh(engine: Any, n: int) -> list[dict[str, Any]]:
    with engine.begin() as conn:
        conn.execute(audit_log.delete())
    _fill(AuditLog(engine, KEY), n)
    return _rows(engine)


def _rewrite_from(engine: Any, rows: list[dict[str, Any]], start: int) -> None:
    """Re-chain ``rows[start:]`` with the attacker's key, after the untouched ones."""
    with engine.begin() as conn:
        conn.execute(audit_log.delete().where(audit_log.c.id > start))
        prev = rows[start - 1]["hash"]
        for row in rows[start:]:
            body = {k: v for k, v in row.items() if k not in ("prev_hash", "hash")}
            new = {**body, "prev_hash": prev, "hash": keyed_hash(MALLORY, prev, body)}
            conn.execute(audit_log.insert().values(**new))
            prev = new["hash"]


def test_delete_renumber_rehash_is_found(store_url: str) -> None:
    engine = open_engine(store_url)
    log = AuditLog(engine, KEY)
    rows = _fill_fresh(engine, 6)
    del rows[2]  # row 3 goes; 4..6 become 3..5, re-chained
    for i, row in enumerate(rows, start=1):
        row["id"] = i
    _rewrite_from(engine, rows, 2)
    result = log.verify()
    assert (result.ok, result.broken_id) == (False, 3)
    assert result.reason is not None and result.reason.startswith("row 3: its HMAC does not match")
    engine.dispose()


def test_an_inserted_row_0_is_found(store_url: str) -> None:
    engine = open_engine(store_url)
    log = AuditLog(engine, KEY)
    rows = _fill_fresh(engine, 3)
    forged = {**rows[0], "id": 0, "identity": "mallory", "prev_hash": GENESIS}
    body = {k: v for k, v in forged.items() if k not in ("prev_hash", "hash")}
    with engine.begin() as conn:  # row 1 left as it is; row 0 before it
        conn.execute(
            audit_log.insert().values(**forged | {"prev_hash": "f" * 64,
                                                  "hash": keyed_hash(MALLORY, "f" * 64, body)})
        )  # fmt: skip
    result = log.verify()
    assert (result.ok, result.broken_id, result.rows) == (False, 0, 1)
    assert result.reason == "row 0: ids start at 1 (a row was inserted before it)"
    engine.dispose()


def test_a_rebased_chain_is_refused(store_url: str) -> None:
    engine = open_engine(store_url)
    log = AuditLog(engine, KEY)
    rows = _fill_fresh(engine, 3)
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.id == 1).values(prev_hash="a" * 64))
    result = log.verify()
    assert (result.ok, result.broken_id) == (False, 1)
    assert result.reason == "row 1: prev_hash is not the genesis hash (a re-based chain)"
    assert rows[0]["prev_hash"] == GENESIS
    engine.dispose()


def test_the_exported_head_finds_truncation_and_an_emptied_chain(
    store_url: str, tmp_path: Path
) -> None:
    engine = open_engine(store_url)
    log = AuditLog(engine, KEY)
    _fill(log, 60)
    head_file = tmp_path / "audit-head.jsonl"
    log.export_head(head_file)
    exported = Head.read(head_file)
    assert (exported.count, exported.hash) == (60, _rows(engine)[-1]["hash"])
    assert log.verify(exported).ok

    with engine.begin() as conn:  # the newest 50 rows go: the rest still chains
        conn.execute(audit_log.delete().where(audit_log.c.id > 10))
    assert log.verify().ok  # ... so without the head nothing can tell
    result = log.verify(exported)
    assert (result.ok, result.rows) == (False, 10)
    assert result.reason == (
        "the chain ends at row 10 but the exported head had 60 rows: rows 11..60 were removed"
    )
    with engine.begin() as conn:  # every row goes
        conn.execute(audit_log.delete())
    result = log.verify(exported)
    assert (result.ok, result.reason) == (
        False, "the chain is empty but the exported head had 60 rows",
    )  # fmt: skip
    for i in range(61):  # rebuilt past the head (by someone holding the key): not its row 60
        log.append("mallory", "pause", "bc", "prod", "allowed", 200, {"i": i}, ts=100.0 + i)
    result = log.verify(exported)
    assert (result.ok, result.broken_id) == (False, 60)
    assert result.reason == "row 60: its hash is not the exported head's (the chain was rebuilt)"
    engine.dispose()


def test_an_unkeyed_chain_from_before_0011_is_sealed_not_lost(store_url: str) -> None:
    engine = create_engine(normalize_url(store_url))
    upgrade(engine, "0008")
    prev = GENESIS
    with engine.begin() as conn:  # three rows as the old code wrote them
        for i in range(1, 4):
            row = {
                "id": i, "ts": float(i), "identity": "alice", "verb": "pause", "model": "bc",
                "environment": "prod", "outcome": "allowed", "status_code": 200,
                "detail": canonical({"i": i}),
            }  # fmt: skip
            digest = row_hash(prev, row)
            conn.execute(
                text(
                    "INSERT INTO audit_log (id, ts, identity, verb, model, environment, outcome,"
                    " status_code, detail, prev_hash, hash) VALUES (:id, :ts, :identity, :verb,"
                    " :model, :environment, :outcome, :status_code, :detail, :prev, :hash)"
                ),
                {**row, "prev": prev, "hash": digest},
            )
            prev = digest
    upgrade(engine)
    log = AuditLog(engine, KEY)
    assert [r["alg"] for r in _rows(engine)] == ["sha256"] * 3
    unsealed = log.verify()
    assert (unsealed.ok, unsealed.sealed_rows) == (False, 3)
    assert unsealed.reason is not None and unsealed.reason.startswith(
        "rows 1..3 are unkeyed and not sealed"
    )
    sealed = log.seal()  # as the API does at start
    assert sealed is not None and (sealed.id, sealed.verb) == (4, SEAL_VERB)
    assert log.seal() is None  # once
    entry = log.append("bob", "resume", "bc", "prod", "allowed", 200)
    rows = _rows(engine)
    seal = rows[3]
    assert (seal["id"], seal["verb"], seal["alg"], seal["prev_hash"]) == (
        4, SEAL_VERB, "hmac-sha256", prev,
    )  # fmt: skip
    assert json.loads(seal["detail"]) == {"sealed_rows": 3, "sealed_head": prev}
    assert (entry.id, entry.prev_hash) == (5, seal["hash"])
    result = log.verify()
    assert (result.ok, result.rows, result.sealed_rows, result.head_hash) == (
        True, 5, 3, entry.hash,
    )  # fmt: skip
    with engine.begin() as conn:  # an old row changed after the seal is still found
        conn.execute(update(audit_log).where(audit_log.c.id == 2).values(identity="mallory"))
    result = log.verify()
    assert (result.ok, result.broken_id) == (False, 2)
    engine.dispose()


def test_the_first_keyed_append_seals_the_unkeyed_rows_itself(store_url: str) -> None:
    engine = create_engine(normalize_url(store_url))
    upgrade(engine, "0008")
    row = {
        "id": 1, "ts": 1.0, "identity": "alice", "verb": "pause", "model": "bc",
        "environment": "prod", "outcome": "allowed", "status_code": 200, "detail": "{}",
    }  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_log (id, ts, identity, verb, model, environment, outcome,"
                " status_code, detail, prev_hash, hash) VALUES (:id, :ts, :identity, :verb,"
                " :model, :environment, :outcome, :status_code, :detail, :prev, :hash)"
            ),
            {**row, "prev": GENESIS, "hash": row_hash(GENESIS, row)},
        )
    upgrade(engine)
    log = AuditLog(engine, KEY)
    entry = log.append("bob", "resume", "bc", "prod", "allowed", 200)
    assert [(r["id"], r["verb"], r["alg"]) for r in _rows(engine)] == [
        (1, "pause", "sha256"), (2, SEAL_VERB, "hmac-sha256"), (3, "resume", "hmac-sha256"),
    ]  # fmt: skip
    assert log.verify().to_dict() | {"head": None} == {
        "ok": True, "rows": 3, "head_hash": entry.hash, "broken_id": None, "reason": None,
        "sealed_rows": 1, "head": None,
    }  # fmt: skip
    engine.dispose()


def test_concurrent_threads_and_processes_keep_one_chain(store_url: str) -> None:
    engine = open_engine(store_url)
    log = AuditLog(engine, KEY)
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
        "log = AuditLog(open_engine(sys.argv[1]), sys.argv[3].encode())\n"
        "for i in range(15):\n"
        "    log.append(sys.argv[2], 'abort', 'bc', 'prod', 'allowed', 200, {'i': i})\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, store_url, f"proc{p}", KEY.decode()])
        for p in range(2)
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


def test_cli_lists_and_verifies_with_the_key_and_the_head(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    key_file = tmp_path / "audit.key"
    key_file.write_text("s" * 64 + "\n")
    monkeypatch.setenv("ROLLOUT_AUDIT_KEY_FILE", str(key_file))
    monkeypatch.setenv("ROLLOUT_AUDIT_HEAD_FILE", str(tmp_path / "none-yet.jsonl"))
    engine = open_engine(store_url)
    log = AuditLog(engine, b"s" * 64)
    log.append("alice", "start", "bc", "dev", "allowed", 201, {"candidate": "1"})
    log.append("bob", "promote", "bc", "prod", "denied", 403, {"message": "bob may not promote"})
    head = log.append("bob", "pause", "other", "prod", "failed", 404, {"error_code": "not_found"})
    base = ["--home", str(tmp_path), "--store-url", store_url, "audit"]
    assert main([*base, "--verify"]) == 0
    assert capsys.readouterr().out == (
        f"audit log ok: 3 rows, head {head.hash} (no exported head)\n"
    )
    assert main([*base, "--verify", "--head", f"{head.hash}:3"]) == 0
    assert capsys.readouterr().out.endswith("(at the exported head of 3 rows)\n")
    head_file = tmp_path / "head.jsonl"
    log.export_head(head_file)
    assert main([*base, "bc", "--env", "prod", "--json"]) == 0
    assert [(r["id"], r["identity"]) for r in json.loads(capsys.readouterr().out)] == [(2, "bob")]
    assert main(base) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["3", "2", "1"]
    with engine.begin() as conn:
        conn.execute(audit_log.delete().where(audit_log.c.id == 3))
    assert main([*base, "--verify", "--head", str(head_file)]) == 1
    assert capsys.readouterr().out == (
        "audit log broken: the chain ends at row 2 but the exported head had 3 rows: "
        "rows 3..3 were removed\n"
    )
    monkeypatch.setenv("ROLLOUT_AUDIT_HEAD_FILE", str(head_file))  # the default head file
    assert main([*base, "--verify"]) == 1
    capsys.readouterr()
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.id == 2).values(outcome="allowed"))
    assert main([*base, "--verify", "--head", f"{'0' * 64}:0"]) == 1
    assert capsys.readouterr().out.startswith("audit log broken at row 2: ")
    assert main([*base, "--verify", "--head", "no-such-file"]) == 2
    assert "head: cannot read no-such-file" in capsys.readouterr().err
    engine.dispose()
