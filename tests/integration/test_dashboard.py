"""The web dashboard over real HTTP on loopback: a real manager on the demo's MLflow registry,
a SQLite store, store tokens with their roles, a waiting canary with logged requests.

Role-based buttons (the API's own permission table), the CSRF refusal, a revoked token ending
the session, bad input answered without a 500, and the pages of a finished rollout after
retention pruned its prediction rows.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

import httpx
import pytest
import yaml
from scipy.stats import ks_2samp
from sqlalchemy import delete, func, select

from conftest import MODEL, DemoHome, LogWriter, serving
from contract.records import PredictionRecord
from contract.sql.engine import open_engine
from contract.sql.schema import audit_log, dashboard_sessions, predictions, rollout_samples
from rollout.api import create_app
from rollout.manager import Manager
from rollout.spec import load_spec
from rollout.store import page_samples as sample_module
from rollout.store.page_samples import (
    drop_old_samples,
    keep_finished_samples,
    kept_sample,
    sample,
)
from rollout.store.tokens import TokenStore
from rollout.tokens import issue, revoke
from rollout.web.sessions import (
    COOKIE,
    IDLE_S,
    MAX_AGE_S,
    TOUCH_EVERY_S,
    Sessions,
    csrf_matches,
)

# A 10% step that waits (at most 5000 requests): the rollout stays active while we look.
WAITING = load_spec(
    yaml.safe_load(
        """
        strategy: {canary: {steps: [{weight: 10, min_requests: 50, max_requests: 5000}]}}
        analysis:
          gates:
            - error_rate: {max_increase: 0.2}
            - latency: {quantile: 0.9, max_ratio: 3.0}
        """
    )
)
ENVIRONMENTS = (
    "environments: [dev, staging, "
    "{name: prod, approval: {required: false}, retention: {days: 1}}]\n"
)
CANARY_BATCHES, BASELINE_BATCHES = (20, 40), (180, 360)  # two looks' worth of requests
ROLE_BUTTONS = {
    "viewer": set(),
    "deployer": {"pause", "resume", "promote", "abort", "rollback"},
    "approver": {"approve"},
    "admin": {"pause", "resume", "promote", "approve", "abort", "rollback"},
}


def requests(
    rollout_id: str, arm: str, version: str, n: int, shift: float
) -> list[PredictionRecord]:
    """``n`` requests of one arm with one feature row each (``x`` shifted by ``shift``), every
    tenth canary request a failure."""
    out = []
    for i in range(n):
        failed = arm == "canary" and i % 10 == 0
        value = (i % 17) / 17 + shift
        out.append(
            PredictionRecord(
                request_id=uuid.uuid4().hex, ts=time.time(), environment="prod", model=MODEL,
                version=version, arm=arm, rollout_id=rollout_id, plan_generation=1,
                features=json.dumps([{"x": value, "y": i % 3}]),
                output=None if failed else json.dumps([value * 2]),
                latency_ms=10.0 + (i % 7) + (5 if arm == "canary" else 0),
                error="boom" if failed else None, status_code=500 if failed else 200,
            )
        )  # fmt: skip
    return out


@dataclass
class Site:
    manager: Manager
    client: httpx.Client
    rollout_id: str
    tokens: dict[str, str]  # role → token
    store: TokenStore


@pytest.fixture
def site(home: DemoHome) -> Iterator[Site]:
    assert home.settings.environments_file is not None
    home.settings.environments_file.write_text(ENVIRONMENTS)
    manager = Manager(home.settings)
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, v1, "prod", actor="alice")
    rollout_id = manager.start(MODEL, v2, "prod", WAITING, actor="alice")
    writer = LogWriter(manager.engine)
    for canary, baseline in zip(CANARY_BATCHES, BASELINE_BATCHES, strict=True):
        writer.write(requests(rollout_id, "canary", v2, canary, 0.5))
        writer.write(requests(rollout_id, "baseline", v1, baseline, 0.0))
        assert manager.tick() == []  # undecided: the step waits, a look is kept
    store = TokenStore(manager.engine)
    tokens = {
        role: issue(store, f"{role}-1", [role], None, "1d", "test").token for role in ROLE_BUTTONS
    }
    with serving(create_app(manager, tokens={}, token_store=store)) as client:
        yield Site(manager, client, rollout_id, tokens, store)
    manager.close()


def values(records: list[PredictionRecord], name: str) -> list[float]:
    """A feature's values over the successful requests (the page's sample leaves failures
    out of the distributions)."""
    return [json.loads(r.features or "[]")[0][name] for r in records if r.error is None]


def login(client: httpx.Client, token: str) -> httpx.Response:
    client.cookies.clear()
    return client.post("/ui/login", data={"token": token})


def buttons(html: str) -> set[str]:
    return set(re.findall(r'id="btn-(\w+)"', html))


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF token in the page"
    return found[1]


def test_login_sets_a_strict_httponly_cookie_and_pages_need_it(site: Site) -> None:
    client = site.client
    assert client.get("/").headers["location"] == "/ui/"
    anonymous = client.get("/ui/")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/ui/login")
    response = login(client, site.tokens["viewer"])
    assert response.status_code == 303 and response.headers["location"] == "/ui/"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    assert site.tokens["viewer"] not in response.headers["set-cookie"]
    overview = client.get("/ui/")
    assert overview.status_code == 200
    row = re.search(r"<td>prod</td>.*?</tr>", overview.text, re.S)
    assert row is not None
    assert f'/ui/rollouts/{site.rollout_id}"' in row[0]
    assert "progressing" in row[0] and "10%" in row[0]
    # the last verdict is the newest look's over its blocking gates; alpha the spec's default
    newest = site.manager.looks(site.rollout_id)[-1]
    blocking = {gate.verdict for gate in newest.gates if gate.blocking}
    verdict = "fail" if "fail" in blocking else "pass" if blocking == {"pass"} else "inconclusive"
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row[0])
    assert cells[-2:] == [verdict, "0.05"]
    assert '<meta http-equiv="refresh" content="5">' in overview.text  # a rollout is running
    policy = overview.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy


def test_buttons_are_those_the_roles_may_use(site: Site) -> None:
    for role, expected in ROLE_BUTTONS.items():
        login(site.client, site.tokens[role])
        page = site.client.get(f"/ui/rollouts/{site.rollout_id}")
        assert page.status_code == 200
        assert buttons(page.text) == expected, role


def test_the_rollout_page_draws_its_evidence(site: Site) -> None:
    login(site.client, site.tokens["viewer"])
    page = site.client.get(f"/ui/rollouts/{site.rollout_id}").text
    for figure in ("plot-gates", "plot-traffic", "plot-arms", "plot-distributions"):
        assert re.search(rf'<figure id="{figure}">\s*<svg', page), figure
    assert "error_rate" in page and "latency" in page  # the gates' panels and table
    # the sample: 60 canary requests, 6 of them failed; 540 baseline ones, none failed
    arms = re.search(r'<table id="arms">(.*?)</table>', page, re.S)
    assert arms is not None
    assert re.search(r"<td>canary</td><td>60</td><td>0\.1 \[", arms[1])
    assert re.search(r"<td>baseline</td><td>540</td><td>0 \[", arms[1])
    # features compared on the same sample: x moved by 0.5 (KS as scipy computes it); y, a
    # handful of values alike in both arms, by chi-square: no distance, not flagged
    base = [r for n in BASELINE_BATCHES for r in requests("r", "baseline", "1", n, 0.0)]
    cand = [r for n in CANARY_BATCHES for r in requests("r", "canary", "2", n, 0.5)]
    x = ks_2samp(values(base, "x"), values(cand, "x"))
    shown = re.findall(
        r"<tr><td>(\w+)</td><td>(\w+)</td><td>([0-9.]+)</td><td>([^<]+)</td><td>[^<]+</td>"
        r"<td>(drifted|-)</td>",
        page,
    )
    assert [(name, test, flag) for name, test, _, _, flag in shown] == [
        ("x", "ks", "drifted"),
        ("y", "chi_square", "-"),
    ]
    assert float(shown[0][2]) == pytest.approx(x.statistic, abs=5e-4)
    assert float(shown[0][3]) == pytest.approx(x.pvalue, rel=0.05)  # shown to 2 digits
    assert float(shown[1][2]) == 0.0
    assert re.search(r"Feature drift: <strong>1 of 2</strong> features flagged", page)
    assert "Flagged by chance at these sizes (20 deals of the same rows)" in page
    assert f'href="/ui/rollouts/{site.rollout_id}/drift-report"' in page


def test_the_drift_report_is_served_sandboxed_to_a_session(site: Site) -> None:
    client, path = site.client, f"/ui/rollouts/{site.rollout_id}/drift-report"
    assert client.get(path).status_code == 303  # no session: log in first
    login(client, site.tokens["viewer"])
    folder = site.manager.evidence.reports / site.rollout_id
    for stale in folder.glob("*.html") if folder.is_dir() else ():
        stale.unlink()  # the manager may have written one already: start from none
    none = client.get(path)
    assert none.status_code == 404 and "has no drift report" in none.text
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "step-1-100.html").write_text("<p>older</p>")
    (folder / "step-1-200.html").write_text("<p>newest</p>")
    report = client.get(path)
    assert report.status_code == 200 and report.text == "<p>newest</p>"
    assert report.headers["content-security-policy"] == "sandbox allow-scripts"


def test_a_post_needs_the_sessions_csrf_token_and_a_role_that_may(site: Site) -> None:
    client, path = site.client, f"/ui/models/{MODEL}/environments/prod/pause"
    login(client, site.tokens["viewer"])
    viewer_csrf = csrf(client.get(f"/ui/rollouts/{site.rollout_id}").text)
    refused = client.post(path, data={"csrf": viewer_csrf})
    assert refused.status_code == 403 and "may not pause in prod" in refused.text
    login(client, site.tokens["deployer"])
    good = csrf(client.get(f"/ui/rollouts/{site.rollout_id}").text)
    for data in ({}, {"csrf": "forged"}, {"csrf": viewer_csrf}):
        response = client.post(path, data=data)
        assert response.status_code == 403 and "CSRF" in response.text
    assert site.manager.rollout(site.rollout_id).state == "progressing"
    done = client.post(path, data={"csrf": good, "reason": "looks odd"})
    assert done.status_code == 303
    assert done.headers["location"] == f"/ui/rollouts/{site.rollout_id}"
    assert site.manager.rollout(site.rollout_id).state == "paused"
    rows = site.manager.audit.list(model=MODEL, limit=5)
    verbs = [(row.verb, row.identity, row.outcome) for row in rows if row.verb == "pause"]
    assert verbs == [("pause", "deployer-1", "allowed"), ("pause", "viewer-1", "denied")]
    assert json.loads(rows[0].detail)["via"] == "dashboard"
    assert buttons(client.get(done.headers["location"]).text) == ROLE_BUTTONS["deployer"]


def test_a_revoked_token_ends_the_session(site: Site) -> None:
    client = site.client
    login(client, site.tokens["deployer"])
    assert client.get("/ui/").status_code == 200
    revoke(site.store, "deployer-1", "test")
    gone = client.get("/ui/")
    assert gone.status_code == 303 and gone.headers["location"].startswith("/ui/login")
    assert client.get(f"/ui/rollouts/{site.rollout_id}").status_code == 303
    assert login(client, site.tokens["deployer"]).status_code == 401


def test_sessions_are_in_the_store_for_every_api_process(site: Site) -> None:
    """A second API process on the same store (or the same one restarted) knows a session made
    on the first; logging out on it ends the session on both; the store holds only digests."""
    client = site.client
    token = site.tokens["viewer"]
    login(client, token)
    session_id = client.cookies.get(COOKIE)
    assert session_id is not None and client.get("/ui/").status_code == 200
    with serving(create_app(site.manager, tokens={}, token_store=site.store)) as other:
        other.cookies.set(COOKIE, session_id)
        page = other.get("/ui/")
        assert page.status_code == 200 and "viewer-1" in page.text
        with site.manager.engine.connect() as conn:
            (row,) = conn.execute(select(dashboard_sessions)).all()
        sha = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
        assert (row.id_sha256, row.token_sha256) == (sha(session_id), sha(token))
        assert not {session_id, token} & {str(value) for value in row}  # digests only
        assert other.post("/ui/logout", data={"csrf": csrf(page.text)}).status_code == 303
    ended = client.get("/ui/")
    assert ended.status_code == 303 and ended.headers["location"].startswith("/ui/login")


def test_sessions_expire_when_idle_and_keep_at_most_their_bound(store_url: str) -> None:
    engine = open_engine(store_url)
    try:
        sessions = Sessions(engine, max_sessions=2)
        first, session = sessions.create("tok-1", now=0.0)
        assert sessions.get(first, now=TOUCH_EVERY_S - 1) == session  # use not written yet
        touched = sessions.get(first, now=IDLE_S - 1)
        assert touched is not None and (touched.used_at, touched.csrf) == (IDLE_S - 1, session.csrf)
        assert sessions.get(first, now=IDLE_S - 1 + IDLE_S / 2) is not None  # idle from its use
        assert sessions.get(first, now=18 * 3600.0) is not None  # used 6 h 1 s before
        assert sessions.get(first, now=MAX_AGE_S + 1) is None  # idle 6 h, but too old in all
        assert len(sessions) == 0
        ids = [sessions.create(f"tok-{i}", now=float(i))[0] for i in range(3)]
        assert len(sessions) == 2 and sessions.get(ids[0], now=3.0) is None  # least recent
        assert all(sessions.get(i, now=3.0) is not None for i in ids[1:])
        sessions.end(ids[1])
        assert sessions.get(ids[1], now=3.0) is None and len(sessions) == 1
        assert sessions.get("x" * 65, now=3.0) is None and sessions.get(None, now=3.0) is None
        assert csrf_matches(session, session.csrf) and not csrf_matches(session, "forged")
        assert not csrf_matches(session, None)
    finally:
        engine.dispose()


def test_bad_input_is_named_never_a_500(site: Site) -> None:
    client = site.client
    assert client.post("/ui/login", data={"token": ""}).status_code == 422
    assert client.post("/ui/login", data={"token": "x" * 600}).status_code == 422
    unknown = client.post("/ui/login", data={"token": "rlt_nope"})
    assert unknown.status_code == 401 and "unknown, expired or revoked token" in unknown.text
    elsewhere = issue(site.store, "dev-viewer", ["viewer"], ["dev"], "1d", "test").token
    login(client, elsewhere)
    hidden = client.get(f"/ui/rollouts/{site.rollout_id}")
    assert hidden.status_code == 404 and f"no rollout with id {site.rollout_id!r}" in html.unescape(
        hidden.text
    )  # as the API answers: such a token cannot tell which ids exist elsewhere
    assert "<td>prod</td>" not in client.get("/ui/").text
    login(client, site.tokens["admin"])
    missing = client.get("/ui/rollouts/no-such-rollout")
    assert missing.status_code == 404 and "no-such-rollout" in missing.text
    good = csrf(client.get("/ui/").text)
    verb = client.post(f"/ui/models/{MODEL}/environments/prod/explode", data={"csrf": good})
    assert verb.status_code == 404 and "verb: expected one of" in verb.text
    big = client.post(
        f"/ui/models/{MODEL}/environments/prod/pause", data={"csrf": good, "reason": "r" * 20_000}
    )
    assert big.status_code == 413
    assert site.manager.rollout(site.rollout_id).state == "progressing"


def test_a_finished_rollouts_pages_render_after_its_rows_are_pruned(site: Site) -> None:
    manager = site.manager
    login(site.client, site.tokens["deployer"])
    good = csrf(site.client.get("/ui/").text)
    aborted = site.client.post(
        f"/ui/models/{MODEL}/environments/prod/abort", data={"csrf": good, "reason": "enough"}
    )
    assert aborted.status_code == 303
    assert manager.rollout(site.rollout_id).state != "progressing"
    manager.tick()
    before = site.client.get(f"/ui/rollouts/{site.rollout_id}").text  # drawn from the rows
    pruned = manager.prune(now=time.time() + 3 * 86_400, budget_s=5.0)
    assert pruned.rows == 600
    with manager.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(predictions)).scalar() == 0
        kept = conn.execute(select(rollout_samples.c.rollout_id)).scalars().all()
    assert site.rollout_id in kept  # the prune kept the finished rollouts' samples first
    page = site.client.get(f"/ui/rollouts/{site.rollout_id}")
    assert page.status_code == 200
    assert re.search(r'<figure id="plot-gates">\s*<svg', page.text)
    # the distributions, the per-arm table and the drift table, from the kept sample
    assert 'id="kept-sample"' in page.text and 'id="pruned"' not in page.text
    assert re.search(r'<figure id="plot-distributions">\s*<svg', page.text)
    table = re.compile(r'<table id="arms">.*?</table>', re.S)
    assert table.search(page.text).group(0) == table.search(before).group(0)  # type: ignore[union-attr]
    drifted = re.compile(r'<table id="drifted">.*?</table>', re.S)
    assert drifted.search(page.text) is not None and drifted.search(before) is not None
    with manager.engine.begin() as conn:  # without a kept sample: the page says so
        conn.execute(delete(rollout_samples))
    page = site.client.get(f"/ui/rollouts/{site.rollout_id}")
    assert 'id="pruned"' in page.text and "plot-distributions" not in page.text
    assert "<meta http-equiv" not in page.text  # finished: no refresh
    assert buttons(page.text) == {"rollback"}
    model = site.client.get(f"/ui/models/{MODEL}")
    assert model.status_code == 200
    assert f'class="release-rollout" href="/ui/rollouts/{site.rollout_id}"' in model.text


def test_the_audit_page_verifies_the_chain(site: Site) -> None:
    login(site.client, site.tokens["viewer"])
    page = site.client.get("/ui/audit")
    assert page.status_code == 200
    assert "The chain verifies" in page.text
    # a row changed behind the log's back: the next view of the page says where
    rows = site.manager.audit.list(limit=1_000)
    assert rows, "the rollouts' transitions are audited"
    oldest = rows[-1]
    with site.manager.engine.begin() as conn:
        conn.execute(
            audit_log.update().where(audit_log.c.id == oldest.id).values(identity="mallory")
        )
    broken = site.client.get("/ui/audit").text
    assert f"The chain is BROKEN at row {oldest.id}" in broken


def test_the_rollout_page_shows_its_spec(site: Site) -> None:
    login(site.client, site.tokens["viewer"])
    page = site.client.get(f"/ui/rollouts/{site.rollout_id}").text
    spec = re.search(r'<pre id="spec">(.*?)</pre>', page, re.S)
    assert spec is not None
    shown = json.loads(html.unescape(spec[1]))
    assert shown == json.loads(site.manager.rollout(site.rollout_id).spec)
    assert shown["strategy"]["canary"]["steps"][0]["weight"] == 10


def test_kept_samples_are_bounded_taken_once_and_read_back(
    home: DemoHome, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """:func:`keep_finished_samples` on SQLite and PostgreSQL: only finished rollouts, each
    once (a second pass keeps nothing), at most ``limit`` a pass, feature rows cut to
    ``KEPT_FEATURE_ROWS`` per arm, and :func:`kept_sample` gives back what was sampled."""
    settings = replace(home.settings, store_url=store_url)
    manager = Manager(settings)
    try:
        v1, v2 = home.versions["baseline"], home.versions["better"]
        manager.start(MODEL, v1, "prod", actor="alice")  # a first release: finished at once
        rollout_id = manager.start(MODEL, v2, "prod", WAITING, actor="alice")
        writer = LogWriter(manager.engine)
        writer.write(requests(rollout_id, "canary", v2, 40, 0.5))
        writer.write(requests(rollout_id, "baseline", v1, 30, 0.0))
        since = lambda rid: 0.0  # noqa: E731 - every row
        assert keep_finished_samples(manager.engine, since, 1.0) == 1  # not the active one
        manager.abort(MODEL, "prod", "alice", "enough")
        monkeypatch.setattr(sample_module, "KEPT_FEATURE_ROWS", 10)
        assert keep_finished_samples(manager.engine, since, 2.0, limit=1) == 1
        assert keep_finished_samples(manager.engine, since, 3.0) == 0  # each once
        kept = kept_sample(manager.engine, rollout_id)
        assert kept is not None
        taken_at, taken = kept
        live = sample(manager.engine, rollout_id, 0.0)
        assert taken_at == 2.0
        for arm in ("baseline", "canary"):
            assert taken[arm].latencies_ms == live[arm].latencies_ms
            assert taken[arm].errors == live[arm].errors
            assert taken[arm].outputs == pytest.approx(live[arm].outputs, rel=1e-6)  # 7 digits
            assert len(taken[arm].features) == 10
            for got, row in zip(taken[arm].features, live[arm].features, strict=False):
                assert got == pytest.approx(row, rel=1e-6)
        assert (taken["canary"].n, taken["canary"].errors) == (40, 4)
        assert kept_sample(manager.engine, "r-none") is None
        # Only the newest samples stay: the first release's (taken at 1.0) is dropped, its row
        # kept empty, so it is not taken again; the rollout's (2.0) stays.
        assert drop_old_samples(manager.engine, keep=1) == 1
        assert drop_old_samples(manager.engine, keep=1) == 0
        with manager.engine.connect() as conn:
            query = select(rollout_samples.c.rollout_id, rollout_samples.c.body)
            bodies = {row.rollout_id: row.body for row in conn.execute(query)}
        assert len(bodies) == 2 and bodies[rollout_id] != ""
        (first,) = [rid for rid, body in bodies.items() if body == ""]
        assert kept_sample(manager.engine, first) is None
        assert kept_sample(manager.engine, rollout_id) == kept
        assert keep_finished_samples(manager.engine, since, 4.0) == 0
    finally:
        manager.close()
