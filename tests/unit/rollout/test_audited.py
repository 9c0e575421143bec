"""One audited call → one audit row; a row that cannot be appended is reported, never raised."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from contract.sql.engine import open_engine
from rollout.audited import DENIALS_PER_ADDRESS, Call, Denials, http_outcome, record
from rollout.store.audit import AuditLog

KEY = b"k" * 32


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "allowed"), (201, "allowed"), (307, "redirected"), (308, "redirected"),
     (401, "denied"), (403, "denied"), (404, "failed"), (409, "failed"), (422, "failed"),
     (500, "failed")],
)  # fmt: skip
def test_http_outcome(status: int, outcome: str) -> None:
    assert http_outcome(status) == outcome


def test_a_call_becomes_one_row(tmp_path: Path) -> None:
    audit = AuditLog(open_engine(f"sqlite:///{tmp_path / 'store.db'}"), KEY)
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
    audit = AuditLog(create_engine("sqlite://"), KEY)  # a database without the store's tables
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
    audit = AuditLog(create_engine("sqlite://"), KEY)
    with caplog.at_level(logging.ERROR, logger="rollout.audited"):
        assert record(audit, Call("start"), "denied", 403) is None
    (logged,) = caplog.records
    assert logged.getMessage().startswith(
        "could not append to the audit log: start - in - by anonymous (denied, 403): "
    )
    assert logged.exc_info is not None


def _denied(address: str, verb: str = "abort", model: str = "bc") -> Call:
    path = f"/v1/models/{model}/environments/prod/{verb}"
    return Call(verb, model, "prod", "anonymous", {}, address, "flood/1", path)


def test_identical_denials_are_one_row_and_a_count() -> None:
    denials = Denials(window_s=60.0)
    admitted = [denials.admit(_denied("10.0.0.9"), 401, 1000.0 + i * 0.01) for i in range(1000)]
    assert [ok for ok, _ in admitted].count(True) == 1  # the first one
    assert all(due == [] for _, due in admitted)
    assert denials.due(1059.0) == []  # the window is still open
    ((summary, count),) = denials.due(1060.0)
    assert count == 999
    assert (summary.identity, summary.verb, summary.address, summary.path) == (
        "anonymous", "abort", "10.0.0.9", "/v1/models/bc/environments/prod/abort",
    )  # fmt: skip
    assert summary.detail["suppressed"] is True and summary.detail["over_limit"] is False
    assert (summary.detail["first_ts"], summary.detail["status_code"]) == (1000.01, 401)
    assert denials.due(2000.0) == []  # nothing more to say
    assert denials.admit(_denied("10.0.0.9"), 401, 2000.0)[0] is True  # a new window


def test_an_address_gets_a_bounded_number_of_rows_per_window() -> None:
    denials = Denials(window_s=60.0)
    admitted = [
        denials.admit(_denied("10.0.0.9", model=f"m{i}"), 403, 1000.0)[0] for i in range(500)
    ]
    assert admitted.count(True) == DENIALS_PER_ADDRESS
    assert denials.admit(_denied("10.0.0.10"), 403, 1000.0)[0] is True  # another address
    ((summary, count),) = denials.due(0.0, all_of_them=True)  # shutdown: all of them now
    assert (count, summary.detail["over_limit"], summary.address) == (
        500 - DENIALS_PER_ADDRESS, True, "10.0.0.9",
    )  # fmt: skip


def test_many_addresses_together_get_a_bounded_number_of_rows() -> None:
    denials = Denials(window_s=60.0, max_rows=50)
    admitted = [
        denials.admit(_denied(f"10.1.{i // 250}.{i % 250}"), 401, 1.0)[0] for i in range(5000)
    ]
    assert admitted.count(True) == 50
    summaries = denials.due(0.0, all_of_them=True)
    assert len(summaries) == 1001  # one per address beyond the limit, then one for the rest
    assert sum(count for _, count in summaries) == 5000 - 50
    (rest,) = [(call, count) for call, count in summaries if call.address == "*"]
    assert rest[1] == 5000 - 50 - 1000 and rest[0].detail["over_limit"] is True
