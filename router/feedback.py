"""Delayed labels: ``POST /v1/feedback``, checked and stored.

:func:`store_feedback` takes a JSON body, one ``{"request_id": ..., "label": ...}`` or a list
of them (:func:`~contract.records.parse_feedback`), stamps each with the clock's time and adds
them to the :class:`~contract.records.FeedbackSink`; it returns how many. A body that is not
JSON, not that shape, or names a request id longer than the log keeps is a 400
(:class:`~router.errors.MalformedRequest`); no sink, or one that fails, is a 503
(:class:`~router.errors.NotReady`, ``store_unavailable``).
"""

from __future__ import annotations

from contract.clock import Clock
from contract.names import MAX_REQUEST_ID
from contract.records import Feedback, FeedbackSink, parse_feedback
from router import jsonbody
from router.errors import MalformedRequest, NotReady
from router.payload import media_type


def store_feedback(
    sink: FeedbackSink | None, body: bytes, content_type: str | None, clock: Clock
) -> int:
    """Store delayed labels; returns how many. 400 on a malformed body."""
    if media_type(content_type) != "application/json":
        raise MalformedRequest("feedback must be JSON", error_code="invalid_format")
    decoded = jsonbody.loads(body)  # bounded: 400 for deep nesting, NaN, not JSON
    now = clock.time()
    try:
        labels = [Feedback(rid, label, now) for rid, label in parse_feedback(decoded)]
    except ValueError as exc:
        raise MalformedRequest(str(exc), error_code="invalid_feedback") from exc
    for item in labels:
        if len(item.request_id) > MAX_REQUEST_ID:
            raise MalformedRequest(
                f"request_id {item.request_id[:20]!r}... is longer than {MAX_REQUEST_ID}",
                error_code="invalid_feedback",
            )
    if sink is None:
        raise NotReady("this router has no feedback store", error_code="store_unavailable")
    try:
        sink.add_feedback(labels)
    except Exception as exc:
        raise NotReady(
            f"cannot store feedback: {type(exc).__name__}: {exc}",
            error_code="store_unavailable",
        ) from exc
    return len(labels)
