"""Roles, environments and the audit log through the real API (uvicorn on loopback) on real
SQLite and PostgreSQL stores and the demo MLflow registry."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from conftest import MODEL, DemoHome, serving
from contract.sql.schema import releases, rollout_configs, rollouts, traffic_plans
from rollout.api import create_app
from rollout.auth import parse_tokens
from rollout.manager import Manager

# all traffic at once, nothing judged (not even the SLO at 100%): promoted at the first tick
INSTANT = {
    "strategy": {"canary": {"steps": [{"weight": 100, "min_requests": 0}]}},
    "analysis": {"gates": "none"},
}
PEOPLE = {
    "vic": "vic",  # the old 'identity=sha256' form: viewer
    "sam": "sam:scientist",
    "dee": "dee:deployer",
    "ann": "ann:approver",
    "root": "root:admin",
    "stan": "stan:deployer@staging",
}


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}-secret"}


def env_path(environment: str, verb: str) -> str:
    return f"/v1/models/{MODEL}/environments/{environment}/{verb}"


@pytest.fixture
def manager(home: DemoHome, store_url: str) -> Iterator[Manager]:
    manager = Manager(replace(home.settings, store_url=store_url))
    yield manager
    manager.close()


@pytest.fixture
def client(manager: Manager) -> Iterator[httpx.Client]:
    text = ",".join(
        f"{entry}={hashlib.sha256(f'{name}-secret'.encode()).hexdigest()}"
        for name, entry in PEOPLE.items()
    )
    with serving(create_app(manager, parse_tokens(text))) as client:
        yield client


def snapshot(manager: Manager) -> list[list[Any]]:
    with manager.engine.connect() as conn:
        return [
            [tuple(row) for row in conn.execute(select(table))]
            for table in (rollouts, releases, traffic_plans, rollout_configs)
        ]


# One row per verb class: (who, method, path, body) → allowed (not 403) or denied (403).
# Allowed calls on environments without a rollout end in 404 or 409 from the manager, not 403.
MATRIX = [
    ("read", "vic", "GET", env_path("prod", "status"), None, True),
    ("read", "stan", "GET", env_path("prod", "history"), None, False),  # limited to staging
    ("read", "stan", "GET", env_path("staging", "history"), None, True),
    ("operate", "sam", "POST", env_path("staging", "pause"), None, True),
    ("operate", "sam", "POST", env_path("prod", "abort"), None, False),
    ("operate", "vic", "POST", env_path("dev", "resume"), None, False),
    ("operate", "ann", "POST", env_path("dev", "pause"), None, False),
    ("operate", "dee", "POST", env_path("prod", "pause"), None, True),
    ("release", "sam", "POST", env_path("dev", "promote"), None, False),
    ("release", "dee", "POST", env_path("prod", "promote"), None, True),
    ("release", "dee", "POST", env_path("prod", "rollback"), None, True),
    ("release", "ann", "POST", env_path("prod", "rollback"), None, False),
    ("release", "stan", "POST", env_path("prod", "rollback"), None, False),
    ("approve", "ann", "POST", env_path("prod", "approve"), None, True),
    ("approve", "dee", "POST", env_path("prod", "approve"), None, False),
    ("approve", "root", "POST", env_path("prod", "approve"), None, True),
    ("audit", "vic", "GET", "/v1/audit", None, True),
]


def test_role_and_environment_matrix(client: httpx.Client) -> None:
    outcomes = []
    for verb_class, who, method, path, body, allowed in MATRIX:
        reply = client.request(method, path, json=body, headers=auth(who))
        outcomes.append((verb_class, who, method, path, allowed, reply.status_code))
        if not allowed:
            assert set(reply.json()) == {"error_code", "message"}
            assert reply.json()["error_code"] == "forbidden"
            assert reply.json()["message"].startswith(f"{who} may not ")
    mismatches = [
        (verb_class, who, method, path, allowed, status)
        for (verb_class, who, method, path, _body, allowed), (*_, status) in zip(
            MATRIX, outcomes, strict=True
        )
        if (status == 403) != (not allowed) or status not in (200, 403, 404, 409)
    ]
    assert mismatches == []
    denied_rows = client.get("/v1/audit", headers=auth("vic")).json()
    mutating_denied = [
        (who, path.rsplit("/", 1)[-1])
        for _c, who, method, path, _b, allowed in MATRIX
        if method == "POST" and not allowed
    ]
    assert sorted((r["identity"], r["verb"]) for r in denied_rows if r["outcome"] == "denied") == (
        sorted(mutating_denied)
    )


def test_denied_start_and_apply_change_nothing_and_are_audited(
    client: httpx.Client, manager: Manager, home: DemoHome
) -> None:
    v1 = home.versions["baseline"]
    before = snapshot(manager)
    body = {"model": MODEL, "candidate": v1, "environment": "prod", "spec": INSTANT}
    denied = client.post("/v1/rollouts", json=body, headers=auth("sam"))
    assert (denied.status_code, denied.json()) == (
        403,
        {
            "error_code": "forbidden",
            "message": "sam may not start in prod: needs role deployer or admin, has scientist",
        },
    )
    spec = {"model": MODEL, "candidate": v1, "environment": "prod", **INSTANT}
    denied = client.post("/v1/apply", json={"spec": spec}, headers=auth("stan"))
    assert denied.status_code == 403
    assert denied.json()["message"] == (
        "stan may not apply in prod: the token is limited to environments staging "
        "(a token for prod with role deployer or admin would do)"
    )
    assert snapshot(manager) == before  # no rollout, release, plan or config version

    # The scientist may release in dev, the deployer in prod.
    started = client.post("/v1/rollouts", json={**body, "environment": "dev"}, headers=auth("sam"))
    assert (started.status_code, started.json()["started_by"]) == (201, "sam")
    applied = client.post("/v1/apply", json={"spec": spec}, headers=auth("dee"))
    assert (applied.status_code, applied.json()["action"]) == (200, "started")
    assert snapshot(manager) != before

    rows = client.get("/v1/audit", headers=auth("vic")).json()
    assert [
        (r["id"], r["identity"], r["verb"], r["model"], r["environment"], r["outcome"],
         r["status_code"])
        for r in rows
    ] == [
        (6, "dee", "apply", MODEL, "prod", "allowed", 200),
        (5, "dee", "new->succeeded", MODEL, "prod", "allowed", 0),  # the transition it made
        (4, "sam", "start", MODEL, "dev", "allowed", 201),
        (3, "sam", "new->succeeded", MODEL, "dev", "allowed", 0),
        (2, "stan", "apply", MODEL, "prod", "denied", 403),
        (1, "sam", "start", MODEL, "prod", "denied", 403),
    ]  # fmt: skip
    assert rows[0]["detail"]["action"] == "started"
    assert rows[1]["detail"]["kind"] == "transition"
    assert rows[1]["detail"]["rollout_id"] == rows[0]["detail"]["rollout_id"]
    assert rows[2]["detail"]["state"] == "succeeded"
    assert rows[5]["detail"]["needs"] == ["deployer", "admin"]
    assert rows[5]["detail"]["roles"] == ["scientist"]
    assert {(r["address"], r["user_agent"]) for r in rows if r["status_code"]} == {
        ("127.0.0.1", f"python-httpx/{httpx.__version__}")
    }
    assert rows[5]["prev_hash"] == "0" * 64 and rows[4]["prev_hash"] == rows[5]["hash"]
    verified = client.get("/v1/audit/verify", headers=auth("vic")).json()
    assert verified == {
        "ok": True, "rows": 6, "head_hash": rows[0]["hash"], "broken_id": None, "reason": None,
        "sealed_rows": 0, "head": None,
    }  # fmt: skip


def test_failed_and_unauthenticated_calls_are_audited_and_reads_are_not(
    client: httpx.Client,
) -> None:
    assert client.get(env_path("prod", "status"), headers=auth("vic")).status_code == 200
    assert client.post(env_path("prod", "pause"), headers=auth("dee")).status_code == 404
    assert client.post(env_path("prod", "pause")).status_code == 401
    bad = client.post("/v1/rollouts", json={"model": MODEL}, headers=auth("root"))
    assert bad.status_code == 422
    assert client.post(env_path("prod", "explode"), headers=auth("root")).status_code == 422

    rows = client.get("/v1/audit", params={"limit": 10}, headers=auth("vic")).json()
    assert [
        (r["identity"], r["verb"], r["environment"], r["outcome"], r["status_code"])
        for r in reversed(rows)
    ] == [
        ("dee", "pause", "prod", "failed", 404),
        ("anonymous", "pause", "prod", "denied", 401),
        ("root", "start", None, "failed", 422),
        ("root", "explode", "prod", "failed", 422),
    ]
    assert rows[-1]["detail"]["error_code"] == "not_found"
    assert rows[-2]["detail"]["error_code"] == "unauthenticated"
    only = client.get("/v1/audit", params={"identity": "dee"}, headers=auth("vic")).json()
    assert [r["identity"] for r in only] == ["dee"]
    # A token limited to staging sees only staging rows (there are none).
    assert client.get("/v1/audit", headers=auth("stan")).json() == []
    assert client.get("/v1/audit/verify", headers=auth("stan")).json()["ok"] is True
    assert client.get("/v1/audit").status_code == 401
