"""The plan poller: new plans are applied whole or not at all, and only once loaded."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from contract.clock import ManualClock
from contract.plans import InMemoryPlanStore, TrafficPlan
from rollout.errors import RegistryError
from router.plans import PlanPoller, PlanStatus
from router.predictor import Predictor

ENV = "prod"


class Constant:
    """A pyfunc-like model without a signature that answers its version for every row."""

    metadata = None

    def __init__(self, version: str) -> None:
        self.version = version

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> list[str]:
        return [self.version] * len(data)


class Loader:
    """Loads ``Constant`` models; versions in ``broken`` fail; ``gate`` can hold a load."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.broken: set[str] = set()
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def load(self, model: str, version: str) -> Predictor:
        self.calls.append((model, version))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if version in self.broken:
            raise RegistryError(f"cannot load {model} v{version}: artifact missing")
        return Predictor(model, version, Constant(version))


def _plan(
    baseline: str, canary: str | None = None, weight: int = 0, model: str = "bc"
) -> TrafficPlan:
    return TrafficPlan(ENV, model, baseline, canary, weight)


@pytest.fixture
def parts() -> tuple[InMemoryPlanStore, Loader, ManualClock, PlanPoller]:
    source = InMemoryPlanStore()
    loader = Loader()
    clock = ManualClock()
    poller = PlanPoller(source, loader, ENV, poll_s=0.05, retry_s=2.0, clock=clock)
    return source, loader, clock, poller


def test_a_plan_is_applied_with_every_version_loaded(parts: Any) -> None:
    source, loader, _, poller = parts
    assert poller.status().not_ready()[0]["reason"] == "the traffic plans have not been read yet"
    source.put(_plan("1", "2", 30))
    poller.poll_once()
    active = poller.active["bc"]
    assert (active.plan.generation, active.plan.canary_weight_pct) == (1, 30)
    assert sorted(active.predictors) == ["1", "2"]
    assert loader.calls == [("bc", "1"), ("bc", "2")]
    assert poller.status().not_ready() == []


def test_no_plan_is_not_ready() -> None:
    poller = PlanPoller(InMemoryPlanStore(), Loader(), ENV)
    poller.poll_once()
    assert poller.status().not_ready() == [
        {"model": "", "version": "", "reason": "no traffic plan for environment 'prod'"}
    ]


def test_a_weight_change_swaps_without_reloading(parts: Any) -> None:
    source, loader, _, poller = parts
    source.put(_plan("1", "2", 0))
    poller.poll_once()
    before = poller.active["bc"]
    source.put(_plan("1", "2", 100))
    poller.poll_once()
    after = poller.active["bc"]
    assert (after.plan.generation, after.plan.canary_weight_pct) == (2, 100)
    assert after.predictors["2"] is before.predictors["2"]
    assert len(loader.calls) == 2


def test_a_version_that_fails_keeps_the_previous_plan(parts: Any) -> None:
    source, loader, clock, poller = parts
    source.put(_plan("1", "2", 30))
    poller.poll_once()
    loader.broken.add("3")
    source.put(_plan("1", "3", 10))
    poller.poll_once()
    assert poller.active["bc"].plan.canary_version == "2"  # still the old plan, whole
    assert poller.status().not_ready() == [
        {
            "model": "bc",
            "version": "3",
            "reason": "RegistryError: cannot load bc v3: artifact missing",
        }
    ]
    # Retried with back-off, not on every poll.
    poller.poll_once()
    assert loader.calls.count(("bc", "3")) == 1
    clock.advance(2.5)
    loader.broken.clear()
    poller.poll_once()
    assert loader.calls.count(("bc", "3")) == 2
    assert poller.active["bc"].plan.canary_version == "3"
    assert poller.status().not_ready() == []


def test_versions_no_plan_uses_are_dropped(parts: Any) -> None:
    source, loader, _, poller = parts
    source.put(_plan("1", "2", 30))
    poller.poll_once()
    source.put(_plan("2"))  # promoted: v1 is no longer needed
    poller.poll_once()
    assert poller.status().loaded == {("bc", "2")}
    source.put(_plan("2", "1", 5))  # needed again: loaded again
    poller.poll_once()
    assert loader.calls == [("bc", "1"), ("bc", "2"), ("bc", "1")]


def test_a_model_whose_plan_disappears_is_dropped(parts: Any) -> None:
    source, _, _, poller = parts
    source.put(_plan("1"))
    source.put(_plan("7", model="fraud"))
    poller.poll_once()
    assert sorted(poller.active) == ["bc", "fraud"]
    source.remove(ENV, "fraud")
    poller.poll_once()
    assert sorted(poller.active) == ["bc"]
    assert poller.status().loaded == {("bc", "1")}


def test_an_unreadable_store_changes_nothing(parts: Any) -> None:
    source, _, _, poller = parts
    source.put(_plan("1"))
    poller.poll_once()

    def fail(environment: str | None = None) -> list[TrafficPlan]:
        raise ConnectionError("database is down")

    source.list = fail  # type: ignore[method-assign]
    poller.poll_once()
    status = poller.status()
    assert status.poll_error == "cannot read traffic plans: ConnectionError: database is down"
    assert status.active["bc"].plan.baseline_version == "1"
    assert status.not_ready() == []  # still serving the plan it has


def test_a_plan_is_not_active_before_its_versions_are_loaded(parts: Any) -> None:
    source, loader, _, poller = parts
    source.put(_plan("1"))
    poller.poll_once()
    loader.gate = threading.Event()
    loader.entered.clear()
    source.put(_plan("1", "2", 50))
    applying = threading.Thread(target=poller.poll_once)
    applying.start()
    assert loader.entered.wait(5)
    # While v2 loads, requests still see generation 1, and readiness says why.
    assert poller.active["bc"].plan.generation == 1
    assert poller.status().not_ready() == [{"model": "bc", "version": "2", "reason": "loading"}]
    loader.gate.set()
    applying.join(5)
    assert poller.active["bc"].plan.generation == 2


def test_the_background_thread_follows_changes(parts: Any) -> None:
    source, _, _, poller = parts
    source.put(_plan("1", "2", 0))
    poller.start()
    try:

        def at(generation: int) -> Any:
            def check(status: PlanStatus) -> bool:
                active = status.active.get("bc")
                return active is not None and active.plan.generation == generation

            return check

        assert poller.wait_until(at(1), timeout=5)
        source.put(_plan("1", "2", 100))
        assert poller.wait_until(at(2), timeout=1)
    finally:
        poller.stop()
