"""One audited call → one audit row; a row that cannot be appended is reported, never raised."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from contract.sql.engine import open_engine
from rollout.audited import Call, http_outcome, record
from rollout.store.audit import AuditLog


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "allowed"), (201, "allowed"), (401, "denied"), (403, "denied"), (404, "failed"),
     (409, "failed"), (422, "failed"), (500, "failed")],
)  # fmt: skip
def test_http_outcome(status: int, outcome: str) -> None:
    assert http_outcome(status) == outcome


def test_a_call_becomes_one_row(tmp_path: Path) -> None:
    audit = AuditLog(open_engine(f"sqlite:///{tmp_path / 'store.db'}"))
    call = Call("pause", "bc", "prod", "alice", {"via": "cli", "reason": None})
    entry = record(audit, call, "failed", 2, report=pytest.fail)
    assert entry is not None
    (row,) = audit.list()
    assert row.to_dict() | {"ts": 0.0} == entry.to_dict() | {"ts": 0.0}
    assert (row.identity, row.verb, row.model, row.environment) == ("alice", "pause", "bc", "prod")
    assert (row.outcome, row.status_code) == ("failed", 2)
    assert row.to_dict()["detail"] == {"via": "cli", "reason": None}
    audit.engine.dispose()


def test_a_failed_append_is_reported_with_the_call_and_not_raised() -> None:
    audit = AuditLog(create_engine("sqlite://"))  # a database without the store's tables
    reported: list[str] = []
    call = Call("promote", "bc", "prod", "bob")
    assert record(audit, call, "allowed", 200, report=reported.append) is None
    (message,) = reported
    assert message.startswith(
        "could not append to the audit log: promote bc in prod by bob (allowed, 200): "
    )
    assert "no such table: audit_log" in message


def test_by_default_a_failed_append_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    audit = AuditLog(create_engine("sqlite://"))
    with caplog.at_level(logging.ERROR, logger="rollout.audited"):
        assert record(audit, Call("start"), "denied", 403) is None
    (logged,) = caplog.records
    assert logged.getMessage().startswith(
        "could not append to the audit log: start - in - by anonymous (denied, 403): "
    )
    assert logged.exc_info is not None
