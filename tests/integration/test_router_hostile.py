"""Hostile input against ``python -m router`` as its own process (issue 11, item 8).

Each test is an attack that once gave a 500, a dropped connection, or a canary blamed for a
client's input; each must now be a 4xx JSON error naming the problem, before any version is
called, and leave no prediction record. The process is ``test_router_process``'s: the demo's
``bc`` v1 baseline with v2 its canary at 30% (rollout ``r-proc``), and ``boom``.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import httpx
from integration.test_router_process import ENV, router_process

from conftest import MODEL, DemoHome
from contract.sql.engine import open_engine
from rollout.router_keys import router_secrets
from rollout.store.predictions import PredictionLog
from router.split import choose_arm

__all__ = ["router_process"]  # the fixture, shared with test_router_process

Process = tuple[httpx.Client, subprocess.Popen[bytes], Path]


def _key(arm: str) -> str:
    """A sticky key the plan (30% canary, rollout r-proc) sends to ``arm``."""
    return next(f"k{n}" for n in range(1000) if choose_arm(30, f"k{n}", salt="r-proc") == arm)


def _records(home: DemoHome, process: subprocess.Popen[bytes], log_path: Path) -> set[str]:
    """Stop the router (it flushes its log) and return the request ids it recorded."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) in (0, -signal.SIGTERM), log_path.read_text()
    log = PredictionLog(open_engine(home.settings.store_url))
    return {r.request_id for model in (MODEL, "boom") for r in log.recent(ENV, model, 1000)}


