"""Limits on every input of the API, and separation of duties, through the real API (uvicorn
on loopback) on the demo MLflow registry: issue 11's attacks 2, 3, 4 and 7 as regressions."""

from __future__ import annotations

import json
import os
import socket
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import MODEL, DemoHome, serving, wait_until
from rollout.api import create_app
from rollout.auth import parse_tokens
from rollout.cli import main as cli
from rollout.manager import Manager
from rollout.settings import DEFAULT_MAX_BODY_BYTES

INSTANT = {
    "strategy": {"canary": {"steps": [{"weight": 100, "min_requests": 0}]}},
    "analysis": {"gates": "none"},
}
# a canary that waits at its first step (nothing drives traffic here)
HOLDING = {
    "strategy": {
        "canary": {
            "steps": [{"weight": 10, "min_requests": 10_000}, {"weight": 100, "min_requests": 0}]
        }
    },
    "analysis": {"gates": "none"},
}
PEOPLE = {
    "vic": "vic:viewer",
    "dee": "dee:deployer",
    "dan": "dan:deployer",
    "ann": "ann:approver",
    "amy": "amy:approver",
    "root": "root:admin",
}
TOKENS = ",".join(
    f"{entry}={__import__('hashlib').sha256(f'{name}-secret'.encode()).hexdigest()}"
    for name, entry in PEOPLE.items()
)
PROD = f"/v1/models/{MODEL}/environments/prod"


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}-secret"}


@pytest.fixture
def api(home: DemoHome, tmp_path: Path) -> Iterator[tuple[Manager, httpx.Client]]:
    settings = replace(
        home.settings,
        smoke_payload_dir=tmp_path / "payloads",
        api_watch_streams=4,
        api_watch_max_s=3.0,
    )
    (tmp_path / "payloads").mkdir()
    manager = Manager(settings)
    try:
        with serving(create_app(manager, parse_tokens(TOKENS))) as client:
            yield manager, client
    finally:
        manager.close()


def raw_request(client: httpx.Client, head: str) -> tuple[int, dict[str, Any], float]:
    """Send only ``head`` (request line and headers) on a fresh connection; the status, the
    JSON body and the seconds until the whole reply came back."""
    url = client.base_url
    started = time.perf_counter()
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    seconds = time.perf_counter() - started
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.partition(b"\r\n\r\n")[2]), seconds


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def audit_rows(client: httpx.Client) -> list[dict[str, Any]]:
    rows = client.get("/v1/audit", params={"limit": 1000}, headers=auth("vic"))
    assert rows.status_code == 200, rows.text
    result: list[dict[str, Any]] = rows.json()
    return result


# -- attack 7: unbounded inputs --


def test_a_53_mb_anonymous_body_is_refused_before_it_is_sent(
    api: tuple[Manager, httpx.Client],
) -> None:
    """The API parsed a 53.7 MB anonymous body before its 401. Now the Content-Length alone
    is refused: the reply comes although not one byte of the body was sent."""
    _manager, client = api
    status, body, seconds = raw_request(
        client,
        "POST /v1/apply HTTP/1.1\nHost: api\nContent-Type: application/json\n"
        "Content-Length: 56300000\n",
    )
    assert (status, body) == (
        413,
        {
            "error_code": "body_too_large",
            "message": f"the request body may be at most {DEFAULT_MAX_BODY_BYTES} bytes",
        },
    )
    assert seconds < 2.0
    assert client.get("/healthz").json() == {"status": "ok"}


def test_a_12_mb_spec_from_a_viewer_leaves_no_12_mb_audit_row(
    api: tuple[Manager, httpx.Client],
) -> None:
    _manager, client = api
    status, body, _seconds = raw_request(
        client,
        "POST /v1/apply HTTP/1.1\nHost: api\nAuthorization: Bearer vic-secret\n"
        "Content-Type: application/json\nContent-Length: 12000000\n",
    )
    assert (status, body["error_code"]) == (413, "body_too_large")
    assert all(len(json.dumps(row)) < 2000 for row in audit_rows(client))


def test_the_token_and_the_role_are_checked_before_the_body_is_parsed(
    api: tuple[Manager, httpx.Client],
) -> None:
    """A body under the limit but invalid: anonymous → 401 and a viewer → 403, not the
    spec's 422 (the spec was validated before the role, and its echo stored)."""
    _manager, client = api
    junk = b'{"spec": {"model": "' + b"x" * 900_000 + b'", "strategy": 1'  # not even JSON
    anonymous = client.post("/v1/apply", content=junk)
    assert (anonymous.status_code, anonymous.json()["error_code"]) == (401, "unauthenticated")
    viewer = client.post("/v1/apply", content=junk, headers=auth("vic"))
    assert viewer.status_code == 403
    assert viewer.json() == {
        "error_code": "forbidden",
        "message": "vic may not apply in any of its environments: needs role scientist or "
        "deployer or admin, has viewer",
    }
    started = client.post("/v1/rollouts", content=junk, headers=auth("ann"))
    assert started.status_code == 403
    assert started.json()["message"].startswith("ann may not start in any of its environments")
    denied = [row for row in audit_rows(client) if row["outcome"] == "denied"]
    assert sorted((row["identity"], row["verb"], row["status_code"]) for row in denied) == [
        ("ann", "start", 403),
        ("anonymous", "apply", 401),
        ("vic", "apply", 403),
    ]
    assert all(len(json.dumps(row)) < 2000 for row in audit_rows(client))


