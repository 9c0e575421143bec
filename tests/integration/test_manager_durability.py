"""Durability: SIGKILL the manager at random points of a rollout, and two managers on one store.

The manager runs in forked child processes (the real :meth:`Manager.run` loop, lease and all;
forking skips re-importing MLflow, so 20 restarts take seconds). A child is killed with SIGKILL
just before its N-th SQL statement or commit on the store (N random), which lands inside and
between transactions, before and after alias moves. The parent feeds traffic between restarts.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event

from conftest import MODEL, DemoHome, LogWriter, wait_until
from contract.records import PredictionRecord
from contract.sql.engine import open_engine
from rollout.lease import Lease
from rollout.manager import Manager
from rollout.settings import Settings
from rollout.spec import load_spec
from rollout.store.records import RecordStore, RolloutRecord

SPEC = {
    "strategy": {
        "canary": {
            "steps": [
                {"weight": 20, "min_requests": 30},
                {"weight": 60, "min_requests": 30},
                {"weight": 100, "min_requests": 30},
            ]
        }
    },
    # error-free arms pass once 0 errors prove the canary errs at most 25 points more (~30)
    "analysis": {"gates": [{"error_rate": {"max_increase": 0.25}}]},
}
INTERVAL_S = 0.02
LEASE_TTL_S = 0.3


def in_child(body: Callable[[], None]) -> int:
    """Run ``body`` in a forked child; returns its pid (the child never returns)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            body()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    return pid


def wait_child(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return status


def run_manager(settings: Settings, kill_at: int | None) -> None:
    """The manager loop; with ``kill_at``, SIGKILL itself before that store statement."""
    manager = Manager(settings)
    if kill_at is not None:
        seen = [0]

        def count(*_args: Any) -> None:
            seen[0] += 1
            if seen[0] >= kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        event.listen(manager.engine, "before_cursor_execute", count)
        event.listen(manager.engine, "commit", count)
    manager.run(interval_s=INTERVAL_S, lease_ttl_s=LEASE_TTL_S)


def start_rollout(settings: Settings, versions: dict[str, str]) -> None:
    manager = Manager(settings)
    manager.start(MODEL, versions["baseline"], "prod", actor="alice")
    manager.start(MODEL, versions["better"], "prod", load_spec(SPEC), actor="alice")


def feed(log: LogWriter, rollout_id: str, versions: dict[str, str], n: int) -> None:
    now = time.time()
    log.write(
        [
            PredictionRecord(
                request_id=uuid.uuid4().hex,
                ts=now,
                environment="prod",
                model=MODEL,
                version=versions["better" if arm == "canary" else "baseline"],
                arm=arm,
                rollout_id=rollout_id,
                plan_generation=1,
                features=None,
                output=json.dumps([1]),
                latency_ms=10.0,
                error=None,
                status_code=200,
            )
            for arm in ("baseline", "canary")
            for _ in range(n)
        ]
    )


def feed_until_done(
    records: RecordStore, log: LogWriter, rollout_id: str, versions: dict[str, str]
) -> None:
    """Log 5 requests per arm at a time until the running manager finishes the rollout."""

    def feed_then_read() -> RolloutRecord | None:
        feed(log, rollout_id, versions, 5)
        return records.get(rollout_id)

    wait_until(
        feed_then_read,
        f"rollout {rollout_id} to finish",
        until=lambda current: current is not None and not current.active,
        interval_s=0.05,
    )


def assert_one_clean_promotion(home: DemoHome, rollout_id: str) -> None:
    manager = Manager(home.settings)
    try:
        v2 = home.versions["better"]
        record = manager.rollout(rollout_id)
        assert record.state == "succeeded", record.reason
        transitions = [(e.to_state, e.step_index) for e in manager.events(rollout_id)]
        assert transitions == [
            ("pending", 0),
            ("verifying", 0),
            ("progressing", 0),
            ("progressing", 1),
            ("progressing", 2),
            ("promoting", 2),
            ("succeeded", 2),
        ]
        promotions = [r for r in manager.history(MODEL, "prod") if r.rollout_id == rollout_id]
        assert [(r.kind, r.version, r.outcome) for r in promotions] == [
            ("promotion", v2, "succeeded")
        ]
        plan = manager.plans.get("prod", MODEL)
        assert plan is not None and (plan.baseline_version, plan.canary_version) == (v2, None)
        assert manager.registry.alias_version(MODEL, "prod") == v2
    finally:
        manager.close()


@pytest.mark.slow
def test_sigkill_at_20_random_points_ends_with_exactly_one_promotion(home: DemoHome) -> None:
    assert wait_child(in_child(lambda: start_rollout(home.settings, home.versions))) == 0
    engine = open_engine(home.settings.store_url)
    records, log = RecordStore(engine), LogWriter(engine)
    (active,) = records.list_active()
    rng = random.Random(20)
    killed_in: list[tuple[str, int]] = []
    for _ in range(20):
        feed(log, active.id, home.versions, 5)
        engine.dispose()
        status = wait_child(in_child(lambda: run_manager(home.settings, rng.randint(1, 60))))
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        current = records.get(active.id)
        assert current is not None
        killed_in.append((current.state, current.step_index))
    assert len(set(killed_in)) >= 3, killed_in  # the kills spread over the rollout
    engine.dispose()
    survivor = in_child(lambda: run_manager(home.settings, None))
    try:
        feed_until_done(records, log, active.id, home.versions)
    finally:
        os.kill(survivor, signal.SIGKILL)
        wait_child(survivor)
    assert_one_clean_promotion(home, active.id)


@pytest.mark.slow
def test_two_managers_one_acts_and_the_other_takes_over(home: DemoHome) -> None:
    assert wait_child(in_child(lambda: start_rollout(home.settings, home.versions))) == 0
    engine = open_engine(home.settings.store_url)
    records, log = RecordStore(engine), LogWriter(engine)
    (active,) = records.list_active()
    lease = Lease(engine, holder="observer")
    engine.dispose()
    managers = [in_child(lambda: run_manager(home.settings, None)) for _ in range(2)]
    try:
        held = wait_until(lease.holder_now, "a manager to take the lease")
        first_holder = held[0]
        holder_pid = int(first_holder.split(":")[1])
        assert holder_pid in managers
        (standby_pid,) = (pid for pid in managers if pid != holder_pid)
        feed(log, active.id, home.versions, 35)  # enough for the first step
        wait_until(
            lambda: records.get(active.id),
            "the lease holder to pass the first step",
            until=lambda current: current is not None and current.step_index >= 1,
        )
        os.kill(holder_pid, signal.SIGKILL)
        wait_child(holder_pid)
        # The standby takes over once the dead holder's lease expires (LEASE_TTL_S); how soon
        # is a benchmark figure (bench/timings.py).
        taken = wait_until(
            lease.holder_now,
            "the standby manager to take over the lease",
            until=lambda held: held is not None and held[0] != first_holder,
        )
        assert taken is not None and int(taken[0].split(":")[1]) == standby_pid
        feed_until_done(records, log, active.id, home.versions)
    finally:
        for pid in managers:
            try:
                os.kill(pid, signal.SIGKILL)
                wait_child(pid)
            except (ProcessLookupError, ChildProcessError):
                pass
    assert_one_clean_promotion(home, active.id)
