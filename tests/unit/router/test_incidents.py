"""router.incidents: what a client reads of an error, and what only the log gets."""

from __future__ import annotations

import logging
import re

import pytest

from router.errors import MalformedRequest, ModelError, ModelTimeout, NotReady
from router.incidents import reply_json, unexpected

SECRET = "connection to server at 10.0.3.7, port 5432 failed: database rollout_prod"


def _incident(message: str, prefix: str) -> str:
    found = re.fullmatch(re.escape(prefix) + r" \(incident ([0-9a-f]{12})\)", message)
    assert found is not None, message
    return found.group(1)


def test_a_hidden_cause_is_logged_under_the_id_the_client_reads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = NotReady(f"plans unreadable: {SECRET}", public="plans unreadable")
    with caplog.at_level(logging.WARNING, logger="router.incidents"):
        body = reply_json(error, "/invocations")
    assert body["error_code"] == "not_ready" and SECRET not in body["message"]
    incident = _incident(body["message"], "plans unreadable")
    assert f"incident {incident} (/invocations): not_ready: plans unreadable: {SECRET}" in (
        caplog.text
    )


def test_a_model_error_always_gets_an_incident() -> None:
    body = reply_json(ModelError("bc v2 failed: ValueError: x", public="bc v2 failed: ValueError"))
    _incident(body["message"], "bc v2 failed: ValueError")


@pytest.mark.parametrize(
    "error",
    [MalformedRequest("row 0: bad", error_code="invalid_format"), ModelTimeout("too slow")],
)
def test_errors_that_hide_nothing_are_sent_as_they_are(
    error: MalformedRequest | ModelTimeout,
) -> None:
    assert reply_json(error) == error.to_json()


def test_a_bug_shows_only_an_incident(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="router.incidents"):
        body = unexpected(KeyError(SECRET), "/v1/feedback")
    assert body["error_code"] == "internal_error" and SECRET not in body["message"]
    incident = _incident(body["message"], "unexpected error in the router")
    assert f"incident {incident} (/v1/feedback): unexpected KeyError" in caplog.text
    assert SECRET in caplog.text  # the traceback is in the log
