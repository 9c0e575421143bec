"""The shared watch loop: yields on change, stops when inactive, waits a clamped interval."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import pytest

from rollout.manager import Status
from rollout.store.records import RolloutRecord
from rollout.watch import (
    MAX_INTERVAL_S,
    MIN_INTERVAL_S,
    changes,
    clamp_interval,
    rollout_active,
    stream_changes,
)


class Script:
    """Reads that return the given values in turn; waits that are recorded, not slept."""

    def __init__(self, *values: str) -> None:
        self.values = list(values)
        self.reads = 0
        self.waits: list[float] = []

    def read(self) -> str:
        value = self.values[min(self.reads, len(self.values) - 1)]
        self.reads += 1
        return value

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)


def _active(value: str) -> bool:
    return value != "done"


def test_yields_each_change_once_and_stops_after_the_first_inactive_read() -> None:
    script = Script("a", "a", "b", "b", "done", "never read")
    shown = list(changes(script.read, str.upper, _active, 0.5, script.wait))
    assert shown == ["A", "B", "DONE"]
    assert script.reads == 5
    assert script.waits == [0.5, 0.5, 0.5, 0.5]  # between reads, none after the last


def test_an_inactive_first_read_is_shown_once_without_waiting() -> None:
    script = Script("done")
    assert list(changes(script.read, str, _active, 1.0, script.wait)) == ["done"]
    assert script.waits == []


def test_a_change_that_renders_the_same_is_not_shown_again() -> None:
    script = Script("x1", "x2", "done")
    shown = list(changes(script.read, lambda v: v[0], _active, 1.0, script.wait))
    assert shown == ["x", "d"]


def test_closing_the_generator_stops_reading() -> None:
    script = Script("a", "b", "c")
    loop: Iterator[str] = changes(script.read, str, lambda _: True, 1.0, script.wait)
    assert next(loop) == "a"
    assert next(loop) == "b"
    loop.close()
    assert script.reads == 2


@pytest.mark.parametrize(
    ("given", "used"),
    [
        (0.0, MIN_INTERVAL_S),
        (-5.0, MIN_INTERVAL_S),
        (0.01, MIN_INTERVAL_S),
        (0.25, 0.25),
        (3600.0, MAX_INTERVAL_S),
        (math.inf, MAX_INTERVAL_S),
        (math.nan, MIN_INTERVAL_S),
    ],
)
def test_the_interval_is_clamped(given: float, used: float) -> None:
    assert clamp_interval(given) == used
    script = Script("a", "done")
    list(changes(script.read, str, _active, given, script.wait))
    assert script.waits == [used]


def _record(state: str) -> RolloutRecord:
    return RolloutRecord(
        id="r-1", model="bc", environment="prod", strategy="canary", baseline_version="1",
        candidate_version="2", spec="{}", config_hash="h", state=state, step_index=0,
        step_started_at=None, created_at=1.0, updated_at=1.0, started_by="alice",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("state", "expected"),
    [("progressing", True), ("paused", True), ("succeeded", False), ("rolled_back", False)],
)
def test_a_status_watch_goes_on_while_its_rollout_is_active(state: str, expected: bool) -> None:
    status = Status("bc", "prod", None, "1", _record(state))
    assert rollout_active(status) is expected


def test_a_status_without_a_rollout_ends_the_watch() -> None:
    assert rollout_active(Status("bc", "prod", None, None, None)) is False


class Clock:
    """A clock that the recorded async waits move forward."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def test_stream_changes_awaits_reads_and_ends_at_its_deadline() -> None:
    clock = Clock()
    reads: list[float] = []

    async def read() -> str:
        reads.append(clock.now)
        return f"v{len(reads) // 3}"  # changes every third read

    async def collect() -> list[str]:
        stream = stream_changes(read, str, lambda _: True, 2.0, 9.0, clock.time, clock.sleep)
        return [line async for line in stream]

    shown = asyncio.run(collect())
    assert shown == ["v0", "v1", "v2"]
    assert clock.waits == [2.0, 2.0, 2.0, 2.0, 1.0]  # the last wait stops at the deadline
    assert reads == [100.0, 102.0, 104.0, 106.0, 108.0, 109.0]


def test_stream_changes_stops_after_the_first_inactive_read() -> None:
    clock = Clock()
    values = iter(["a", "done"])

    async def read() -> str:
        return next(values)

    async def collect() -> list[str]:
        stream = stream_changes(read, str, _active, 0.5, 60.0, clock.time, clock.sleep)
        return [line async for line in stream]

    assert asyncio.run(collect()) == ["a", "done"]
    assert clock.waits == [0.5]
