"""The drift reports' own thread (rollout/reports.py): in order, bounded, flushed, and a
renderer that raises does not stop the ones after it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from rollout.reports import ReportQueue


def test_reports_render_in_order_beside_the_caller_and_flush_waits_for_them() -> None:
    gate = threading.Event()
    rendered: list[str] = []

    def render(record: Any, evidence: Any, path: Path) -> None:
        gate.wait(10)
        if path.name == "boom":
            raise RuntimeError("evidently failed")
        rendered.append(path.name)

    reports = ReportQueue(render, max_waiting=3)
    for name in ("a", "boom", "b"):
        assert reports.submit(None, None, Path(name))  # type: ignore[arg-type]
    assert not reports.flush(0.2)  # the first is still rendering: submit never waited
    assert rendered == []
    gate.set()
    assert reports.flush(10)
    assert rendered == ["a", "b"]  # in order; the failure between them was only logged


def test_one_more_than_max_waiting_is_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = threading.Event()
    started = threading.Event()

    def render(record: Any, evidence: Any, path: Path) -> None:
        started.set()
        gate.wait(10)

    reports = ReportQueue(render, max_waiting=2)
    assert reports.submit(None, None, Path("first"))  # type: ignore[arg-type]
    assert started.wait(10)  # taken off the queue: rendering
    assert reports.submit(None, None, Path("second"))  # type: ignore[arg-type]
    assert reports.submit(None, None, Path("third"))  # type: ignore[arg-type]
    assert not reports.submit(None, None, Path("fourth"))  # type: ignore[arg-type]
    assert "drift report fourth not written: 2 reports already wait" in caplog.text
    gate.set()
    assert reports.flush(10)
