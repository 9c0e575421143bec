"""The label contract of ``POST /v1/feedback`` without HTTP: who, how much, what, which, once.

(The same over HTTP, on a real app, is in ``test_app.py``; on a real router process and SQL
store, with the forged-label attack, in ``tests/integration/test_labels.py``.)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from sqlalchemy import create_engine

from contract.clock import ManualClock
from contract.records import InMemoryPredictionLog
from contract.sql.predictions import SqlFeedbackSink
from router.errors import (
    Forbidden,
    LabelConflict,
    LabelExpired,
    MalformedRequest,
    NotReady,
    PayloadTooLarge,
    RouterError,
    Unauthorized,
)
from router.feedback import LabelPolicy, label_writer, store_feedback
from router.request_ids import RequestIds

TOKEN = "writer-one-token"
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()
POLICY = LabelPolicy(token_digests=(DIGEST,), max_items=5, max_label_bytes=64)
KEY = b"k" * 32


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
def ids(clock: ManualClock) -> RequestIds:
    return RequestIds(KEY, clock)


def _store(sink: Any, body: object, ids: RequestIds, clock: ManualClock, writer: str = "w1") -> int:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return store_feedback(
        sink, raw, "application/json", clock, writer=writer, ids=ids, policy=POLICY
    )


def _refused(
    sink: Any, body: object, ids: RequestIds, clock: ManualClock, **kw: Any
) -> RouterError:
    with pytest.raises(RouterError) as info:
        _store(sink, body, ids, clock, **kw)
    return info.value


# -- who --
def test_a_label_writer_is_named_by_its_tokens_digest() -> None:
    assert label_writer({"authorization": f"Bearer {TOKEN}"}, POLICY) == "sha256:" + DIGEST[:16]
    assert label_writer({"authorization": f"bearer  {TOKEN} "}, POLICY) == "sha256:" + DIGEST[:16]


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "needs 'Authorization: Bearer TOKEN'"),
        ({"authorization": TOKEN}, "needs 'Authorization: Bearer TOKEN'"),
        ({"authorization": "Basic dXNlcjpwdw=="}, "needs 'Authorization: Bearer TOKEN'"),
        ({"authorization": "Bearer "}, "needs 'Authorization: Bearer TOKEN'"),
        ({"authorization": "Bearer guessed"}, "not in ROLLOUT_LABEL_TOKEN_SHA256"),
        ({"authorization": f"Bearer {DIGEST}"}, "not in ROLLOUT_LABEL_TOKEN_SHA256"),
    ],
)
def test_no_or_a_wrong_token_is_401(headers: dict[str, str], fragment: str) -> None:
    with pytest.raises(Unauthorized, match=fragment) as info:
        label_writer(headers, POLICY)
    assert info.value.status_code == 401


def test_a_router_without_label_tokens_refuses_labels_saying_how_to_allow_them() -> None:
    with pytest.raises(Forbidden) as info:
        label_writer({"authorization": f"Bearer {TOKEN}"}, LabelPolicy())
    assert (info.value.status_code, info.value.error_code) == (403, "labels_not_configured")
    assert "ROLLOUT_LABEL_TOKEN_SHA256" in info.value.message
    assert label_writer({}, LabelPolicy(allow_anonymous=True)) == "anonymous"


# -- which, once --
def test_labels_for_issued_ids_are_stored_with_their_writer(
    ids: RequestIds, clock: ManualClock
) -> None:
    sink = InMemoryPredictionLog()
    first, second = ids.issue(), ids.issue()
    assert (
        _store(
            sink,
            [{"request_id": first, "label": 1}, {"request_id": second, "label": "b"}],
            ids,
            clock,
        )
        == 2
    )
    assert [(f.request_id, f.label, f.writer, f.ts) for f in sink.labels] == [
        (first, 1, "w1", clock.time()),
        (second, "b", "w1", clock.time()),
    ]


def test_a_guessed_id_is_404_and_nothing_in_the_call_is_stored(
    ids: RequestIds, clock: ManualClock
) -> None:
    sink = InMemoryPredictionLog()
    good = ids.issue()
    guessed = good[:40] + "0" * 24
    error = _refused(
        sink, [{"request_id": good, "label": 1}, {"request_id": guessed, "label": 0}], ids, clock
    )
    assert (error.status_code, error.error_code) == (404, "unknown_request_id")
    assert error.message.startswith("item 1: ")
    assert sink.labels == []


def test_a_label_for_an_expired_request_is_410(ids: RequestIds, clock: ManualClock) -> None:
    sink = InMemoryPredictionLog()
    old = ids.issue()
    clock.advance(POLICY.max_age_s + 1)
    error = _refused(sink, {"request_id": old, "label": 1}, ids, clock)
    assert isinstance(error, LabelExpired)
    assert (error.status_code, error.error_code) == (410, "label_expired")
    assert sink.labels == []


def test_first_label_wins_and_only_its_writer_may_replace_it(
    ids: RequestIds, clock: ManualClock
) -> None:
    sink = InMemoryPredictionLog()
    rid = ids.issue()
    assert _store(sink, {"request_id": rid, "label": 1}, ids, clock, writer="w1") == 1
    error = _refused(sink, {"request_id": rid, "label": 0}, ids, clock, writer="w2")
    assert isinstance(error, LabelConflict)
    assert (error.status_code, error.error_code) == (409, "label_conflict")
    assert rid in error.message and "nothing in this call was stored" in error.message
    assert [(f.label, f.writer) for f in sink.labels] == [(1, "w1")]
    # The same label again (a retried call): nothing changes, no history.
    clock.advance(5)
    assert _store(sink, {"request_id": rid, "label": 1}, ids, clock, writer="w1") == 1
    assert sink.history == []
    # Its writer corrects it: the new label counts, the old one is kept.
    assert _store(sink, {"request_id": rid, "label": 0}, ids, clock, writer="w1") == 1
    assert [(f.label, f.writer) for f in sink.labels] == [(0, "w1")]
    assert [(f.label, f.writer, at) for f, at in sink.history] == [(1, "w1", clock.time())]


def test_a_conflict_anywhere_in_a_batch_stores_none_of_it(
    ids: RequestIds, clock: ManualClock
) -> None:
    sink = InMemoryPredictionLog()
    taken, fresh = ids.issue(), ids.issue()
    _store(sink, {"request_id": taken, "label": 1}, ids, clock, writer="w1")
    body = [{"request_id": fresh, "label": 1}, {"request_id": taken, "label": 0}]
    assert isinstance(_refused(sink, body, ids, clock, writer="w2"), LabelConflict)
    assert [f.request_id for f in sink.labels] == [taken]


# -- how much, what --
@pytest.mark.parametrize(
    ("body", "error_type", "code", "fragment"),
    [
        (
            [{"request_id": "x", "label": 1}] * 6,
            PayloadTooLarge,
            "too_many_labels",
            "at most 5 (ROLLOUT_LABEL_MAX_ITEMS)",
        ),
        (
            {"request_id": "ID", "label": "x" * 100},
            PayloadTooLarge,
            "label_too_large",
            "body: the label is 102 bytes of JSON; at most 64",
        ),
        (
            {"request_id": "ID", "label": {"a": 1}},
            MalformedRequest,
            "invalid_feedback",
            "body: 'label' must be a number, string or boolean",
        ),
        (
            {"request_id": "ID", "label": [[1]]},
            MalformedRequest,
            "invalid_feedback",
            "'label' must be",
        ),
        (
            {"request_id": "ID", "label": None},
            MalformedRequest,
            "invalid_feedback",
            "'label' must be",
        ),
        (
            b'{"request_id": "ID", "label": NaN}',
            MalformedRequest,
            "non_finite_number",
            "label: NaN is not a finite number",
        ),
        (
            b'{"request_id": "ID", "label": Infinity}',
            MalformedRequest,
            "non_finite_number",
            "Infinity",
        ),
        (b"[" * 100_000, MalformedRequest, "too_deep", "levels deep"),
        (b"\xff\xfe", MalformedRequest, "malformed_json", "not UTF-8"),
        (
            [{"request_id": "ID", "label": 1}, {"request_id": "ID", "label": 0}],
            MalformedRequest,
            "invalid_feedback",
            "item 1: request_id",
        ),
        ([{"label": 1}], MalformedRequest, "invalid_feedback", "item 0: 'request_id'"),
    ],
)
def test_bad_bodies_are_4xx_naming_the_item_and_the_limit(
    ids: RequestIds,
    clock: ManualClock,
    body: object,
    error_type: type[RouterError],
    code: str,
    fragment: str,
) -> None:
    rid = ids.issue()
    if isinstance(body, bytes):
        body = body.replace(b'"ID"', json.dumps(rid).encode())
    else:
        body = json.loads(json.dumps(body).replace('"ID"', json.dumps(rid)))
    sink = InMemoryPredictionLog()
    error = _refused(sink, body, ids, clock)
    assert type(error) is error_type
    assert error.error_code == code
    assert fragment in error.message
    assert len(error.message) < 400
    assert sink.labels == []


# -- the store --
def test_a_store_that_fails_is_503_with_an_incident_id_and_no_address(
    ids: RequestIds, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(
        "postgresql+psycopg://rollout:secret@127.0.0.1:1/secret_labels_db",
        connect_args={"connect_timeout": 2},
    )
    error = _refused(SqlFeedbackSink(engine), {"request_id": ids.issue(), "label": 1}, ids, clock)
    assert isinstance(error, NotReady)
    assert (error.status_code, error.error_code) == (503, "store_unavailable")
    assert "incident " in error.message
    for secret in ("127.0.0.1", "secret_labels_db", ":1", "psycopg", "OperationalError"):
        assert secret not in error.message
    incident = error.message.split("incident ")[1][:12]
    assert any(incident in r.getMessage() and "127.0.0.1" in r.getMessage() for r in caplog.records)


def test_no_store_is_503(ids: RequestIds, clock: ManualClock) -> None:
    error = _refused(None, {"request_id": ids.issue(), "label": 1}, ids, clock)
    assert (error.status_code, error.error_code) == (503, "store_unavailable")
