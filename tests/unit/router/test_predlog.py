"""The prediction log writer: batched, never blocking a request, counting what it drops."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import replace

from contract.records import InMemoryPredictionLog, PredictionRecord
from router.predlog import LogEntry, PredictionLogWriter


def _entry(n: int, *, features: object = "rows", error: str | None = None) -> LogEntry:
    return LogEntry(
        request_id=f"req-{n}",
        ts=1000.0 + n,
        model="bc",
        version="2",
        arm="canary",
        rollout_id="r1",
        plan_generation=3,
        features=[{"a": float(n)}] if features == "rows" else features,
        output=None if error else [n % 2],
        latency_ms=1.5,
        error=error,
        status_code=500 if error else 200,
    )


class FlakySink:
    """Refuses writes while ``down`` is set; records batch sizes."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.records: list[PredictionRecord] = []
        self.batches: list[int] = []

    def write(self, records: Sequence[PredictionRecord]) -> None:
        if self.down.is_set():
            raise ConnectionError("store is down")
        self.batches.append(len(records))
        self.records.extend(records)


def test_entries_become_records_with_json_features_and_output() -> None:
    sink = InMemoryPredictionLog()
    writer = PredictionLogWriter(sink, "prod", batch_size=10, flush_s=0.05)
    writer.start()
    try:
        assert writer.submit(_entry(1))
        assert writer.submit(_entry(2, features=None, error="model_error: boom"))
        assert writer.flush(5.0)
    finally:
        writer.close()
    first, second = sink.records
    assert json.loads(first.features or "") == [{"a": 1.0}]  # orjson, when installed, is compact
    assert replace(first, features='[{"a": 1.0}]') == PredictionRecord(
        request_id="req-1",
        ts=1001.0,
        environment="prod",
        model="bc",
        version="2",
        arm="canary",
        rollout_id="r1",
        plan_generation=3,
        features='[{"a": 1.0}]',
        output="[1]",
        latency_ms=1.5,
        error=None,
        status_code=200,
    )
    assert second.features is None and second.output is None
    assert (second.error, second.status_code) == ("model_error: boom", 500)
    assert writer.written == 2 and writer.dropped == 0


def test_records_are_written_in_batches() -> None:
    sink = FlakySink()
    writer = PredictionLogWriter(sink, "prod", batch_size=50, flush_s=0.2)
    for n in range(180):  # queued before the thread starts: full batches
        writer.submit(_entry(n))
    writer.start()
    assert writer.flush(5.0)
    writer.close()
    assert sink.batches == [50, 50, 50, 30]
    assert [r.request_id for r in sink.records] == [f"req-{n}" for n in range(180)]


def test_flush_does_not_wait_for_the_flush_interval() -> None:
    sink = FlakySink()
    writer = PredictionLogWriter(sink, "prod", batch_size=1000, flush_s=3600.0)
    writer.start()
    try:
        writer.submit(_entry(1))
        # Done within its 60 s timeout, so long before the hour the writer would sleep: the
        # flush woke it. (How soon is a benchmark figure: bench/timings.py.)
        assert writer.flush(60.0)
        assert len(sink.records) == 1
    finally:
        writer.close()


def test_a_failing_store_drops_and_counts_and_the_writer_recovers() -> None:
    sink = FlakySink()
    dropped: list[int] = []
    writer = PredictionLogWriter(sink, "prod", batch_size=10, flush_s=0.05, on_drop=dropped.append)
    writer.start()
    try:
        sink.down.set()
        for n in range(5):
            assert writer.submit(_entry(n))  # submitting never fails or blocks
        assert writer.flush(5.0)
        assert writer.dropped == 5 and sum(dropped) == 5
        sink.down.clear()
        writer.submit(_entry(99))
        assert writer.flush(5.0)
    finally:
        writer.close()
    assert [r.request_id for r in sink.records] == ["req-99"]
    assert writer.written == 1


class StuckSink:
    """A store that takes a batch and answers only when released (a hung database)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.records: list[PredictionRecord] = []

    def write(self, records: Sequence[PredictionRecord]) -> None:
        self.entered.set()
        assert self.release.wait(60.0), "the test never released the store"
        self.records.extend(records)


def test_a_full_queue_drops_new_entries_without_blocking() -> None:
    """With the store hung and the queue full, a request's submit returns at once, dropping its
    entry: it is answered on the request's own thread while the writer is still stuck."""
    sink = StuckSink()
    dropped: list[int] = []
    writer = PredictionLogWriter(sink, "prod", batch_size=1, queue_size=2, on_drop=dropped.append)
    writer.start()
    try:
        assert writer.submit(_entry(1))  # a full batch: the writer takes it and hangs in write
        assert sink.entered.wait(60.0)
        assert writer.submit(_entry(2)) and writer.submit(_entry(3))  # the queue is full
        answered: list[bool] = []  # submitted from a request's thread, which must not wait
        request = threading.Thread(target=lambda: answered.append(writer.submit(_entry(4))))
        request.start()
        request.join(60.0)
        assert answered == [False], "submit waited for room while the store was hung"
        assert not sink.release.is_set() and writer.dropped == 1 and dropped == [1]
        sink.release.set()
        assert writer.flush(60.0)
    finally:
        sink.release.set()
        writer.close()
    assert [r.request_id for r in sink.records] == ["req-1", "req-2", "req-3"]
    assert writer.written == 3 and writer.dropped == 1


def test_without_a_writer_thread_flush_writes_on_the_callers_thread() -> None:
    sink = InMemoryPredictionLog()
    writer = PredictionLogWriter(sink, "prod", queue_size=2)
    assert writer.submit(_entry(1)) and writer.submit(_entry(2))
    assert not writer.submit(_entry(3))  # full: dropped
    assert writer.flush(1.0)
    assert [r.request_id for r in sink.records] == ["req-1", "req-2"]
    assert writer.dropped == 1


def test_unserializable_output_is_dropped_alone() -> None:
    sink = InMemoryPredictionLog()
    writer = PredictionLogWriter(sink, "prod")
    bad = LogEntry(**{**_entry(1).__dict__, "output": [object()]})
    writer.submit(bad)
    writer.submit(_entry(2))
    assert writer.flush(1.0)
    assert [r.request_id for r in sink.records] == ["req-2"]
    assert writer.dropped == 1
    assert json.loads(sink.records[0].features or "null") == [{"a": 2.0}]
