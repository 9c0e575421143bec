"""The prediction log, off the request path: a bounded queue and one writer thread.

A request hands :meth:`PredictionLogWriter.submit` a :class:`LogEntry` (plain Python objects;
nothing is serialized on the request's thread) and goes on. The writer thread turns entries into
:class:`rollout.store.PredictionRecord` rows (features and output as JSON) and writes them with
``PredictionLog.write`` in batches of up to ``batch_size``, at least every ``flush_s`` seconds.

Nothing here ever blocks or fails a request: when the queue is full, or the store refuses a
batch, the records are dropped and counted (``dropped``, and the ``on_drop`` callback feeding
the router's metric). :meth:`flush` waits until everything submitted so far is written or
dropped (used at shutdown and by tests); :meth:`close` flushes and stops the thread.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mlflow.utils.proto_json_utils import NumpyEncoder

from rollout.store import Feedback, PredictionRecord
from router.payload import Payload

_log = logging.getLogger(__name__)


class PredictionSink(Protocol):
    """Where records go: ``rollout.store.PredictionLog`` in production."""

    def write(self, records: Sequence[PredictionRecord]) -> None: ...


class FeedbackSink(Protocol):
    """Where delayed labels go: ``rollout.store.PredictionLog`` in production."""

    def add_feedback(self, labels: Sequence[Feedback]) -> None: ...


class InMemoryPredictionSink:
    """Keeps written records and labels in lists (tests, dry runs)."""

    def __init__(self) -> None:
        self.records: list[PredictionRecord] = []
        self.labels: list[Feedback] = []
        self._lock = threading.Lock()

    def write(self, records: Sequence[PredictionRecord]) -> None:
        with self._lock:
            self.records.extend(records)

    def add_feedback(self, labels: Sequence[Feedback]) -> None:
        with self._lock:
            self.labels.extend(labels)


@dataclass(frozen=True)
class LogEntry:
    """One request, as the router saw it. ``features``/``output`` are JSON-able objects."""

    request_id: str
    ts: float
    model: str
    version: str
    arm: str
    rollout_id: str | None
    plan_generation: int
    features: Any  # input rows: a list, or a Payload (rows built on the writer thread); or None
    output: Any  # list of predictions; None on error
    latency_ms: float
    error: str | None
    status_code: int

    def to_record(self, environment: str) -> PredictionRecord:
        return PredictionRecord(
            request_id=self.request_id,
            ts=self.ts,
            environment=environment,
            model=self.model,
            version=self.version,
            arm=self.arm,
            rollout_id=self.rollout_id,
            plan_generation=self.plan_generation,
            features=_dumps(self.features),
            output=_dumps(self.output),
            latency_ms=self.latency_ms,
            error=self.error,
            status_code=self.status_code,
        )


def _dumps(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Payload):
        value = value.records()
    rows = value if isinstance(value, list) else [value]
    return json.dumps(rows, cls=NumpyEncoder)


class PredictionLogWriter:
    def __init__(
        self,
        sink: PredictionSink,
        environment: str,
        *,
        batch_size: int = 256,
        flush_s: float = 0.25,
        queue_size: int = 10_000,
        on_drop: Callable[[int], None] | None = None,
        on_write: Callable[[int], None] | None = None,
    ) -> None:
        self.sink = sink
        self.environment = environment
        self.batch_size = batch_size
        self.flush_s = flush_s
        self.on_drop = on_drop
        self.on_write = on_write
        self._queue: queue.Queue[LogEntry] = queue.Queue(maxsize=queue_size)
        self._progress = threading.Condition()
        self._submitted = 0  # entries accepted into the queue
        self._settled = 0  # entries written or dropped by the writer
        self._written = 0
        self._dropped = 0
        self._hurry = threading.Event()  # a flush is waiting: write without collecting more
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_warning = 0.0

    @property
    def written(self) -> int:
        return self._written

    @property
    def dropped(self) -> int:
        return self._dropped

    # -- the request side --
    def submit(self, entry: LogEntry) -> bool:
        """Queue ``entry`` without blocking; False (and counted as dropped) if the queue is full."""
        with self._progress:
            try:
                self._queue.put_nowait(entry)
            except queue.Full:
                self._count_dropped(1, "the prediction log queue is full")
                return False
            self._submitted += 1
        return True

    # -- lifecycle --
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="router-prediction-log", daemon=True)
        self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every entry submitted so far is written or dropped; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._progress:
            target = self._submitted
            if self._thread is None and self._settled < target:
                self._drain_inline()
            self._hurry.set()
            try:
                while self._settled < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._progress.wait(remaining)
            finally:
                self._hurry.clear()
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Flush, then stop the writer thread."""
        flushed = self.flush(timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        return flushed

    # -- the writer thread --
    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._collect()
            if batch:
                self._write(batch)

    def _collect(self) -> list[LogEntry]:
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.flush_s
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._hurry.is_set() or self._stop.is_set():
                break
            try:
                batch.append(self._queue.get(timeout=min(remaining, 0.05)))
            except queue.Empty:
                continue
        return batch

    def _drain_inline(self) -> None:
        """Write what is queued on the caller's thread (the writer thread is not running)."""
        while True:
            batch: list[LogEntry] = []
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return
            self._write(batch, notify=False)

    def _write(self, batch: list[LogEntry], *, notify: bool = True) -> None:
        records = []
        failed = 0
        for entry in batch:
            try:
                records.append(entry.to_record(self.environment))
            except (TypeError, ValueError) as exc:
                failed += 1
                self._warn(f"cannot serialize prediction record {entry.request_id}: {exc}")
        try:
            self.sink.write(records)
        except Exception as exc:
            failed += len(records)
            records = []
            self._warn(f"cannot write {len(batch)} prediction records: {type(exc).__name__}: {exc}")
        if notify:
            with self._progress:
                self._settle(len(records), failed)
        else:
            self._settle(len(records), failed)

    def _settle(self, written: int, failed: int) -> None:
        """Count a finished batch; the caller holds ``_progress``."""
        self._written += written
        if written and self.on_write is not None:
            self.on_write(written)
        if failed:
            self._count_dropped(failed, None)
        self._settled += written + failed
        self._progress.notify_all()

    def _count_dropped(self, n: int, why: str | None) -> None:
        self._dropped += n
        if self.on_drop is not None:
            self.on_drop(n)
        if why:
            self._warn(why)

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 5.0:  # at most one warning every 5 s
            self._last_warning = now
            _log.warning("%s (records dropped so far: %d)", message, self._dropped)
