"""Adaptive micro-batching: concurrent requests for one version, predicted in one call.

A :class:`MicroBatcher` lives on the event loop. :meth:`MicroBatcher.predict` queues a request's
matrix and awaits its share of the batch. The first request of a batch schedules the flush:

- ``max_wait_s == 0`` (default): on the next turn of the event loop, so the batch holds exactly
  the requests that arrived together, and a lone request waits for nothing;
- ``max_wait_s > 0``: after at most that long, to let more requests join.

A batch that reaches ``max_size`` rows is flushed at once. The rows of every request are stacked
into one matrix, predicted once (:meth:`router.predictor.Predictor.predict_matrix`) and cut
back per request (:meth:`router.predictor.Predictor.split`), so each reply is what the request
alone would have got. If the batch fails, each request is retried alone, so one request's bad
rows never fail another's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from router.predictor import Prediction, Predictor


class MicroBatcher:
    def __init__(self, predictor: Predictor, max_size: int, max_wait_s: float = 0.0) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        self.predictor = predictor
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._pending: list[tuple[np.ndarray[Any, Any], asyncio.Future[Prediction]]] = []
        self._rows = 0
        self._scheduled: asyncio.Handle | asyncio.TimerHandle | None = None
        self.batches = 0  # predictions made (for tests and metrics)
        self.largest = 0  # most requests in one batch

    async def predict(self, matrix: np.ndarray[Any, Any]) -> Prediction:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        self._pending.append((matrix, future))
        self._rows += len(matrix)
        if self._rows >= self.max_size:
            self._flush()
        elif self._scheduled is None:
            if self.max_wait_s > 0:
                self._scheduled = loop.call_later(self.max_wait_s, self._flush)
            else:
                self._scheduled = loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        pending, self._pending, self._rows = self._pending, [], 0
        pending = [(m, f) for m, f in pending if not f.done()]  # drop cancelled requests
        if not pending:
            return
        self.batches += 1
        self.largest = max(self.largest, len(pending))
        if len(pending) == 1:
            self._settle(*pending[0])
            return
        try:
            stacked = np.concatenate([m for m, _ in pending])
            whole = self.predictor.predict_matrix(stacked)
            parts = self.predictor.split(whole, [len(m) for m, _ in pending])
        except Exception:
            for matrix, future in pending:  # one request's rows must not fail another's
                self._settle(matrix, future)
            return
        for (_, future), part in zip(pending, parts, strict=True):
            future.set_result(part)

    def _settle(self, matrix: np.ndarray[Any, Any], future: asyncio.Future[Prediction]) -> None:
        try:
            future.set_result(self.predictor.predict_matrix(matrix))
        except Exception as exc:
            future.set_exception(exc)
