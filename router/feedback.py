"""Delayed labels: ``POST /v1/feedback``, from a label writer, for requests this router issued.

The contract, in the order it is checked:

1. **Who** (:func:`label_writer`, before the body is read): ``Authorization: Bearer TOKEN``
   where ``sha256(TOKEN)`` is in ``label_token_sha256`` (``ROLLOUT_LABEL_TOKEN_SHA256``),
   compared in constant time. No or a malformed header, or a token not listed: 401. A router
   with no label tokens refuses every label (403 ``labels_not_configured``, saying how to
   configure them) unless ``allow_anonymous_labels`` (``ROLLOUT_ALLOW_ANONYMOUS_LABELS=1``,
   development only). The writer's identity stored with each label is ``sha256:`` and the
   first 16 hex characters of the token's digest (``anonymous`` in development).
2. **How much**: a body over ``label_max_body_bytes`` is 413 (read with that limit); more than
   ``label_max_items`` labels is 413 ``too_many_labels``; one label whose JSON is over
   ``label_max_bytes`` is 413 ``label_too_large``.
3. **What**: JSON, one ``{"request_id": ..., "label": ...}`` or a list of them
   (:func:`~contract.records.parse_feedback`); a label is a number, string or boolean, or a
   list of them (one per row); ``NaN``/``Infinity``, nesting, or a request id twice in one call
   are 400 naming the item.
4. **For which request** (:class:`~router.request_ids.RequestIds`): an id no router with this
   key issued is 404 ``unknown_request_id`` and an id older than ``label_max_age_s`` is 410
   ``label_expired`` — at once, from the id's signature, never by asking the store.
5. **First write wins** (:class:`~contract.records.FeedbackSink`): a request labelled by
   another writer is 409 ``label_conflict``; the same writer's new label replaces the old one,
   which is kept in ``feedback_history``.

A call is stored whole or not at all; every refusal names the item. A store that fails is 503
``store_unavailable`` with an incident id; the cause (which may name the database's host) is
only in the router's log under that id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from contract.clock import Clock
from contract.records import Feedback, FeedbackSink, LabelConflict, parse_feedback
from router import jsonbody
from router.errors import (
    Forbidden,
    MalformedRequest,
    NotReady,
    PayloadTooLarge,
    RouterError,
    Unauthorized,
)
from router.errors import LabelConflict as LabelConflictError
from router.payload import media_type
from router.request_ids import RequestIds

_log = logging.getLogger(__name__)
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class LabelPolicy:
    """Who may post labels and how many (``RouterConfig``'s ``label_*`` settings)."""

    token_digests: tuple[str, ...] = ()
    allow_anonymous: bool = False
    max_age_s: float = 14 * 86_400.0
    max_items: int = 1000
    max_label_bytes: int = 4096
    max_body_bytes: int = 512 * 1024


def label_writer(headers: Mapping[str, str], policy: LabelPolicy) -> str:
    """The writer a ``/v1/feedback`` call comes from (401/403 if it may not post labels)."""
    if not policy.token_digests:
        if policy.allow_anonymous:
            return ANONYMOUS
        raise Forbidden(
            "this router accepts labels from no one: set ROLLOUT_LABEL_TOKEN_SHA256 to the "
            "sha256 hex digests of the label writers' bearer tokens (or, for development only, "
            "ROLLOUT_ALLOW_ANONYMOUS_LABELS=1)",
            error_code="labels_not_configured",
        )
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("posting labels needs 'Authorization: Bearer TOKEN' of a label writer")
    digest = hashlib.sha256(token.encode()).hexdigest()
    if not any(hmac.compare_digest(digest, allowed) for allowed in policy.token_digests):
        raise Unauthorized(
            "this bearer token may not post labels (its sha256 is not in "
            "ROLLOUT_LABEL_TOKEN_SHA256)"
        )
    return "sha256:" + digest[:16]


def _check_label(label: object, where: str) -> None:
    items = label if isinstance(label, list) else [label]
    for value in items:
        if value is None or isinstance(value, dict | list):
            raise MalformedRequest(
                f"{where}: 'label' must be a number, string or boolean, or a list of them "
                "(one per row of the request)",
                error_code="invalid_feedback",
            )


def parse_labels(
    body: bytes, content_type: str | None, policy: LabelPolicy
) -> list[tuple[str, object]]:
    """(request_id, label) pairs of a ``/v1/feedback`` body, checked (400/413)."""
    if media_type(content_type) != "application/json":
        raise MalformedRequest("feedback must be JSON", error_code="invalid_format")
    decoded = jsonbody.loads(body)  # bounded: 400 for deep nesting, NaN, not JSON
    if isinstance(decoded, list) and len(decoded) > policy.max_items:
        raise PayloadTooLarge(
            f"{len(decoded)} labels in one call; at most {policy.max_items} "
            "(ROLLOUT_LABEL_MAX_ITEMS)",
            error_code="too_many_labels",
        )
    try:
        pairs = list(parse_feedback(decoded))
    except ValueError as exc:
        raise MalformedRequest(str(exc), error_code="invalid_feedback") from exc
    seen: set[str] = set()
    for index, (request_id, label) in enumerate(pairs):
        where = f"item {index}" if isinstance(decoded, list) else "body"
        _check_label(label, where)
        size = len(json.dumps(label))
        if size > policy.max_label_bytes:
            raise PayloadTooLarge(
                f"{where}: the label is {size} bytes of JSON; at most {policy.max_label_bytes} "
                "(ROLLOUT_LABEL_MAX_BYTES)",
                error_code="label_too_large",
            )
        if request_id in seen:
            raise MalformedRequest(
                f"{where}: request_id {request_id[:20]!r} is labelled twice in this call",
                error_code="invalid_feedback",
            )
        seen.add(request_id)
    return pairs


def store_feedback(
    sink: FeedbackSink | None,
    body: bytes,
    content_type: str | None,
    clock: Clock,
    *,
    writer: str,
    ids: RequestIds,
    policy: LabelPolicy,
) -> int:
    """Store ``writer``'s labels, all or none; returns how many (400/404/409/410/413/503)."""
    pairs = parse_labels(body, content_type, policy)
    for index, (request_id, _) in enumerate(pairs):
        try:
            ids.check(request_id, policy.max_age_s)
        except RouterError as exc:
            if len(pairs) == 1:
                raise
            raise type(exc)(f"item {index}: {exc.message}", error_code=exc.error_code) from exc
    if sink is None:
        raise NotReady("this router has no feedback store", error_code="store_unavailable")
    now = clock.time()
    labels = [Feedback(rid, label, now, writer) for rid, label in pairs]
    try:
        sink.add_feedback(labels)
    except LabelConflict as exc:
        raise LabelConflictError(
            f"{exc}; a request's first label wins and only its writer may replace it "
            "(nothing in this call was stored)"
        ) from exc
    except Exception as exc:
        incident = uuid.uuid4().hex[:12]
        _log.error("feedback store failed (incident %s): %r", incident, exc)
        raise NotReady(
            f"cannot store labels now (incident {incident}); nothing in this call was "
            "stored, try again later",
            error_code="store_unavailable",
        ) from exc
    return len(labels)