def test_names_and_reasons_are_bounded_before_they_reach_the_audit_log(
    api: tuple[Manager, httpx.Client],
) -> None:
    _manager, client = api
    huge = "m" * 500_000
    start = {"model": huge, "candidate": "1", "environment": "dev"}
    reply = client.post("/v1/rollouts", json=start, headers=auth("dee"))
    assert reply.status_code == 422
    assert reply.json()["message"].startswith("body.model: String should have at most 200 ")
    reply = client.post(f"{PROD}/abort", json={"reason": huge}, headers=auth("dee"))
    assert reply.status_code == 422
    assert reply.json()["message"].startswith("body.reason: String should have at most 1000 ")
    assert all(len(json.dumps(row)) < 2000 for row in audit_rows(client))


def test_a_huge_invalid_spec_is_quoted_in_a_short_excerpt(
    api: tuple[Manager, httpx.Client],
) -> None:
    _manager, client = api
    spec = {"model": MODEL, "environment": "dev", "candidate": "x" * 900_000, "strategy": {}}
    reply = client.post("/v1/apply", json={"spec": spec}, headers=auth("dee"))
    assert reply.status_code == 422, reply.text
    assert reply.json()["error_code"] == "invalid_spec"
    assert len(reply.text) < 1500
    assert "xxx... (cut)" in reply.json()["message"]
    assert all(len(json.dumps(row)) < 3000 for row in audit_rows(client))


@pytest.mark.parametrize(
    "body",
    [
        b'{"spec": ' + b"[" * 300_000 + b"]" * 300_000 + b"}",  # RecursionError in json
        json.dumps(
            {"spec": {"strategy": __import__("functools").reduce(lambda a, _: [a], range(60), 1)}}
        ).encode(),
        b'{"spec": {"strategy": NaN',
    ],
    ids=["deep-json", "deep-spec", "broken-json"],
)
def test_deep_or_broken_json_is_a_422_naming_the_problem(
    api: tuple[Manager, httpx.Client], body: bytes
) -> None:
    _manager, client = api
    reply = client.post("/v1/plan", content=body, headers=auth("dee"))
    assert reply.status_code == 422, reply.text
    assert reply.json()["error_code"] == "invalid_request"
    assert reply.json()["message"].startswith("body: ")
    assert "nested more than 32 levels deep" in reply.text or "expected a JSON object" in (
        reply.text
    )


def test_a_command_body_is_read_only_after_the_environment_check(
    api: tuple[Manager, httpx.Client],
) -> None:
    _manager, client = api
    reply = client.post(f"{PROD}/pause", content=b"{broken", headers=auth("ann"))
    assert reply.status_code == 403  # ann may not pause: the broken body was never parsed
    unknown = client.post(f"{PROD}/frobnicate", content=b"{}", headers=auth("dee"))
    assert unknown.status_code == 422
    assert unknown.json()["error_code"] == "invalid_request"


# -- attack 3: payload_file --


def test_payload_file_outside_the_directory_or_a_fifo_is_refused_at_once(
    api: tuple[Manager, httpx.Client], home: DemoHome, tmp_path: Path
) -> None:
    """A FIFO as payload_file blocked the API thread and the manager loop, and the error was a
    file oracle ('No such file' vs 'Expecting value' for /etc/shadow)."""
    manager, client = api
    payloads = tmp_path / "payloads"
    os.mkfifo(payloads / "fifo.json")
    messages = []
    for name in ("fifo.json", "/etc/shadow", "/etc/no-such-file", "../payloads/nope.json"):
        spec = {**INSTANT, "smoke_tests": [{"payload_file": name}]}
        body = {"model": MODEL, "candidate": home.versions["baseline"], "environment": "dev"}
        started = time.perf_counter()
        reply = client.post("/v1/rollouts", json={**body, "spec": spec}, headers=auth("dee"))
        assert time.perf_counter() - started < 5.0
        assert reply.status_code == 422, reply.text
        assert reply.json()["error_code"] == "invalid_spec"
        messages.append(reply.json()["message"].replace(repr(name), "NAME"))
    assert len(set(messages)) == 1
    assert messages[0] == (
        "smoke_tests[0].payload_file: NAME is not a readable regular file in the payload "
        f"directory {payloads} (ROLLOUT_SMOKE_PAYLOAD_DIR; name files relative to it)"
    )
    assert manager.history(MODEL, "dev") == []  # nothing was started
    (payloads / "ok.json").write_text(json.dumps({"inputs": [[1.0]]}))
    spec = {**INSTANT, "smoke_tests": [{"payload_file": "ok.json"}]}
    body = {"model": MODEL, "candidate": home.versions["baseline"], "environment": "dev"}
    reply = client.post("/v1/rollouts", json={**body, "spec": spec}, headers=auth("dee"))
    assert reply.status_code == 201, reply.text


