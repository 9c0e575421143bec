"""The prediction log, off the request path: a bounded queue and one writer thread.

A request hands :meth:`PredictionLogWriter.submit` a :class:`LogEntry` (plain Python objects;
nothing is serialized on the request's thread) and goes on. The writer thread turns entries into
:class:`~contract.records.PredictionRecord` rows (features and output as JSON) and writes them
through its :class:`~contract.records.PredictionSink` (:class:`contract.sql.predictions.
SqlPredictionSink` in production) in batches of up to ``batch_size``, at least every ``flush_s``
seconds.
Features are encoded with ``orjson`` when it is installed (several times faster; the same
values, though a float may be spelled ``1e-5`` for ``1e-05`` and a NaN feature becomes
``null``); outputs always with the standard encoder, so a NaN prediction stays ``NaN``.

Nothing here ever blocks or fails a request: when the queue is full, or the store refuses a
batch, the records are dropped and counted (``dropped``, and the ``on_drop`` callback feeding
the router's metric). :meth:`flush` waits until everything submitted so far is written or
dropped (used at shutdown and by tests); :meth:`close` flushes and stops the thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlflow.utils.proto_json_utils import NumpyEncoder

from contract.clock import SYSTEM_CLOCK, Clock
from contract.records import PredictionRecord, PredictionSink
from router.payload import Payload

try:  # optional: serializes a record's features several times faster
    import orjson  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment,unused-ignore]

_log = logging.getLogger(__name__)


@dataclass  # not frozen: built once per request, and a frozen __init__ costs microseconds
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
            features=_dumps(self.features, fast=True),
            output=_dumps(self.output),
            latency_ms=self.latency_ms,
            error=self.error,
            status_code=self.status_code,
        )


def _dumps(value: Any, *, fast: bool = False) -> str | None:
    if value is None:
        return None
    if isinstance(value, Payload):
        value = value.records()
    rows = value if isinstance(value, list) else [value]
    if fast and orjson is not None:
        try:
            return orjson.dumps(rows, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        except (TypeError, orjson.JSONEncodeError):
            pass  # e.g. an integer beyond 64 bits: the standard encoder takes it
    try:
        return json.dumps(rows)  # plain values (the common case): the shared C encoder
    except TypeError:
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
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.sink = sink
        self.clock = clock  # for the warnings' rate limit (a flush waits in real time)
        self.environment = environment
        self.batch_size = batch_size
        self.flush_s = flush_s
        self.on_drop = on_drop
        self.on_write = on_write
        self.queue_size = queue_size
        # A deque, not a queue.Queue: appending wakes nobody. The writer sleeps until a batch is
        # full (``_wake``), a flush asks, or ``flush_s`` passes, so a request never pays for a
        # thread switch.
        self._entries: deque[LogEntry] = deque()
        self._lock = threading.Lock()  # guards _submitted (the loop and the shadow thread submit)
        self._progress = threading.Condition()
        self._submitted = 0  # entries accepted into the queue
        self._settled = 0  # entries written or dropped by the writer
        self._written = 0
        self._dropped = 0
        self._wake = threading.Event()  # a batch is full, a flush waits, or we stop
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
        entries = self._entries
        if len(entries) >= self.queue_size:
            self._count_dropped(1, "the prediction log queue is full")
            return False
        with self._lock:
            entries.append(entry)
            self._submitted += 1
        if len(entries) == self.batch_size:
            self._wake.set()
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
        with self._lock:
            target = self._submitted
        if self._thread is None:
            self._drain()
        with self._progress:
            while self._settled < target:
                self._wake.set()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Flush, then stop the writer thread."""
        flushed = self.flush(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        return flushed

    # -- the writer thread --
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        """Write everything queued now, in batches of at most ``batch_size``."""
        entries = self._entries
        while entries:
            batch: list[LogEntry] = []
            try:
                while len(batch) < self.batch_size:
                    batch.append(entries.popleft())
            except IndexError:
                pass
            self._write(batch)

    def _write(self, batch: list[LogEntry]) -> None:
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
        with self._progress:
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
        with self._lock:
            self._dropped += n
        if self.on_drop is not None:
            self.on_drop(n)
        if why:
            self._warn(why)

    def _warn(self, message: str) -> None:
        now = self.clock.monotonic()
        if now - self._last_warning >= 5.0:  # at most one warning every 5 s
            self._last_warning = now
            _log.warning("%s (records dropped so far: %d)", message, self._dropped)
