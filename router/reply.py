"""What the router answers: a :class:`Reply`, an error as a reply, and the request id.

- :class:`Reply` is status, body, headers and media type, and ``after``: work the ASGI layer
  starts once the reply is sent (a shadow prediction, :mod:`router.shadow`).
- :func:`error_reply` turns a :class:`~router.errors.RouterError` into its JSON reply
  (``{"error_code": ..., "message": ...}`` with the error's HTTP status; a 5xx shows only
  its public message and an incident id, :mod:`router.incidents`).
- :func:`client_request_id` is the caller's own ``x-request-id`` (400 if longer than 64
  characters), echoed back as ``x-client-request-id``. The id the router records and answers
  in ``x-request-id`` is always its own, signed (:mod:`router.request_ids`): a label names it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from contract.names import MAX_REQUEST_ID, REQUEST_ID_HEADER
from router.errors import MalformedRequest, RouterError
from router.incidents import reply_json

CLIENT_REQUEST_ID_HEADER = "x-client-request-id"  # the caller's own x-request-id, echoed


@dataclass(frozen=True)
class Reply:
    status_code: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"
    after: Callable[[], None] | None = None  # work to start once the reply is sent (shadow)


def error_reply(error: RouterError, headers: dict[str, str]) -> Reply:
    return Reply(error.status_code, json.dumps(reply_json(error)).encode(), headers)


def client_request_id(headers: Mapping[str, str]) -> str | None:
    """The caller's own ``x-request-id``, if any (400 if longer than 64 characters).

    It is only echoed back as ``x-client-request-id``: the router always issues its own signed
    id (:mod:`router.request_ids`), so a caller cannot choose the id a label will name.
    """
    given = headers.get(REQUEST_ID_HEADER)
    if not given:
        return None
    if len(given) > MAX_REQUEST_ID:
        raise MalformedRequest(
            f"x-request-id is {len(given)} characters long; at most {MAX_REQUEST_ID} are kept",
            error_code="invalid_request_id",
        )
    return given