# -- attack 2: watch streams --


def test_watch_intervals_outside_bounds_are_422(api: tuple[Manager, httpx.Client]) -> None:
    _manager, client = api
    for interval in ("1e9", "31", "0.01", "nan", "inf", "-1"):
        reply = client.get(
            f"{PROD}/status", params={"watch": "true", "interval_s": interval}, headers=auth("vic")
        )
        assert reply.status_code == 422, (interval, reply.text)
        assert reply.json()["error_code"] == "invalid_request"
        assert reply.json()["message"].startswith("query.interval_s: ")


def _hold_a_rollout(manager: Manager, client: httpx.Client, home: DemoHome) -> None:
    """v1 serving in prod and v2's canary waiting at its first step (active)."""
    for version, spec in ((home.versions["baseline"], INSTANT), (home.versions["better"], HOLDING)):
        body = {"model": MODEL, "candidate": version, "environment": "prod", "spec": spec}
        reply = client.post("/v1/rollouts", json=body, headers=auth("dee"))
        assert reply.status_code == 201, reply.text
    wait_until(
        lambda: (manager.tick(), manager.status(MODEL, "prod").rollout)[1],
        "the canary progressing",
        until=lambda record: record is not None and record.state == "progressing",
    )


def test_45_viewer_streams_with_the_longest_interval_leave_healthz_fast(
    home: DemoHome,
) -> None:
    """45 viewer streams at interval_s=1e9 parked 45 threads for ever and /healthz timed out.
    Now the longest interval is 30 s and a stream waits on the event loop."""
    manager = Manager(replace(home.settings, api_watch_streams=64))
    try:
        with serving(create_app(manager, parse_tokens(TOKENS))) as client:
            _hold_a_rollout(manager, client, home)
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
            with (
                httpx.Client(base_url=client.base_url, limits=limits, timeout=10) as viewer,
                ExitStack() as streams,
            ):
                for _ in range(45):
                    stream = streams.enter_context(
                        viewer.stream(
                            "GET",
                            f"{PROD}/status",
                            params={"watch": "true", "interval_s": 30},
                            headers=auth("vic"),
                        )
                    )
                    assert stream.status_code == 200
                for path in ("/healthz", f"{PROD}/status", f"{PROD}/history"):
                    started = time.perf_counter()
                    reply = client.get(path, headers=auth("vic"), timeout=5)
                    assert reply.status_code == 200, reply.text
                    assert time.perf_counter() - started < 1.0, path
    finally:
        manager.close()


def test_watch_streams_are_capped_per_identity_and_end_by_themselves(
    api: tuple[Manager, httpx.Client], home: DemoHome
) -> None:
    manager, client = api
    _hold_a_rollout(manager, client, home)
    params = {"watch": "true", "interval_s": 30}
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=0)
    with httpx.Client(base_url=client.base_url, limits=limits, timeout=10) as viewer:
        with ExitStack() as streams:
            for _ in range(4):
                opened = streams.enter_context(
                    viewer.stream("GET", f"{PROD}/status", params=params, headers=auth("vic"))
                )
                assert opened.status_code == 200
            refused = viewer.get(f"{PROD}/status", params=params, headers=auth("vic"))
            assert refused.status_code == 429
            assert refused.json() == {
                "error_code": "too_many_streams",
                "message": "vic already has 4 watch stream(s) open (ROLLOUT_API_WATCH_STREAMS); "
                "close one first",
            }
            other = viewer.get(f"{PROD}/status", params=params, headers=auth("ann"))
            assert other.status_code == 200  # another identity has its own streams
        # the streams closed by the client are released
        wait_until(
            lambda: (
                viewer.get(
                    f"{PROD}/status", params={**params, "interval_s": 0.1}, headers=auth("vic")
                ).status_code
            ),
            "a stream slot again",
            until=lambda status: status == 200,
        )
        # and a stream nobody closes ends at ROLLOUT_API_WATCH_MAX_S (3 s here)
        started = time.perf_counter()
        lines = viewer.get(f"{PROD}/status", params=params, headers=auth("vic")).text
        assert 2.5 < time.perf_counter() - started < 6.0
        assert json.loads(lines.splitlines()[0])["rollout"]["state"] == "progressing"


