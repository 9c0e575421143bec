"""The router under hostile input: no 5xx, no dropped connection, no internal address, ever.

One router (``router.app.create_app``, lifespan on) serves the module on a loopback port over
the demo's MLflow registry and a SQLite store, with v1 as baseline and v2 as canary at 50%.
What a client sends is fuzzed three ways:

- the documented routes (the FastAPI part of the app: feedback, models, probes, metrics) by
  schemathesis from the app's own OpenAPI document (the router serves none today; the
  invocation routes are answered by a middleware and are not in it);
- ``POST /v1/models/{m}/invocations`` and ``POST /v1/feedback`` by hand-written hypothesis
  strategies: bad JSON, non-finite numbers (``1e400``, ``NaN``, ``Infinity``), deep nesting,
  wrong shapes, overlong ``dataframe_split`` indexes, odd model names in the path;
- each attack of issue 11 (item 8) as one explicit request.

The assertion is the router's contract (``router.errors``): what the client sent is never a
5xx and always a JSON ``{"error_code", "message"}``; no reply names the store's host, port,
file or database. Bounded for CI: ``FUZZ_EXAMPLES`` per strategy; ``soak`` runs ten times as
many.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
import uvicorn
from fuzzing import fuzz_schema, report
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from conftest import MODEL, DemoHome, fresh_postgres_database, wait_until
from contract.clock import SYSTEM_CLOCK
from contract.plans import TrafficPlan
from contract.sql.engine import open_engine
from contract.sql.plans import SqlPlanStore
from router.app import create_app
from router.config import RouterConfig
from router.request_ids import RequestIds, load_key

LABEL_TOKEN = "fuzz-label-writer-token"  # the label writer the fixtures' routers accept
LABEL_DIGESTS = (hashlib.sha256(LABEL_TOKEN.encode()).hexdigest(),)
WRITER = {"authorization": f"Bearer {LABEL_TOKEN}"}
ID_KEY = "f" * 64  # the request id key of the fixtures' routers

ENV = "prod"
FUZZ_EXAMPLES = 150
SLOW_EXAMPLES = 1_500
INVOCATIONS = f"/v1/models/{MODEL}/invocations"


@dataclass
class Served:
    client: httpx.Client
    app: Any
    columns: list[str]
    row: list[float]
    secrets: tuple[str, ...]  # what must never appear in a reply: the store's file, host...
    problems: list[str] = field(default_factory=list)

    def send(self, path: str, body: bytes, content_type: str = "application/json") -> None:
        """POST ``body`` to ``path``; note any reply that breaks the contract."""
        shown = body[:120].decode("utf-8", "replace") + ("..." if len(body) > 120 else "")
        what = f"POST {path} {shown!r} ({len(body)} bytes)"
        try:
            reply = self.client.post(path, content=body, headers={"content-type": content_type})
        except httpx.HTTPError as exc:
            self.problems.append(f"{what} -> no reply: {type(exc).__name__}")
            return
        self.problems.extend(f"{what} -> {p}" for p in contract_problems(reply, self.secrets))


def distinct(problems: list[str]) -> str:
    """The distinct problems, each cut short, at most 30: a readable failure message."""
    unique = sorted({p[:300] for p in problems})
    return f"{len(problems)} problems, {len(unique)} distinct:\n" + "\n".join(unique[:30])


def contract_problems(reply: httpx.Response, secrets: tuple[str, ...]) -> list[str]:
    problems = []
    if reply.status_code >= 500:
        problems.append(f"{reply.status_code} {reply.text[:200]}")
    if reply.status_code >= 400:
        try:
            body = reply.json()
        except ValueError:
            body = None
        if not (isinstance(body, dict) and {"error_code", "message"} <= set(body)):
            problems.append(f"{reply.status_code} without a JSON error: {reply.text[:200]!r}")
    problems.extend(
        f"{reply.status_code} names {secret!r}: {reply.text[:200]}"
        for secret in secrets
        if secret and secret in reply.text
    )
    return problems


def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    return server, thread, sock, int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(demo_home: DemoHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    store = tmp_path_factory.mktemp("fuzz-router") / "store.db"
    store_url = f"sqlite:///{store}"
    SqlPlanStore(open_engine(store_url)).put(
        TrafficPlan(ENV, MODEL, "1", "2", 50, rollout_id="r-fuzz")
    )
    config = RouterConfig(
        store_url=store_url,
        registry_uri=demo_home.settings.registry_uri,
        artifact_root=demo_home.settings.artifact_root,
        environment=ENV,
        log_flush_s=0.1,
        label_token_sha256=LABEL_DIGESTS,
        request_id_key=ID_KEY,
    )
    app = create_app(config)
    server, thread, sock, port = _serve(app)
    rows = demo_home.data.serve_X.head(1)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=30, headers=WRITER
        ) as client:
            wait_until(
                lambda: client.get("/readyz").status_code,
                "the router to load v1 and v2",
                until=lambda status: status == 200,
                interval_s=0.05,
            )
            yield Served(
                client,
                app,
                list(rows.columns),
                [float(v) for v in rows.to_numpy()[0]],
                secrets=(str(store), str(store.parent)),
            )
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture
def fresh(served: Served) -> Served:
    served.problems.clear()
    return served


# -- strategies -------------------------------------------------------------------------------

# JSON number spellings Python's json module reads but that are no finite float
NON_FINITE = ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1" + "0" * 400]


def _number(value: float | str) -> str:
    return value if isinstance(value, str) else json.dumps(value)


feature_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(_number),
    st.sampled_from(NON_FINITE),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.sampled_from(['"abc"', "null", "true", "[]", "{}", '"1e400"', '""']),
)


@st.composite
def one_bad_value(draw: st.DrawFn, columns: list[str], row: list[float]) -> bytes:
    """A body the router would serve, but for one feature's value."""
    values = [json.dumps(v) for v in row]
    values[draw(st.integers(0, len(values) - 1))] = draw(feature_values)
    cols = json.dumps(columns)
    return f'{{"dataframe_split": {{"columns": {cols}, "data": [[{",".join(values)}]]}}}}'.encode()


