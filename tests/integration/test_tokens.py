"""Tokens with a lifecycle (rollout.tokens, rollout.store.tokens) on real SQLite and PostgreSQL
stores, and the API's /v1/tokens routes on uvicorn on loopback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import select

from conftest import MODEL, DemoHome, serving
from contract.clock import ManualClock
from contract.errors import Invalid, NotFound
from contract.sql.engine import open_engine
from contract.sql.schema import api_tokens, audit_log
from rollout.api import create_app
from rollout.auth import parse_tokens
from rollout.manager import Manager
from rollout.store.tokens import TokenStore
from rollout.tokens import Authenticator, digest, issue, parse_expires, revoke

ROOT = "root-secret"  # ROLLOUT_API_TOKENS' bootstrap admin
LIMITED_ADMIN = "limited-admin-secret"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_800_000_000.0)


@pytest.fixture
def store(store_url: str, clock: ManualClock) -> Iterator[TokenStore]:
    engine = open_engine(store_url)
    yield TokenStore(engine, clock)
    engine.dispose()


def test_only_the_hash_is_stored_and_lookup_follows_the_lifecycle(
    store: TokenStore, clock: ManualClock
) -> None:
    issued = issue(store, "ana", ["scientist", "viewer"], ["staging", "dev"], "30d", "root")
    assert issued.token.startswith("rlt_") and len(issued.token) == 4 + 43
    with store.engine.connect() as conn:
        row = conn.execute(select(api_tokens)).one()
    assert issued.token not in json.dumps([str(v) for v in row])
    assert row.token_sha256 == hashlib.sha256(issued.token.encode()).hexdigest()
    assert (row.roles, row.environments) == ("viewer+scientist", "dev+staging")
    assert row.expires_at == pytest.approx(clock.time() + 30 * 86_400)

    found = store.lookup(digest(issued.token))
    assert found is not None
    assert (found.identity, found.roles, found.environments, found.token_id) == (
        "ana",
        ("viewer", "scientist"),
        frozenset({"dev", "staging"}),
        issued.stored.id,
    )
    assert store.lookup(digest(issued.token + "x")) is None
    assert store.list()[0].last_used_at == clock.time()

    clock.advance(30 * 86_400 - 1)
    assert store.lookup(digest(issued.token)) is not None
    clock.advance(1)  # the expiry instant: no longer good
    assert store.lookup(digest(issued.token)) is None
    assert store.list()[0].state(clock.time()) == "expired"
    assert store.active_count() == 0


def test_revoke_by_id_or_identity_takes_effect_at_once(store: TokenStore) -> None:
    first = issue(store, "ana", ["scientist"], None, "never", "root")
    second = issue(store, "ana", ["viewer"], None, "1w", "root")
    other = issue(store, "bob", ["deployer"], None, "12h", "root")
    authenticator = Authenticator({}, store)
    assert authenticator.identify(first.token) is not None

    revoked = revoke(store, first.stored.id, "root")
    assert [t.id for t in revoked] == [first.stored.id]
    assert authenticator.identify(first.token) is None  # no cache: the next call is refused
    assert authenticator.identify(second.token) is not None

    assert [t.id for t in revoke(store, "ana", "root")] == [second.stored.id]
    assert authenticator.identify(second.token) is None
    assert revoke(store, "ana", "root") == []  # again: nothing left, no error
    assert authenticator.identify(other.token) is not None
    with pytest.raises(NotFound, match="'nobody'"):
        revoke(store, "nobody", "root")
    for bad in ("", "a\x00b", "x" * 256, "a b"):  # never reaches the database (NUL on PG)
        with pytest.raises(Invalid, match=r"^id_or_identity: expected"):
            revoke(store, bad, "root")
    states = {t.id: (t.state(store.clock.time()), t.revoked_by) for t in store.list()}
    assert states == {
        first.stored.id: ("revoked", "root"),
        second.stored.id: ("revoked", "root"),
        other.stored.id: ("active", None),
    }


def test_bad_token_requests_name_the_field(store: TokenStore) -> None:
    for args, field in [
        (("", ["viewer"], None, "30d"), "identity"),
        (("ana b", ["viewer"], None, "30d"), "identity"),
        (("ana", [], None, "30d"), "roles"),
        (("ana", ["root"], None, "30d"), "roles"),
        (("ana", ["viewer"], ["pr od"], "30d"), "environments"),
        (("ana", ["viewer"], None, "forever"), "expires"),
        (("ana", ["viewer"], None, "0d"), "expires"),
        (("ana", ["viewer"], None, "9999w"), "expires"),
    ]:
        with pytest.raises(Invalid, match=f"^{field}: expected"):
            issue(store, *args, created_by="root")  # type: ignore[misc]
    assert store.list() == []
    assert parse_expires("2w") == 14 * 86_400 and parse_expires("never") is None


# -- through the API --


@pytest.fixture
def manager(home: DemoHome, store_url: str) -> Iterator[Manager]:
    manager = Manager(replace(home.settings, store_url=store_url))
    yield manager
    manager.close()


@pytest.fixture
def api(manager: Manager, clock: ManualClock) -> Iterator[tuple[httpx.Client, TokenStore]]:
    env = parse_tokens(
        f"root:admin={hashlib.sha256(ROOT.encode()).hexdigest()},"
        f"lim:admin@dev={hashlib.sha256(LIMITED_ADMIN.encode()).hexdigest()}"
    )
    store = TokenStore(manager.engine, clock)
    with serving(create_app(manager, env, store)) as client:
        yield client, store


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_api_token_lifecycle_and_audit(
    api: tuple[httpx.Client, TokenStore], manager: Manager, clock: ManualClock
) -> None:
    client, _store = api
    body = {"identity": "sam", "roles": ["scientist"], "environments": ["dev"], "expires": "1d"}
    made = client.post("/v1/tokens", json=body, headers=bearer(ROOT))
    assert made.status_code == 201, made.text
    sam = made.json()["token"]
    assert made.json()["state"] == "active" and made.json()["created_by"] == "root"

    status = f"/v1/models/{MODEL}/environments/dev/status"
    assert client.get(status, headers=bearer(sam)).status_code == 200
    prod = client.post(f"/v1/models/{MODEL}/environments/prod/pause", headers=bearer(sam))
    assert prod.status_code == 403  # its environments hold

    listed = client.get("/v1/tokens", headers=bearer(ROOT)).json()
    assert [(t["identity"], t["roles"], t["environments"]) for t in listed] == [
        ("sam", ["scientist"], ["dev"])
    ]
    assert "token" not in listed[0] and sam not in json.dumps(listed)

    clock.advance(86_400)  # expired: refused at once
    expired = client.get(status, headers=bearer(sam))
    assert expired.status_code == 401
    assert expired.json() == {
        "error_code": "unauthenticated",
        "message": "unknown, expired or revoked token",
    }

    again = client.post("/v1/tokens", json={**body, "expires": "30d"}, headers=bearer(ROOT))
    sam2 = again.json()["token"]
    assert client.get(status, headers=bearer(sam2)).status_code == 200
    gone = client.delete("/v1/tokens/sam", headers=bearer(ROOT))
    assert gone.status_code == 200
    # every unrevoked token of sam's, the expired one too
    assert {t["id"] for t in gone.json()["revoked"]} == {made.json()["id"], again.json()["id"]}
    assert client.get(status, headers=bearer(sam2)).status_code == 401
    assert client.delete("/v1/tokens/nobody", headers=bearer(ROOT)).status_code == 404
    nul = client.delete("/v1/tokens/a%00b", headers=bearer(ROOT))
    assert (nul.status_code, nul.json()["error_code"]) == (422, "invalid_request")

    with manager.engine.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).all()
    tokens_rows = [
        (r.identity, r.verb, r.outcome, d.get("token_identity"), d.get("created_token_id"))
        for r in rows
        if r.verb.startswith("token_")
        for d in [json.loads(r.detail)]
    ]
    assert tokens_rows == [
        ("root", "token_create", "allowed", "sam", made.json()["id"]),
        ("root", "token_create", "allowed", "sam", again.json()["id"]),
        ("root", "token_revoke", "allowed", None, None),
        ("root", "token_revoke", "failed", None, None),
        ("root", "token_revoke", "failed", None, None),
    ]
    assert sam not in json.dumps([r.detail for r in rows])  # never the token itself
    paused = [r for r in rows if r.verb == "pause"]
    assert [(r.identity, json.loads(r.detail)["token_id"]) for r in paused] == [
        ("sam", made.json()["id"])
    ]


def test_only_an_unlimited_admin_manages_tokens(
    api: tuple[httpx.Client, TokenStore], manager: Manager
) -> None:
    client, store = api
    viewer = issue(store, "vic", ["viewer", "deployer", "approver"], None, "1d", "root").token
    body = {"identity": "eve", "roles": ["admin"], "expires": "never"}
    for token in (viewer, LIMITED_ADMIN):
        assert client.post("/v1/tokens", json=body, headers=bearer(token)).status_code == 403
        assert client.get("/v1/tokens", headers=bearer(token)).status_code == 403
        assert client.delete("/v1/tokens/vic", headers=bearer(token)).status_code == 403
    denied = client.post("/v1/tokens", json=body, headers=bearer(LIMITED_ADMIN)).json()
    assert "not limited to some environments" in denied["message"]
    assert client.post("/v1/tokens", json=body).status_code == 401
    assert [t.identity for t in store.list()] == ["vic"]  # nothing made, nothing revoked
    assert store.active_count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"identity": "x", "roles": ["god"], "expires": "1d"}, "roles"),
        ({"identity": "x", "roles": ["viewer"], "expires": "1y"}, "expires"),
        ({"identity": "a b", "roles": ["viewer"], "expires": "1d"}, "identity"),
        ({"identity": "x", "roles": [], "expires": "1d"}, "roles"),
        ({"identity": "x", "roles": ["viewer"], "expires": "1d", "extra": 1}, "extra"),
    ],
)
def test_bad_token_bodies_are_422_naming_the_field(
    api: tuple[httpx.Client, TokenStore], body: dict[str, object], field: str
) -> None:
    client, store = api
    answer = client.post("/v1/tokens", json=body, headers=bearer(ROOT))
    assert answer.status_code == 422
    assert field in answer.json()["message"]
    assert store.list() == []