# -- attack 4: separation of duties --


def test_a_second_deployer_cannot_force_a_prod_promotion_and_no_force_is_an_approval(
    home: DemoHome,
) -> None:
    """A second deployer's forced promote in prod counted as the approval and skipped the
    remaining steps (promoted with 0 canary requests). Prod now requires an approval by
    default; only approver or admin may force there, and a forced promote still waits for an
    approval from someone other than the starter."""
    manager = Manager(replace(home.settings, environments_file=None))  # the defaults
    try:
        with serving(create_app(manager, parse_tokens(TOKENS))) as client:
            _hold_a_rollout(manager, client, home)
            for who in ("dan", "dee"):
                forced = client.post(f"{PROD}/promote", headers=auth(who))
                assert forced.status_code == 403
                assert forced.json()["message"] == (
                    f"{who} may not promote in prod: it requires an approval, so only role "
                    "approver or admin may force a promotion there; has deployer"
                )
            forced = client.post(f"{PROD}/promote", json={"reason": "urgent"}, headers=auth("ann"))
            assert forced.status_code == 200, forced.text
            assert (forced.json()["state"], forced.json()["approved_by"]) == (
                "awaiting_approval",
                None,
            )
            again = client.post(f"{PROD}/promote", headers=auth("root"))
            assert again.status_code == 409  # a promote is not an approval
            assert client.post(f"{PROD}/approve", headers=auth("dan")).status_code == 403
            approved = client.post(f"{PROD}/approve", headers=auth("amy"))
            assert approved.status_code == 200, approved.text
            assert approved.json()["approved_by"] == "amy"
            wait_until(
                lambda: manager.tick() or manager.history(MODEL, "prod"),
                "the promotion",
                until=lambda history: len(history) == 2,
            )
            release = manager.history(MODEL, "prod")[0]
            assert (release.version, release.approved_by) == (home.versions["better"], "amy")
            reasons = [event.reason for event in manager.events(forced.json()["id"])]
            assert (
                "promotion forced by ann; remaining steps skipped, waiting for approval "
                "by someone other than dee"
            ) in reasons
    finally:
        manager.close()


# -- the CLI's -f --


def test_a_50_mb_spec_file_given_to_the_cli_is_refused_by_its_size(
    home: DemoHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 50 MB YAML file took 2.1 GB; now its size is checked before it is read."""
    path = tmp_path / "huge.yaml"
    with path.open("w") as handle:
        handle.write("strategy: {canary: {steps: [{weight: 10}]}}\nx: [")
        handle.write("1," * (26 * 1024 * 1024) + "1]\n")
    settings = home.settings
    common = ["--home", str(settings.home), "--registry-uri", settings.registry_uri]
    common += ["--store-url", settings.store_url]
    tracemalloc.start()
    try:
        started = time.perf_counter()
        code = cli([*common, "plan", "-f", str(path)])
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code != 0
    assert f"a spec may be at most 262144 bytes, the file has {path.stat().st_size}" in (
        capsys.readouterr().err
    )
    assert seconds < 10.0
    assert peak < 50_000_000  # far from the file's 50 MB, let alone 2.1 GB


def test_the_openapi_document_still_describes_every_body(
    api: tuple[Manager, httpx.Client],
) -> None:
    """The bodies are parsed by dependencies (after the token), so the OpenAPI document names
    them explicitly: fuzzers and clients still see each one."""
    _manager, client = api
    paths = client.get("/openapi.json").json()["paths"]
    bodies = {
        path: paths[path]["post"]["requestBody"]
        for path in (
            "/v1/rollouts",
            "/v1/apply",
            "/v1/plan",
            "/v1/models/{model}/environments/{environment}/rollback",
            "/v1/models/{model}/environments/{environment}/{verb}",
        )
    }
    schema = {path: body["content"]["application/json"]["schema"] for path, body in bodies.items()}
    assert sorted(schema["/v1/rollouts"]["required"]) == ["candidate", "environment", "model"]
    assert schema["/v1/apply"]["required"] == ["spec"]
    assert set(schema["/v1/models/{model}/environments/{environment}/rollback"]["properties"]) == {
        "to_release",
        "reason",
    }
    assert [body["required"] for body in bodies.values()] == [True, True, True, False, False]
    status = paths["/v1/models/{model}/environments/{environment}/status"]["get"]
    (interval,) = [p for p in status["parameters"] if p["name"] == "interval_s"]
    assert (interval["schema"]["minimum"], interval["schema"]["maximum"]) == (0.1, 30.0)