@st.composite
def invocation_bodies(draw: st.DrawFn, columns: list[str]) -> bytes:
    """An MLflow scoring body, mostly right in shape, wrong in the details."""
    n_rows = draw(st.integers(min_value=0, max_value=3))
    rows = [[draw(feature_values) for _ in columns] for _ in range(n_rows)]
    names = list(columns)
    if draw(st.booleans()):
        names = draw(st.permutations(columns))[: draw(st.integers(0, len(columns) + 1))]
    kind = draw(
        st.sampled_from(
            ["split", "split_index", "records", "instances", "inputs", "inputs_dict", "extra"]
        )
    )
    cols = "[" + ",".join(json.dumps(c) for c in names) + "]"
    data = "[" + ",".join("[" + ",".join(r) + "]" for r in rows) + "]"
    if kind == "split":
        return f'{{"dataframe_split": {{"columns": {cols}, "data": {data}}}}}'.encode()
    if kind == "split_index":
        index = json.dumps(list(range(draw(st.integers(min_value=0, max_value=5)))))
        body = f'{{"dataframe_split": {{"columns": {cols}, "index": {index}, "data": {data}}}}}'
        return body.encode()
    if kind == "records":
        records = [
            "{" + ",".join(f"{json.dumps(n)}: {v}" for n, v in zip(names, r, strict=False)) + "}"
            for r in rows
        ]
        return ('{"dataframe_records": [' + ",".join(records) + "]}").encode()
    if kind == "instances":
        return ('{"instances": ' + data + "}").encode()
    if kind == "inputs":
        return ('{"inputs": ' + data + "}").encode()
    if kind == "inputs_dict":
        first = rows[0] if rows else []
        pairs = ",".join(f"{json.dumps(n)}: [{v}]" for n, v in zip(names, first, strict=False))
        return ('{"inputs": {' + pairs + "}}").encode()
    return f'{{"dataframe_split": {{"columns": {cols}, "data": {data}}}, "params": {{}}}}'.encode()


def nested(depth: int, opening: str = "[", closing: str = "]", inner: str = "1") -> bytes:
    return (opening * depth + inner + closing * depth).encode()


deep_bodies = st.builds(
    lambda depth, where: (
        nested(depth)
        if where == "top"
        else b'{"dataframe_split": {"columns": ["a"], "data": ' + nested(depth) + b"}}"
    ),
    st.integers(min_value=10, max_value=5_000),
    st.sampled_from(["top", "data"]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner),
    max_leaves=20,
)
any_json = json_values.map(lambda v: json.dumps(v).encode())
junk = st.binary(max_size=200)
truncated = json_values.map(lambda v: json.dumps({"dataframe_split": v})[:-1].encode())

