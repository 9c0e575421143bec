"""One clock, passed in: the wall clock for what is stored, a monotonic one for intervals.

Every process takes a :class:`Clock` at construction (the router, the plan poller, the
manager, webhooks, the lease) instead of calling :mod:`time` deep inside, so a test can give it
a :class:`ManualClock` and move time by hand rather than sleep.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch: stamps that are stored and compared across
        processes (prediction records, step windows, events)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: deadlines and intervals in one process."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that moves only when told (tests): both readings advance together."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        return self.time()

    def advance(self, seconds: float) -> float:
        """Move on by ``seconds`` (>= 0); returns the new time."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back: advance({seconds})")
        with self._lock:
            self._now += seconds
            return self._now
