"""The authorization matrix, in full: every endpoint of the manager's API (every path and verb
of its OpenAPI) for every role, unlimited and limited to ``dev``, without a token and with a
wrong one, in every environment, through the real API (uvicorn on loopback) with the default
environment policy (``prod`` requires an approval).

The expected table is written out by hand from the README's "Security" role table, not
computed with :mod:`rollout.auth` (that would test the code against itself). Allowed calls use
bodies that pass authorization and then fail in the manager (a version that does not exist, no
active rollout, an unknown release, role or token), so no case changes what a later one sees;
denied ones are 403 ``forbidden`` naming the identity, and every denied mutating call is in the
audit log.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conftest import MODEL, DemoHome, serving
from contract.sql.schema import api_tokens, releases, rollout_configs, rollouts, traffic_plans
from rollout.api import create_app
from rollout.audited import Denials
from rollout.auth import parse_tokens
from rollout.manager import Manager

ENVIRONMENTS = ("dev", "staging", "prod")
# The default policy, written out: prod requires an approval (conftest's `home` turns it off).
DEFAULT_POLICY = "environments: [dev, staging, {name: prod, approval: {required: true}}]\n"
# all traffic at once, nothing judged: a first release in an environment succeeds at once
INSTANT = {
    "strategy": {"canary": {"steps": [{"weight": 100, "min_requests": 0}]}},
    "analysis": {"gates": "none"},
}
MISSING = "999999"  # a version the registry does not have: start, apply and plan fail on it

# identity → its ROLLOUT_API_TOKENS head (the identity is what a denial's message names)
TOKENS = {
    "viewer": "viewer:viewer",
    "scientist": "scientist:scientist",
    "deployer": "deployer:deployer",
    "approver": "approver:approver",
    "admin": "admin:admin",
    "scientist-dev": "scientist-dev:scientist@dev",
    "admin-dev": "admin-dev:admin@dev",
}
NO_TOKEN, WRONG_TOKEN = "(no token)", "(wrong token)"
CALLERS = (*TOKENS, NO_TOKEN, WRONG_TOKEN)
EVERYONE = frozenset(TOKENS)
UNLIMITED = EVERYONE - {"scientist-dev", "admin-dev"}

# Who may do what where, by hand from the README's "Security" table. Key None: a call about no
# one environment (the whole audit log, its verification, the tokens).
ALLOWED: dict[str, dict[str | None, frozenset[str]]] = {
    # status, history, plan, report, looks, audit: every role, in its token's environments
    "read": {
        "dev": EVERYONE,
        "staging": UNLIMITED,
        "prod": UNLIMITED,
        None: EVERYONE,
    },
    # start, apply, pause, resume, abort: scientist (before the last environment), deployer,
    # admin
    "operate": {
        "dev": frozenset({"scientist", "deployer", "admin", "scientist-dev", "admin-dev"}),
        "staging": frozenset({"scientist", "deployer", "admin"}),
        "prod": frozenset({"deployer", "admin"}),
    },
    # promote: deployer, admin; where an approval is required (prod) approver or admin only
    "promote": {
        "dev": frozenset({"deployer", "admin", "admin-dev"}),
        "staging": frozenset({"deployer", "admin"}),
        "prod": frozenset({"approver", "admin"}),
    },
    # rollback: deployer, admin (prod included)
    "rollback": {
        "dev": frozenset({"deployer", "admin", "admin-dev"}),
        "staging": frozenset({"deployer", "admin"}),
        "prod": frozenset({"deployer", "admin"}),
    },
    "approve": {
        "dev": frozenset({"approver", "admin", "admin-dev"}),
        "staging": frozenset({"approver", "admin"}),
        "prod": frozenset({"approver", "admin"}),
    },
    # token create, list, revoke: an admin not limited to some environments
    "tokens": {None: frozenset({"admin"})},
}

ENV_PATH = "/v1/models/{model}/environments/{environment}"
EXCLUDED_ROUTES = {("GET", "/healthz")}  # answers without a token


@dataclass(frozen=True)
class Case:
    route: tuple[str, str]  # (method, OpenAPI path template)
    rule: str  # a key of ALLOWED
    environment: str | None
    method: str
    path: str
    audit_verb: str | None  # the audit row's verb of a mutating call; None: a read
    body: dict[str, Any] | None = None
    params: dict[str, str] | None = None

    def allowed(self, caller: str) -> bool:
        return caller in ALLOWED[self.rule][self.environment]

    def hidden_from(self, caller: str) -> bool:
        """A call about one rollout by id, in an environment the caller's token is not
        limited to: answered 404 like an unknown id."""
        limited = TOKENS[caller].partition("@")[2]
        return (
            self.path.startswith("/v1/rollouts/")
            and bool(limited)
            and self.environment not in limited.split("+")
        )


def secret(identity: str) -> str:
    return f"{identity}-secret"


def headers(caller: str) -> dict[str, str]:
    if caller == NO_TOKEN:
        return {}
    if caller == WRONG_TOKEN:
        return {"Authorization": "Bearer not-a-token-anyone-has"}
    return {"Authorization": f"Bearer {secret(caller)}"}


def cases(rollout_ids: dict[str, str]) -> list[Case]:
    """One case per route, per environment it can name (and per verb of the verb route)."""
    out: list[Case] = []
    for env in ENVIRONMENTS:
        spec = {"model": MODEL, "candidate": MISSING, "environment": env, **INSTANT}
        start = {"model": MODEL, "candidate": MISSING, "environment": env, "spec": INSTANT}
        on_env = f"/v1/models/{MODEL}/environments/{env}"
        out += [
            Case(("POST", "/v1/rollouts"), "operate", env, "POST", "/v1/rollouts", "start", start),
            Case(("POST", "/v1/apply"), "operate", env, "POST", "/v1/apply", "apply",
                 {"spec": spec}),
            Case(("POST", "/v1/plan"), "read", env, "POST", "/v1/plan", None, {"spec": spec}),
            Case(("GET", f"{ENV_PATH}/status"), "read", env, "GET", f"{on_env}/status", None),
            Case(("GET", f"{ENV_PATH}/history"), "read", env, "GET", f"{on_env}/history", None),
            Case(("POST", f"{ENV_PATH}/rollback"), "rollback", env, "POST",
                 f"{on_env}/rollback", "rollback", {"to_release": 999999, "reason": "matrix"}),
            Case(("GET", "/v1/rollouts/{rollout_id}/report"), "read", env, "GET",
                 f"/v1/rollouts/{rollout_ids[env]}/report", None),
            Case(("GET", "/v1/rollouts/{rollout_id}/drift-report"), "read", env, "GET",
                 f"/v1/rollouts/{rollout_ids[env]}/drift-report", None),
            Case(("GET", "/v1/rollouts/{rollout_id}/looks"), "read", env, "GET",
                 f"/v1/rollouts/{rollout_ids[env]}/looks", None),
            Case(("GET", "/v1/audit"), "read", env, "GET", "/v1/audit", None,
                 params={"environment": env}),
        ]  # fmt: skip
        for verb, rule in [
            ("pause", "operate"),
            ("resume", "operate"),
            ("abort", "operate"),
            ("promote", "promote"),
            ("approve", "approve"),
        ]:
            route = ("POST", f"{ENV_PATH}/{{verb}}")
            body = {"reason": "matrix"}
            out.append(Case(route, rule, env, "POST", f"{on_env}/{verb}", verb, body))
    out += [
        Case(("GET", "/v1/audit"), "read", None, "GET", "/v1/audit", None),
        Case(("GET", "/v1/audit/verify"), "read", None, "GET", "/v1/audit/verify", None),
        # an unknown role: 422 after authorization, no token made
        Case(("POST", "/v1/tokens"), "tokens", None, "POST", "/v1/tokens", "token_create",
             {"identity": "nobody", "roles": ["overlord"], "expires": "1d"}),
        Case(("GET", "/v1/tokens"), "tokens", None, "GET", "/v1/tokens", None),
        Case(("DELETE", "/v1/tokens/{id_or_identity}"), "tokens", None, "DELETE",
             "/v1/tokens/no-such-token", "token_revoke"),
    ]  # fmt: skip
    return out


def snapshot(manager: Manager) -> list[list[Any]]:
    with manager.engine.connect() as conn:
        return [
            [tuple(row) for row in conn.execute(select(table))]
            for table in (rollouts, releases, traffic_plans, rollout_configs, api_tokens)
        ]


@pytest.fixture
def default_policy(home: DemoHome, tmp_path: Path) -> DemoHome:
    path = tmp_path / "default-environments.yaml"
    path.write_text(DEFAULT_POLICY)
    return replace(home, settings=replace(home.settings, environments_file=path))


@pytest.fixture
def every_denial_its_own_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every caller here has one address (127.0.0.1), which gets its own row for at most
    DENIALS_PER_ADDRESS distinct denials a window (the rest are counted in a summary); lift that
    limit so each distinct denial can be checked by its row. The deduplication of identical
    denials stays as it is."""
    monkeypatch.setattr("rollout.api.Denials", functools.partial(Denials, per_address=100_000))


