"""The manager's HTTP API on the real registry and store, through FastAPI's test client."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest

from conftest import MODEL, DemoHome, serving
from rollout.api import create_app
from rollout.auth import Token, parse_tokens
from rollout.manager import Manager

# all traffic at once, nothing judged (not even the SLO at 100%): promoted at the first tick
INSTANT = {
    "strategy": {"canary": {"steps": [{"weight": 100, "min_requests": 0}]}},
    "analysis": {"gates": "none"},
}
ALICE = {"Authorization": "Bearer alice-secret"}
BOB = {"Authorization": "Bearer bob-secret"}
PROD = f"/v1/models/{MODEL}/environments/prod"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def client(home: DemoHome) -> Iterator[httpx.Client]:
    """The API served by uvicorn on a loopback port, and an HTTP client for it."""
    manager = Manager(home.settings)
    # Both may start, approve and roll back; the manager still refuses self-approval in prod.
    tokens = parse_tokens(
        f"alice:deployer+approver={sha('alice-secret')},bob:deployer+approver={sha('bob-secret')}"
    )
    try:
        with serving(create_app(manager, tokens)) as client:
            yield client
    finally:
        manager.close()


def test_api_walks_start_approve_history_rollback_report(
    client: httpx.Client, home: DemoHome
) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    reply = client.post(
        "/v1/rollouts", json={"model": MODEL, "candidate": v1, "environment": "prod"}, headers=ALICE
    )
    assert reply.status_code == 201, reply.text
    assert (reply.json()["state"], reply.json()["started_by"]) == ("succeeded", "alice")

    spec = {**INSTANT, "approval": {"required": True}}
    body = {"model": MODEL, "candidate": v2, "environment": "prod", "spec": spec}
    rollout = client.post("/v1/rollouts", json=body, headers=ALICE).json()
    assert rollout["state"] == "awaiting_approval"
    status = client.get(f"{PROD}/status", headers=BOB).json()
    assert status["next_move"] == "waiting for approval by someone other than alice"

    refused = client.post(f"{PROD}/approve", headers=ALICE)
    assert refused.status_code == 409
    assert refused.json()["error_code"] == "state_conflict"
    assert "someone other than alice" in refused.json()["message"]
    approved = client.post(f"{PROD}/approve", json={"reason": "looks good"}, headers=BOB).json()
    assert (approved["state"], approved["approved_by"]) == ("succeeded", "bob")

    history = client.get(f"{PROD}/history", headers=BOB).json()
    assert [(r["kind"], r["version"], r["approved_by"]) for r in history] == [
        ("promotion", v2, "bob"),
        ("initial", v1, None),
    ]
    back = client.post(f"{PROD}/rollback", json={"to_release": history[1]["id"]}, headers=BOB)
    assert back.status_code == 200, back.text
    assert (back.json()["kind"], back.json()["version"], back.json()["started_by"]) == (
        "rollback",
        v1,
        "bob",
    )
    report = client.get(f"/v1/rollouts/{rollout['id']}/report", headers=BOB).json()
    assert [e["to_state"] for e in report["events"]][-2:] == ["promoting", "succeeded"]
    assert [r["kind"] for r in report["releases"]] == ["promotion"]

    lines = []
    with client.stream("GET", f"{PROD}/status?watch=true", headers=BOB) as stream:
        lines = [json.loads(line) for line in stream.iter_lines() if line]
    assert len(lines) == 1 and lines[0]["rollout"]["state"] == "succeeded"


def test_api_apply_plan_and_errors(client: httpx.Client, home: DemoHome) -> None:
    v1 = home.versions["baseline"]
    spec = {"model": MODEL, "candidate": v1, "environment": "prod", **INSTANT}
    shown = client.post("/v1/plan", json={"spec": spec}, headers=ALICE).json()
    assert shown["would"] == f"initial release of v{v1} in prod: 100% at once, @prod set"
    assert client.post("/v1/apply", json={"spec": spec}, headers=ALICE).json()["action"] == (
        "started"
    )
    assert client.post("/v1/apply", json={"spec": spec}, headers=ALICE).json()["action"] == (
        "unchanged"
    )

    assert client.get(f"{PROD}/status").status_code == 401
    unknown = client.get(f"{PROD}/status", headers={"Authorization": "Bearer nope"})
    assert (unknown.status_code, unknown.json()["error_code"]) == (401, "unauthenticated")
    missing = client.post(
        "/v1/rollouts", json={"model": MODEL, "candidate": "99", "environment": "prod"},
        headers=ALICE,
    )  # fmt: skip
    assert (missing.status_code, missing.json()["error_code"]) == (404, "not_found")
    bad = client.post(
        "/v1/plan", json={"spec": {**spec, "strategy": {"canary": {"steps": []}}}}, headers=ALICE
    )
    assert bad.status_code == 422
    assert bad.json() == {
        "error_code": "invalid_spec",
        "message": "strategy.canary.steps: must list at least one step",
    }
    assert client.post(f"{PROD}/pause", headers=ALICE).status_code == 404
    assert client.post(f"{PROD}/explode", headers=ALICE).status_code == 422

    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/rollouts",
        "/v1/apply",
        "/v1/plan",
        "/v1/models/{model}/environments/{environment}/status",
        "/v1/models/{model}/environments/{environment}/{verb}",
        "/v1/models/{model}/environments/{environment}/rollback",
        "/v1/models/{model}/environments/{environment}/history",
        "/v1/rollouts/{rollout_id}/report",
    } <= set(paths)


def test_tokens_are_identity_and_sha256() -> None:
    digest, other = sha("t"), sha("u")
    assert parse_tokens(f"alice={digest}, bob={other.upper()}") == {
        digest: Token("alice", ("viewer",)),  # no roles written: read only
        other: Token("bob", ("viewer",)),
    }
    with pytest.raises(ValueError, match=r"expected 'identity\[:role\+role\]\[@env\+env\]="):
        parse_tokens("alice")
