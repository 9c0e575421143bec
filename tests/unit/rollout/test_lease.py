"""The manager lease: one holder at a time, take-over after expiry, fencing of writes."""

from __future__ import annotations

import pytest

from contract.clock import ManualClock
from contract.sql.engine import open_engine
from rollout.errors import ConflictError
from rollout.lease import Lease


def test_one_holder_until_expiry_then_take_over_and_fence(store_url: str) -> None:
    engine = open_engine(store_url)
    clock = ManualClock()
    first = Lease(engine, "first", ttl_s=5.0, clock=clock)
    second = Lease(engine, "second", ttl_s=5.0, clock=clock)
    assert first.acquire()
    assert not second.acquire()
    clock.advance(4.0)
    assert first.acquire()  # renewed until 1009
    clock.advance(4.5)
    assert not second.acquire()
    with engine.begin() as conn:
        first.fence(conn)  # still held: extends to 1013.5
    clock.advance(6.0)  # first stalls past its lease
    assert second.acquire()
    assert second.holder_now() == ("second", clock.time() + 5.0)
    lost = "manager first no longer holds the 'manager' lease"
    with pytest.raises(ConflictError, match=lost), engine.begin() as conn:
        first.fence(conn)
    assert not first.acquire()
    second.release()
    assert first.acquire()
    engine.dispose()


def test_ttl_must_be_positive(store_url: str) -> None:
    with pytest.raises(ValueError, match="ttl_s must be > 0, got 0"):
        Lease(open_engine(store_url), ttl_s=0)
