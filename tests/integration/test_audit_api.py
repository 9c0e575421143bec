"""The audit log through the real API (uvicorn on loopback) and the manager loop, on SQLite and
PostgreSQL: anonymous denials cannot flood the chain (attack 7), a redirect is never recorded
as "allowed", and the loop exports the chain's head and records its own transitions."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from conftest import MODEL, DemoHome, serving, wait_until
from contract.sql.engine import normalize_url
from contract.sql.migrations import upgrade
from contract.sql.schema import audit_log
from rollout.api import create_app
from rollout.audited import DENIALS_PER_ADDRESS
from rollout.auth import Token, parse_tokens
from rollout.manager import Manager
from rollout.spec import load_spec
from rollout.store.audit import GENESIS, Head, row_hash

INSTANT = {
    "strategy": {"canary": {"steps": [{"weight": 100, "min_requests": 0}]}},
    "analysis": {"gates": "none"},
}


@pytest.fixture
def manager(home: DemoHome, store_url: str, tmp_path: Path) -> Iterator[Manager]:
    settings = replace(
        home.settings,
        store_url=store_url,
        audit_head_file=tmp_path / "head.jsonl",
        audit_head_every_s=0.2,
    )
    manager = Manager(settings)
    yield manager
    manager.close()


def _tokens() -> dict[str, Token]:
    digest = hashlib.sha256(b"root-secret").hexdigest()
    return dict(parse_tokens(f"root:admin={digest}"))


def _rows(manager: Manager) -> list[dict[str, object]]:
    with manager.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(audit_log).order_by(audit_log.c.id))]


def test_a_thousand_anonymous_denials_cost_a_bounded_number_of_rows(manager: Manager) -> None:
    path = f"/v1/models/{MODEL}/environments/prod/abort"
    with serving(create_app(manager, _tokens())) as client:
        statuses = {client.post(path).status_code for _ in range(1000)}
        statuses |= {
            client.post(f"/v1/models/m{i}/environments/prod/abort").status_code for i in range(100)
        }
        assert statuses == {401}
        during = len(_rows(manager))
    rows = _rows(manager)  # after shutdown: the counted denials' summary rows too
    assert during <= DENIALS_PER_ADDRESS
    assert len(rows) <= 2 * DENIALS_PER_ADDRESS + 1
    # 1 + 19 rows let through, a summary of the 999 repeats and one of the 81 beyond the limit
    assert len(rows) == DENIALS_PER_ADDRESS + 2
    (beyond,) = [r for r in rows if json.loads(str(r["detail"])).get("over_limit")]
    assert beyond["count"] == 100 - (DENIALS_PER_ADDRESS - 1)
    assert {(r["identity"], r["outcome"], r["status_code"]) for r in rows} == {
        ("anonymous", "denied", 401)
    }
    assert sum(int(r["count"]) for r in rows) == 1100  # every denial is counted
    repeated = [r for r in rows if r["count"] == 999]
    assert len(repeated) == 1 and json.loads(str(repeated[0]["detail"]))["suppressed"] is True
    assert {r["address"] for r in rows} == {"127.0.0.1"}
    assert manager.audit.verify().ok


def test_a_trailing_slash_post_is_never_recorded_as_allowed(manager: Manager) -> None:
    with serving(create_app(manager, _tokens())) as client:
        anonymous = client.post(f"/v1/models/{MODEL}/environments/prod/abort/")
        assert anonymous.status_code == 307
        admin = client.post(
            "/v1/rollouts/", json={}, headers={"Authorization": "Bearer root-secret"}
        )
        assert admin.status_code == 307
    rows = _rows(manager)
    assert [r for r in rows if r["outcome"] == "allowed" or r["status_code"] == 307] == []
    assert rows == []  # a redirect changed nothing; the call it points to is audited itself


def test_the_loop_exports_the_head_and_records_its_transitions(
    manager: Manager, home: DemoHome
) -> None:
    v1 = home.versions["baseline"]
    with serving(create_app(manager, _tokens())) as client:
        started = client.post(
            "/v1/rollouts",
            json={"model": MODEL, "candidate": v1, "environment": "dev", "spec": INSTANT},
            headers={"Authorization": "Bearer root-secret", "User-Agent": "ops-script/2"},
        )
        assert started.status_code == 201
    stop = threading.Event()
    loop = threading.Thread(target=manager.run, args=(0.05, stop), daemon=True)
    loop.start()
    head_file = manager.settings.audit_head_path
    try:
        first = wait_until(lambda: head_file.exists() and Head.read(head_file), "a head export")
        assert isinstance(first, Head)
        lines = wait_until(
            lambda: head_file.read_text().splitlines(), "two exports", until=lambda x: len(x) >= 2
        )
    finally:
        stop.set()
        loop.join(timeout=10)
    rows = _rows(manager)
    assert [(r["identity"], r["verb"]) for r in rows] == [
        ("root", "new->succeeded"), ("root", "start"),
    ]  # fmt: skip
    assert rows[1]["user_agent"] == "ops-script/2"
    exported = json.loads(lines[-1])
    assert (exported["count"], exported["hash"]) == (2, rows[-1]["hash"])
    assert exported["time"].endswith("Z")
    assert oct(head_file.stat().st_mode & 0o777) == "0o600"
    assert manager.audit.verify(Head.read(head_file)).ok
    with manager.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_log)).scalar_one() == 2


def test_the_managers_own_transitions_are_in_the_chain(home: DemoHome, store_url: str) -> None:
    manager = Manager(replace(home.settings, store_url=store_url))
    v1, v2 = home.versions["baseline"], home.versions["better"]
    try:
        manager.start(MODEL, v1, "dev", actor="alice")
        manager.start(MODEL, v2, "dev", load_spec(INSTANT), actor="alice")
        manager.tick()
        rows = manager.audit.list(limit=100)
        first_release = manager.history(MODEL, "dev")[-1]
        back = manager.rollback(MODEL, "dev", "bob", first_release.id, "v2 looks off")
        (returned,) = manager.audit.list(limit=1)
        verified = manager.audit.verify()
    finally:
        manager.close()
    assert verified.ok
    assert (returned.identity, returned.verb, returned.environment) == (
        "bob", f"release:{back.kind}", "dev",
    )  # fmt: skip
    assert json.loads(returned.detail) == {
        "kind": "release", "release_id": back.id, "version": "1", "previous_version": "2",
    }  # fmt: skip
    assert [(r.identity, r.verb) for r in reversed(rows)] == [
        ("alice", "new->succeeded"),  # the initial release of v1
        ("alice", "new->pending"),  # the canary of v2, started by alice
        ("manager", "pending->verifying"),  # ... and driven by the manager from there
        ("manager", "verifying->progressing"),
        ("manager", "progressing->promoting"),
        ("manager", "promoting->succeeded"),
    ]
    details = [json.loads(r.detail) for r in rows]
    assert {d["kind"] for d in details} == {"transition"}
    assert details[0]["candidate"] == "2" and details[0]["reason"].startswith("v2 promoted in dev")
    assert len({d["rollout_id"] for d in details}) == 2


def test_verify_over_the_api_takes_the_exported_head(manager: Manager) -> None:
    auth = {"Authorization": "Bearer root-secret"}
    for reason in ("a", "b", "c"):
        manager.audit.append("root", "pause", MODEL, "prod", "allowed", 200, {"reason": reason})
    head = manager.audit.export_head(manager.settings.audit_head_path)
    with serving(create_app(manager, _tokens())) as client:
        assert client.get("/v1/audit/verify", headers=auth).json()["ok"] is True
        with manager.engine.begin() as conn:  # the newest row goes
            conn.execute(audit_log.delete().where(audit_log.c.id == 3))
        by_file = client.get("/v1/audit/verify", headers=auth).json()
        given = client.get(
            "/v1/audit/verify", params={"head": f"{head.hash}:3"}, headers=auth
        ).json()
        bad = client.get("/v1/audit/verify", params={"head": "3:abc"}, headers=auth)
    expected = "the chain ends at row 2 but the exported head had 3 rows: rows 3..3 were removed"
    assert (by_file["ok"], by_file["reason"], by_file["head"]["count"]) == (False, expected, 3)
    assert (given["ok"], given["reason"]) == (False, expected)
    assert bad.status_code == 422 and bad.json()["error_code"] == "invalid_request"
    assert "head" in bad.json()["message"]


def test_the_api_seals_an_unkeyed_chain_at_start(home: DemoHome, store_url: str) -> None:
    engine = create_engine(normalize_url(store_url))
    upgrade(engine, "0008")
    row = {
        "id": 1, "ts": 1.0, "identity": "alice", "verb": "abort", "model": MODEL,
        "environment": "prod", "outcome": "allowed", "status_code": 307, "detail": "{}",
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
    engine.dispose()
    manager = Manager(replace(home.settings, store_url=store_url))
    try:
        with serving(create_app(manager, _tokens())) as client:
            verified = client.get(
                "/v1/audit/verify", headers={"Authorization": "Bearer root-secret"}
            ).json()
    finally:
        manager.close()
    assert (verified["ok"], verified["rows"], verified["sealed_rows"]) == (True, 2, 1)