feedback_items = st.fixed_dictionaries(
    {
        "request_id": st.one_of(st.text(max_size=80), st.integers(), st.none(), st.just("x" * 500)),
        "label": st.one_of(
            st.integers(), st.floats(allow_nan=False), st.text(max_size=20), st.none()
        ),
    },
    optional={"extra": st.text(max_size=5)},
)
feedback_bodies = st.one_of(
    feedback_items.map(lambda v: json.dumps(v).encode()),
    st.lists(feedback_items, max_size=5).map(lambda v: json.dumps(v).encode()),
    st.sampled_from(NON_FINITE).map(
        lambda n: ('{"request_id": "r-1", "label": ' + n + "}").encode()
    ),
    any_json,
    deep_bodies,
    junk,
    truncated,
)

FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)

# What today's router does with these (the findings of issue 11, item 8); each xfail goes
# away with the router's input hardening.
FINDS_500 = (
    "today's router answers 500 to what the client sent (non-finite numbers are a model_error, "
    "deep nesting a RecursionError, an overlong index an internal_error); fixed by item 8"
)


# -- the attacks of item 8, one request each --------------------------------------------------


def _row_with(served: Served, column: int, literal: str) -> bytes:
    values = [json.dumps(v) for v in served.row]
    values[column] = literal
    cols = json.dumps(served.columns)
    return f'{{"dataframe_split": {{"columns": {cols}, "data": [[{",".join(values)}]]}}}}'.encode()


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "NaN", "Infinity"])
def test_a_non_finite_feature_is_a_4xx_not_a_model_error(fresh: Served, literal: str) -> None:
    reply = fresh.client.post(
        INVOCATIONS,
        content=_row_with(fresh, 0, literal),
        headers={"content-type": "application/json"},
    )
    assert 400 <= reply.status_code < 500, reply.text
    assert reply.json()["error_code"] == "non_finite_number"
    assert f"data[0][0]: {literal} is not a finite number" in reply.json()["message"]


@pytest.mark.parametrize("path", [INVOCATIONS, "/v1/feedback"])
def test_deep_json_is_a_4xx(fresh: Served, path: str) -> None:
    for depth in (100, 3_000, 100_000):
        fresh.send(path, nested(depth))
        fresh.send(path, b'{"dataframe_split": {"columns": ["a"], "data": ' + nested(depth) + b"}}")
    assert fresh.problems == [], distinct(fresh.problems)


