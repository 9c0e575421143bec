"""Drift reports rendered on a thread of their own, so that no decision waits for one.

Rendering a judged window's Evidently report takes seconds (10 s for the demo's 30 features on
2 cores). Done inside the loop's tick it delayed the next move of the same rollout (a passed
step's promotion), every other rollout's look, and the lease's renewal: with the default 5 s
lease a standby manager would take over during a render. :class:`ReportQueue` takes the
reports the loop's decisions name (:meth:`submit`, never blocking) and renders them in order on
one daemon thread, started at the first; at most ``max_waiting`` wait (one more is skipped with
a warning, as a report is for people and never a condition of a decision). :meth:`flush` waits,
bounded, until every submitted report is written; :meth:`rollout.manager.Manager.close` calls
it, so a command that decided in the CLI's process writes its report before the process ends.
A report that cannot be written is logged by the renderer (:meth:`rollout.evidence.Evidence.
write_report`), never raised.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rollout.lifecycle import StepEvidence
    from rollout.store.records import RolloutRecord

log = logging.getLogger(__name__)

Render = Callable[["RolloutRecord", "StepEvidence", Path], None]
MAX_WAITING = 64


class ReportQueue:
    def __init__(self, render: Render, max_waiting: int = MAX_WAITING) -> None:
        self._render = render
        self._queue: queue.Queue[tuple[RolloutRecord, StepEvidence, Path]] = queue.Queue(
            max_waiting
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, record: RolloutRecord, evidence: StepEvidence, path: Path) -> bool:
        """Queue a report to render; False (logged) when ``max_waiting`` already wait."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="reports", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((record, evidence, path))
        except queue.Full:
            log.warning(
                "drift report %s not written: %d reports already wait to be rendered",
                path,
                self._queue.maxsize,
            )
            return False
        return True

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Wait until every submitted report is written (True), or ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def _run(self) -> None:
        while True:
            record, evidence, path = self._queue.get()
            try:
                self._render(record, evidence, path)
            except Exception:  # the renderer logs its own failures; this is a last guard
                log.exception("drift report %s not written", path)
            finally:
                self._queue.task_done()
