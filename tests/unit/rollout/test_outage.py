"""The rules of waiting for the registry (rollout/outage.py), one at a time."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    PERMISSION_DENIED,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)

from contract.errors import RegistryUnavailable, VersionNotFound, http_status
from contract.mlflow import registry_error
from rollout.errors import NotFoundUnconfirmed
from rollout.outage import Holds, NotFoundAnswers

GONE = VersionNotFound("model 'bc' version '2' not found")
DOWN = RegistryUnavailable("the registry did not answer for model 'bc' version '2': refused")
T0 = 1_796_000_000.0  # 2026-11-30 00:53:20 UTC


def test_not_found_is_believed_after_three_answers_five_seconds_apart() -> None:
    answers = NotFoundAnswers()
    assert answers.every_s == 5.0
    for now in (T0, T0 + 1, T0 + 4.9):  # answers closer than 5 s count once
        with pytest.raises(NotFoundUnconfirmed, match=r"\(answer 1 of 3, one every 5 s\)"):
            answers.confirm("r-1", now, GONE)
    with pytest.raises(NotFoundUnconfirmed, match=r"\(answer 2 of 3, one every 5 s\)"):
        answers.confirm("r-1", T0 + 5.0, GONE)
    with pytest.raises(NotFoundUnconfirmed, match=r"answer 2 of 3"):
        answers.confirm("r-1", T0 + 9.0, GONE)
    assert answers.confirm("r-1", T0 + 10.0, GONE) == "answered 3 times over 10 s"
    # believed once: the next "not found" starts a new count
    with pytest.raises(NotFoundUnconfirmed, match="answer 1 of 3"):
        answers.confirm("r-1", T0 + 11.0, GONE)


def test_another_answer_starts_the_count_again_and_rollouts_count_apart() -> None:
    answers = NotFoundAnswers()
    for now in (T0, T0 + 5):
        with pytest.raises(NotFoundUnconfirmed):
            answers.confirm("r-1", now, GONE)
    with pytest.raises(NotFoundUnconfirmed, match="answer 1 of 3"):
        answers.confirm("r-2", T0 + 5, GONE)
    answers.forget("r-1")
    with pytest.raises(NotFoundUnconfirmed, match="answer 1 of 3"):
        answers.confirm("r-1", T0 + 10, GONE)


def test_unconfirmed_is_a_503_like_an_outage() -> None:
    assert http_status(NotFoundUnconfirmed("x")) == (503, "unavailable")
    assert http_status(DOWN) == (503, "unavailable")
    assert http_status(GONE) == (404, "not_found")


def test_a_hold_is_said_once_with_its_start_and_resumes_with_its_length() -> None:
    holds = Holds()
    first = holds.hold("r-1", T0, DOWN)
    assert first == (
        "registry unavailable since 2026-11-30 00:53:20 UTC: the registry did not answer for "
        "model 'bc' version '2': refused; waiting"
    )
    assert holds.hold("r-1", T0 + 30, DOWN) is None  # already said: no event per tick
    assert "r-1" in holds and "r-2" not in holds
    assert holds.resume("r-2", T0 + 42) is None
    assert holds.resume("r-1", T0 + 42) == "registry answers again after 42 s; resuming"
    assert "r-1" not in holds
    assert holds.resume("r-1", T0 + 43) is None
    holds.hold("r-1", T0 + 50, DOWN)
    holds.hold("r-2", T0 + 50, DOWN)
    holds.keep_only({"r-2"})  # r-1 was aborted while it waited
    assert "r-1" not in holds and "r-2" in holds


def test_each_counted_not_found_answer_is_said_and_ends_without_a_resume_note() -> None:
    holds = Holds()
    one = NotFoundUnconfirmed("the registry says ... (answer 1 of 3, one every 5 s); asking")
    two = NotFoundUnconfirmed("the registry says ... (answer 2 of 3, one every 5 s); asking")
    assert holds.hold("r-1", T0, one) == f"{one}; waiting"
    assert holds.hold("r-1", T0 + 1, one) is None
    assert holds.hold("r-1", T0 + 5, two) == f"{two}; waiting"
    assert holds.resume("r-1", T0 + 10) is None  # what came of it is the next decision
    assert "r-1" not in holds


def test_registry_errors_are_told_apart_and_never_show_the_registry_address() -> None:
    refused = MlflowException(
        "API request to http://10.0.0.7:5000/api/2.0/mlflow/model-versions/get failed with "
        "exception HTTPConnectionPool(host='10.0.0.7', port=5000): Max retries exceeded with "
        "url: /x (Caused by NewConnectionError(...): Failed to establish a new connection: "
        "[Errno 111] Connection refused'))"
    )  # error code INTERNAL_ERROR, as MLflow's HTTP client raises it
    down = registry_error(refused, "model 'bc' version '2'")
    assert isinstance(down, RegistryUnavailable)
    assert str(down) == "the registry did not answer for model 'bc' version '2': connection refused"
    slow = MlflowException("API request to http://10.0.0.7:5000/x failed with timeout exception")
    assert str(registry_error(slow, "v2")) == "the registry did not answer for v2: timed out"
    busy = MlflowException("try later: see https://10.0.0.7/status", TEMPORARILY_UNAVAILABLE)
    assert str(registry_error(busy, "v2")) == (
        "the registry did not answer for v2: try later: see <url>"
    )
    gone = MlflowException("Model Version (name=bc, version=2) not found", RESOURCE_DOES_NOT_EXIST)
    assert isinstance(registry_error(gone, "v2"), VersionNotFound)
    no_alias = MlflowException("Registered model alias x not found.", INVALID_PARAMETER_VALUE)
    assert isinstance(registry_error(no_alias, "@x"), VersionNotFound)
    denied = MlflowException("no", PERMISSION_DENIED)  # an answer, but not "no such version"
    assert isinstance(registry_error(denied, "v2"), RegistryUnavailable)
    assert isinstance(registry_error(ConnectionResetError("reset"), "v2"), RegistryUnavailable)
