"""What the router answers: a :class:`Reply`, an error as a reply, and the request id.

- :class:`Reply` is status, body, headers and media type, and ``after``: work the ASGI layer
  starts once the reply is sent (a shadow prediction, :mod:`router.shadow`).
- :func:`error_reply` turns a :class:`~router.errors.RouterError` into its JSON reply
  (``{"error_code": ..., "message": ...}`` with the error's HTTP status; a 5xx shows only
  its public message and an incident id, :mod:`router.incidents`).
- :func:`request_id_from` is the caller's ``x-request-id`` (400 if longer than the prediction
  log keeps), else a new id: 64 random bits per process, then a counter, so no syscall per
  request; a forked worker draws new random bits and never repeats its parent's ids.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from contract.names import MAX_REQUEST_ID, REQUEST_ID_HEADER
from router.errors import MalformedRequest, RouterError
from router.incidents import reply_json

# Request ids: 64 random bits per process, then a counter (unique without a syscall per request).
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))


def _new_id_source() -> None:
    global _ID_PREFIX, _ID_COUNTER
    _ID_PREFIX = os.urandom(8).hex()
    _ID_COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))


os.register_at_fork(after_in_child=_new_id_source)  # a forked worker must not repeat ids


@dataclass(frozen=True)
class Reply:
    status_code: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"
    after: Callable[[], None] | None = None  # work to start once the reply is sent (shadow)


def error_reply(error: RouterError, headers: dict[str, str]) -> Reply:
    return Reply(error.status_code, json.dumps(reply_json(error)).encode(), headers)


def request_id_from(headers: Mapping[str, str]) -> str:
    """The caller's ``x-request-id`` (400 if longer than the log keeps), else a new one."""
    given = headers.get(REQUEST_ID_HEADER)
    if not given:
        return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"
    if len(given) > MAX_REQUEST_ID:
        raise MalformedRequest(
            f"x-request-id is {len(given)} characters long; at most {MAX_REQUEST_ID} are kept",
            error_code="invalid_request_id",
        )
    return given