def run_matrix(home: DemoHome, store_url: str) -> None:
    manager = Manager(replace(home.settings, store_url=store_url))
    try:
        assert manager.environment_names == ENVIRONMENTS
        assert manager.environments.get("prod").approval_required
        _run(manager, home)
    finally:
        manager.close()


def _run(manager: Manager, home: DemoHome) -> None:
    text = ",".join(
        f"{head}={hashlib.sha256(secret(identity).encode()).hexdigest()}"
        for identity, head in TOKENS.items()
    )
    app = create_app(manager, parse_tokens(text))
    v1 = home.versions["baseline"]
    began = time.monotonic()
    with serving(app) as client:
        # A rollout per environment for report and looks: a first release succeeds at once.
        rollout_ids: dict[str, str] = {}
        for env in ENVIRONMENTS:
            body = {"model": MODEL, "candidate": v1, "environment": env, "spec": INSTANT}
            started = client.post("/v1/rollouts", json=body, headers=headers("admin"))
            assert started.status_code == 201, started.text
            rollout_ids[env] = started.json()["id"]
            assert started.json()["state"] == "succeeded", started.json()
        before = snapshot(manager)

        matrix = cases(rollout_ids)
        # Every route of the OpenAPI has rows (a route added later without them fails here),
        # and so does every verb of the verb route.
        openapi = client.get("/openapi.json").json()["paths"]
        documented = {
            (method.upper(), path) for path, operations in openapi.items() for method in operations
        }
        assert {case.route for case in matrix} == documented - EXCLUDED_ROUTES
        verb_route = ("POST", f"{ENV_PATH}/{{verb}}")
        (verbs,) = (
            param["schema"]["enum"]
            for param in openapi[verb_route[1]]["post"]["parameters"]
            if param["name"] == "verb"
        )
        assert {case.path.rsplit("/", 1)[1] for case in matrix if case.route == verb_route} == set(
            verbs
        )

        mismatches: list[tuple[str, str, str, str | None, str, int, str]] = []
        denied_keys: set[tuple[str, str, str, int]] = set()  # (identity, verb, path, status)
        denied_calls = 0
        for case in matrix:
            for caller in CALLERS:
                reply = client.request(
                    case.method,
                    case.path,
                    json=case.body,
                    params=case.params,
                    headers=headers(caller),
                )
                status = reply.status_code
                anonymous = caller in (NO_TOKEN, WRONG_TOKEN)
                if anonymous:
                    expected = "401 unauthenticated"
                    ok = status == 401 and reply.json()["error_code"] == "unauthenticated"
                elif case.allowed(caller):
                    expected = "allowed"
                    ok = status not in (401, 403) and status < 500
                elif case.hidden_from(caller):
                    # a rollout outside the token's environments is as unknown as a made-up id
                    expected = "404 not_found"
                    ok = status == 404 and reply.json() == {
                        "error_code": "not_found",
                        "message": f"no rollout with id {case.path.split('/')[3]!r}",
                    }
                else:
                    expected = "403 forbidden"
                    payload = reply.json() if status == 403 else {}
                    ok = (
                        status == 403
                        and payload.get("error_code") == "forbidden"
                        and str(payload.get("message", "")).startswith(f"{caller} may not ")
                    )
                if not ok:
                    mismatches.append(
                        (caller, case.method, case.path, case.environment, expected, status,
                         reply.text[:200])
                    )  # fmt: skip
                if case.audit_verb is not None and status in (401, 403):
                    identity = "anonymous" if anonymous else caller
                    denied_keys.add((identity, case.audit_verb, case.path, status))
                    denied_calls += 1
        print(
            f"\nauthorization matrix: {len(matrix)} calls x {len(CALLERS)} callers = "
            f"{len(matrix) * len(CALLERS)} cases, {denied_calls} denied mutating calls "
            f"({len(denied_keys)} distinct), {time.monotonic() - began:.1f} s"
        )
        assert mismatches == [], "\n".join(map(str, mismatches))
        assert snapshot(manager) == before, "an allowed call changed the store"

        # Every denied mutating call has its row: one per distinct (identity, verb, path,
        # status) within the window, the repeats counted into a summary row when it closes.
        rows = client.get("/v1/audit", params={"limit": 10_000}, headers=headers("admin")).json()
        denied_rows = [row for row in rows if row["outcome"] == "denied"]
        env_verbs = {"pause", "resume", "abort", "promote", "approve", "rollback"}
        assert Counter(
            (r["identity"], r["verb"], r["status_code"],
             r["environment"] if r["verb"] in env_verbs else None)
            for r in denied_rows
        ) == Counter(
            (identity, verb, status,
             path.split("/")[5] if verb in env_verbs else None)
            for identity, verb, path, status in denied_keys
        )  # fmt: skip
        assert {(r["address"], r["count"]) for r in denied_rows} == {("127.0.0.1", 1)}
        assert all(not r["detail"].get("suppressed") for r in denied_rows)
        assert client.get("/v1/audit/verify", headers=headers("admin")).json()["ok"] is True

    # Once the API stops, the repeats' summary rows are written: every denial is counted.
    counted = sum(row.count for row in manager.audit.list(limit=100_000) if row.outcome == "denied")
    assert counted == denied_calls


@pytest.mark.usefixtures("every_denial_its_own_row")
def test_every_endpoint_for_every_role(default_policy: DemoHome, store_url: str) -> None:
    """The whole matrix on SQLite and PostgreSQL (a second or two each): the store's tokens,
    audit log and rollouts are read the same way on both."""
    run_matrix(default_policy, store_url)