def _raw(port: int, path: bytes, body: bytes = b'{"inputs": {"x": [1.0]}}') -> bytes:
    """Send a POST with ``path`` as it is on the request line; the whole reply, as bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def test_non_finite_numbers_are_a_400_before_any_version_is_called(
    home: DemoHome, router_process: Process
) -> None:
    """``1e400`` aimed (by sticky key) at the canary once made it raise: a canary model_error
    a client could aim. Now no version sees it, whichever arm the key picks."""
    client, process, log_path = router_process
    record = home.data.serve_X.head(1).to_dict(orient="records")[0]
    column = next(iter(record))
    sent = []
    for arm in ("canary", "baseline"):
        for literal in ("1e400", "-1e400", "NaN", "Infinity"):
            body = json.dumps({"dataframe_records": [{**record, column: 0.5}]})
            body = body.replace(f'"{column}": 0.5', f'"{column}": {literal}', 1)
            request_id = f"nonfinite-{arm}-{literal}"
            reply = client.post(
                f"/v1/models/{MODEL}/invocations",
                content=body,
                headers={
                    "content-type": "application/json",
                    "x-rollout-key": _key(arm),
                    "x-request-id": request_id,
                },
            )
            assert reply.status_code == 400, reply.text
            assert reply.json()["error_code"] == "non_finite_number"
            assert reply.json()["message"].startswith(f"dataframe_records[0].{column}: {literal}")
            assert "x-arm" not in reply.headers  # refused before an arm was chosen
            sent.append(reply.headers["x-request-id"])  # the router's own id, not the caller's
    csv_body = ",".join(record) + "\n" + ",".join(["inf"] * len(record)) + "\n"
    reply = client.post(
        f"/v1/models/{MODEL}/invocations",
        content=csv_body,
        headers={"content-type": "text/csv", "x-rollout-key": _key("canary")},
    )
    assert (reply.status_code, reply.json()["error_code"]) == (400, "non_finite_number")
    assert reply.json()["message"].startswith(f"CSV line 2, column {column!r}: 'inf'")
    metrics = client.get("/metrics").text
    assert "rollout_router_canary_failovers_total{" not in metrics
    assert 'status="500"' not in metrics
    good = client.post(
        f"/v1/models/{MODEL}/invocations",
        json={"dataframe_records": [record]},
        headers={"x-request-id": "after-the-attack"},
    )
    assert good.status_code == 200
    assert good.headers["x-client-request-id"] == "after-the-attack"
    recorded = _records(home, process, log_path)
    assert good.headers["x-request-id"] in recorded
    assert recorded.isdisjoint(sent)


def test_deep_json_is_a_400_on_every_route(home: DemoHome, router_process: Process) -> None:
    client = router_process[0]
    writer = f"Bearer {router_secrets(home.settings.home).label_token}"  # feedback's first check
    for depth, path, body in (
        (depth, path, head + b"[" * depth + b"]" * depth + b"}")
        for depth in (3000, 100_000)
        for path, head in (
            (f"/v1/models/{MODEL}/invocations", b'{"inputs": '),
            ("/v1/models/boom/invocations", b'{"inputs": '),
            ("/v1/feedback", b'{"request_id": "r", "label": '),
        )
    ):
        reply = client.post(
            path,
            content=body,
            headers={"content-type": "application/json", "authorization": writer},
        )
        assert reply.status_code == 400, (path, reply.text)
        assert reply.json() == {
            "error_code": "too_deep",
            "message": f"the JSON body nests arrays and objects {depth + 1} levels deep; "
            "at most 64 are accepted",
        }
    assert client.get("/healthz").json() == {"status": "ok"}  # the process is still well


def test_a_dataframe_split_index_longer_than_its_data_is_a_400(
    home: DemoHome, router_process: Process
) -> None:
    client, process, log_path = router_process
    split = home.data.serve_X.head(2).to_dict(orient="split")
    split["index"] = [0, 1, 2, 3]
    refused = set()
    for arm in ("canary", "baseline"):
        reply = client.post(
            f"/v1/models/{MODEL}/invocations",
            json={"dataframe_split": split},
            headers={"x-rollout-key": _key(arm), "x-request-id": f"index-{arm}"},
        )
        assert reply.status_code == 400, reply.text
        assert reply.json() == {
            "error_code": "invalid_format",
            "message": "'dataframe_split.index' has 4 labels but 'dataframe_split.data' has 2 "
            "rows; give one label per row",
        }
        refused.add(reply.headers["x-request-id"])  # the router's own id
    assert _records(home, process, log_path).isdisjoint(refused)


def test_invalid_bytes_in_the_path_are_a_400_not_a_dropped_connection(
    router_process: Process,
) -> None:
    client = router_process[0]
    assert client.base_url.port is not None
    for path in (
        b"/v1/models/%00/invocations",
        b"/v1/models/bc%0d%0aset-cookie:%20x/invocations",
        b"/v1/models/%ff%fe/invocations",
        b"/v1/feedback%00",
        b"/%00",
    ):
        reply = _raw(client.base_url.port, path)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), (path, reply[:300])
        assert b"set-cookie" not in head.lower()
        error = json.loads(body)
        assert error["error_code"] == "invalid_path"
        assert error["message"].startswith("the path ")
    assert client.get("/healthz").status_code == 200
    # A model name a header cannot hold (not Latin-1) is a clean 404, its header percent-encoded.
    reply = client.post("/v1/models/%E6%A8%A1%E5%9E%8B/invocations", json={"inputs": [1.0]})
    assert reply.status_code == 404, reply.text
    assert reply.json()["error_code"] == "unknown_model"
    assert reply.headers["x-model-name"] == "%E6%A8%A1%E5%9E%8B"  # percent-encoded UTF-8


def test_a_failing_version_shows_the_client_no_internals(router_process: Process) -> None:
    client, _, log_path = router_process
    reply = client.post("/v1/models/boom/invocations", json={"inputs": {"x": [-1.0]}})
    assert reply.status_code == 500
    message = reply.json()["message"]
    assert message.startswith("boom v1 failed: RuntimeError (incident ")
    assert "negative" not in message  # the model's own words stay in the log
    incident = message.rsplit(" ", 1)[1].rstrip(")")
    assert f"incident {incident}: model_error" in log_path.read_text()

    # The router's OpenAPI document describes every route, its bodies and its error replies.
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/v1/models/{model}/invocations",
        "/invocations",
        "/v1/feedback",
        "/v1/models",
        "/healthz",
        "/readyz",
        "/ping",
        "/health",
        "/version",
        "/metrics",
    ):
        assert path in paths, path
    invoke = paths["/v1/models/{model}/invocations"]["post"]
    assert set(invoke["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert {"200", "400", "413", "415", "422", "500", "503", "504"} <= set(invoke["responses"])
    assert invoke["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    feedback = paths["/v1/feedback"]["post"]
    assert "requestBody" in feedback and "202" in feedback["responses"]
    assert "503" in paths["/readyz"]["get"]["responses"]
    assert document["components"]["schemas"]["Error"]["required"] == ["error_code", "message"]