def test_an_index_longer_than_the_data_is_a_4xx(fresh: Served) -> None:
    values = ",".join(json.dumps(v) for v in fresh.row)
    cols = json.dumps(fresh.columns)
    body = f'{{"dataframe_split": {{"columns": {cols}, "index": [0, 1, 2], "data": [[{values}]]}}}}'
    reply = fresh.client.post(
        INVOCATIONS, content=body.encode(), headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400, reply.text
    assert "index" in reply.json()["message"]


@pytest.mark.parametrize(
    "path", ["/v1/models/%00/invocations", f"/v1/models/{MODEL}%00/invocations"]
)
def test_a_nul_in_the_path_is_a_4xx(fresh: Served, path: str) -> None:
    body = _row_with(fresh, 0, json.dumps(fresh.row[0]))
    fresh.send(path, body)
    assert fresh.problems == [], distinct(fresh.problems)
    reply = fresh.client.post(path, content=body, headers={"content-type": "application/json"})
    assert reply.status_code in (400, 404)


@pytest.mark.parametrize("label", ["1e400", "NaN", "-Infinity", '{"a": [1]}'])
def test_a_label_that_is_no_value_is_refused(fresh: Served, label: str) -> None:
    request_id = RequestIds(load_key(ID_KEY, None) or b"", SYSTEM_CLOCK).issue()
    body = ('{"request_id": "' + request_id + '", "label": ' + label + "}").encode()
    reply = fresh.client.post(
        "/v1/feedback", content=body, headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400, reply.text
    assert "label" in reply.json()["message"]


@pytest.mark.postgres
def test_a_store_outage_does_not_show_the_store_address(demo_home: DemoHome) -> None:
    with fresh_postgres_database() as url:
        name = url.rsplit("/", 1)[1]
        config = RouterConfig(
            store_url=url,
            registry_uri=demo_home.settings.registry_uri,
            environment=ENV,
            label_token_sha256=LABEL_DIGESTS,
            request_id_key=ID_KEY,
        )
        request_id = RequestIds(load_key(ID_KEY, None) or b"", SYSTEM_CLOCK).issue()
        app = create_app(config)
        server, thread, sock, port = _serve(app)
        try:
            admin = url.rsplit("/", 1)[0] + "/postgres"
            engine = open_engine(admin, create=False)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            engine.dispose()
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                reply = client.post(
                    "/v1/feedback", json={"request_id": request_id, "label": 1}, headers=WRITER
                )
        finally:
            server.should_exit = True
            thread.join(30)
            sock.close()
    assert reply.status_code == 503
    assert reply.json()["error_code"] == "store_unavailable"
    for secret in (name, "127.0.0.1", "5432", "postgres"):
        assert secret not in reply.text, reply.text


# -- hypothesis over the two hand-parsed routes ----------------------------------------------


def test_a_valid_request_is_served(fresh: Served) -> None:
    """The strategies start from a body the router serves (so the fuzzing is near the mark)."""
    reply = fresh.client.post(
        INVOCATIONS,
        content=_row_with(fresh, 0, json.dumps(fresh.row[0])),
        headers={"content-type": "application/json"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-model-version"] in ("1", "2")
    assert len(reply.json()["predictions"]) == 1


def test_fuzzed_invocations_never_get_a_5xx(fresh: Served) -> None:
    @FUZZ
    @given(
        st.one_of(
            one_bad_value(fresh.columns, fresh.row),
            invocation_bodies(fresh.columns),
            deep_bodies,
            any_json,
            junk,
            truncated,
        )
    )
    def send(body: bytes) -> None:
        fresh.send(INVOCATIONS, body)

    send()
    assert fresh.problems == [], distinct(fresh.problems)


def test_fuzzed_feedback_never_gets_a_5xx(fresh: Served) -> None:
    @FUZZ
    @given(feedback_bodies)
    def send(body: bytes) -> None:
        fresh.send("/v1/feedback", body)

    send()
    assert fresh.problems == [], distinct(fresh.problems)


model_names = st.text(min_size=1, max_size=30).map(lambda name: quote(name, safe=""))


def test_fuzzed_model_names_in_the_path_are_4xx(fresh: Served) -> None:
    @FUZZ
    @given(name=model_names)
    def send(name: str) -> None:
        fresh.send(f"/v1/models/{name}/invocations", b'{"inputs": [[1]]}')

    send()
    assert fresh.problems == [], distinct(fresh.problems)


# -- schemathesis over what the router's OpenAPI documents ------------------------------------


def test_documented_routes_never_get_a_5xx(served: Served) -> None:
    schema = schemathesis.openapi.from_dict(served.app.openapi())
    findings = fuzz_schema(schema, str(served.client.base_url), max_examples=15)
    assert findings.requests >= 8, report(findings)  # feedback, models, six probes
    assert findings.statuses[200] >= 7, report(findings)
    assert findings.unique_server_errors() == [], report(findings)


@pytest.mark.soak
def test_fuzzed_invocations_and_feedback_long(fresh: Served) -> None:
    @settings(FUZZ, max_examples=SLOW_EXAMPLES)
    @given(
        st.one_of(
            one_bad_value(fresh.columns, fresh.row),
            invocation_bodies(fresh.columns),
            deep_bodies,
            any_json,
            junk,
            truncated,
        ),
        feedback_bodies,
    )
    def send(invocation: bytes, feedback: bytes) -> None:
        fresh.send(INVOCATIONS, invocation)
        fresh.send("/v1/feedback", feedback)

    send()
    assert fresh.problems == [], distinct(fresh.problems)


def test_contract_problems_catches_what_it_should() -> None:
    """The checker itself: a 500, a non-JSON 4xx and a leaked secret are each reported."""
    assert contract_problems(httpx.Response(500, json={"error_code": "x", "message": "y"}), ())
    assert contract_problems(httpx.Response(400, text="oops"), ())
    assert contract_problems(
        httpx.Response(503, json={"error_code": "s", "message": "at 10.0.0.5:5432"}),
        ("10.0.0.5",),
    )
    assert (
        contract_problems(httpx.Response(400, json={"error_code": "x", "message": "y"}), ()) == []
    )
