"""Watch a value until it settles: the one loop behind ``rollout status --watch`` and the API's
``GET .../status?watch=true``.

:func:`changes` reads, renders and yields the text whenever it differs from the last one yielded
(the first read is always yielded), stops after a read for which ``active`` is false, and
otherwise waits ``interval_s`` before the next read. The wait is a parameter (``time.sleep`` by
default) so a test drives the loop without sleeping; the interval is clamped to
[:data:`MIN_INTERVAL_S`, :data:`MAX_INTERVAL_S`] (NaN counts as the minimum), so a caller can
neither spin nor wait unboundedly. The loop holds no resources: closing the generator stops it.

:func:`stream_changes` is the same loop for the API, on the event loop: ``read`` is awaited
(the API runs the blocking status read in the thread pool only for the read itself), the wait
is ``asyncio.sleep`` (no thread is parked between reads), and the stream ends after ``max_s``
(a deadline per stream) or when it is cancelled (the client went away). The API accepts only
intervals in [:data:`STREAM_MIN_INTERVAL_S`, :data:`STREAM_MAX_INTERVAL_S`] (422 outside).

:func:`rollout_active` is the ``active`` of a status watch: the status shows a rollout that is
still active.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from rollout.manager import Status

T = TypeVar("T")

MIN_INTERVAL_S = 0.05
MAX_INTERVAL_S = 60.0
STREAM_MIN_INTERVAL_S = 0.1
STREAM_MAX_INTERVAL_S = 30.0


def clamp_interval(interval_s: float) -> float:
    """``interval_s`` within [MIN_INTERVAL_S, MAX_INTERVAL_S]; NaN becomes the minimum."""
    if math.isnan(interval_s):
        return MIN_INTERVAL_S
    return min(max(interval_s, MIN_INTERVAL_S), MAX_INTERVAL_S)


def changes(
    read: Callable[[], T],
    render: Callable[[T], str],
    active: Callable[[T], bool],
    interval_s: float,
    wait: Callable[[float], object] = time.sleep,
) -> Iterator[str]:
    """Yield ``render(read())`` on every change, until a read is no longer ``active``."""
    pause_s = clamp_interval(interval_s)
    shown: str | None = None
    while True:
        value = read()
        text = render(value)
        if text != shown:
            shown = text
            yield text
        if not active(value):
            return
        wait(pause_s)


async def stream_changes(
    read: Callable[[], Awaitable[T]],
    render: Callable[[T], str],
    active: Callable[[T], bool],
    interval_s: float,
    max_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> AsyncIterator[str]:
    """:func:`changes` on the event loop, ending after ``max_s`` at the latest."""
    pause_s = clamp_interval(interval_s)
    deadline = clock() + max_s
    shown: str | None = None
    while True:
        value = await read()
        text = render(value)
        if text != shown:
            shown = text
            yield text
        left_s = deadline - clock()
        if not active(value) or left_s <= 0:
            return
        await sleep(min(pause_s, left_s))


def rollout_active(status: Status) -> bool:
    """Whether ``status`` shows a rollout that is still active (a watch goes on)."""
    return status.rollout is not None and status.rollout.active
