"""Traffic plans: per (environment, model) the baseline, the canary and its weight, the shadow.

The manager is the only writer (:class:`PlanStore`); routers read them (:class:`PlanSource`) and
apply a plan whole. Every write bumps the plan's ``generation`` so a router can tell it has the
newest one. :class:`InMemoryPlanStore` is the twin of the SQL store
(:class:`contract.sql.plans.SqlPlanStore`); one contract suite runs over both.

A plan also says which release each arm serves (:meth:`TrafficPlan.release_of`), so a reply can
name it: the baseline's is ``baseline_release_id``, the id of the release record that made the
baseline version current in this environment (the newest one that succeeded with that version;
the manager writes it in the transaction that records the release). A candidate under rollout
has no release record until its rollout finishes, so the canary's (and a shadow candidate's)
release is ``rollout:<rollout_id>`` (:attr:`TrafficPlan.canary_release`); the record written
when that rollout ends carries the same ``rollout_id``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Protocol


@dataclass(frozen=True)
class TrafficPlan:
    environment: str
    model: str
    baseline_version: str
    canary_version: str | None = None
    canary_weight_pct: int = 0
    shadow_version: str | None = None
    shadow_fraction: float = 0.0
    sticky_key: str | None = None  # "header:x-user-id" or "field:user_id"; None = x-rollout-key
    rollout_id: str | None = None
    generation: int = 0
    baseline_release_id: int | None = None  # releases.id that made the baseline current

    def __post_init__(self) -> None:
        if not 0 <= self.canary_weight_pct <= 100:
            raise ValueError(f"canary_weight_pct must be 0..100, got {self.canary_weight_pct}")
        if not 0.0 <= self.shadow_fraction <= 1.0:
            raise ValueError(f"shadow_fraction must be 0..1, got {self.shadow_fraction}")
        if self.canary_weight_pct > 0 and self.canary_version is None:
            raise ValueError("a canary weight above 0 needs a canary_version")

    @property
    def canary_release(self) -> str | None:
        """``rollout:<rollout_id>`` while a rollout stages or serves a candidate, else None."""
        if self.rollout_id is None or (self.canary_version is None and self.shadow_version is None):
            return None
        return f"rollout:{self.rollout_id}"

    def release_of(self, version: str) -> str | None:
        """The release serving ``version`` in this plan: the baseline's release id (as text), the
        candidate's :attr:`canary_release`; None when unknown or not one of the plan's versions."""
        if version == self.baseline_version:
            return str(self.baseline_release_id) if self.baseline_release_id is not None else None
        if version in (self.canary_version, self.shadow_version):
            return self.canary_release
        return None

    @property
    def versions(self) -> tuple[str, ...]:
        """Every version this plan needs loaded, baseline first."""
        out = [self.baseline_version]
        for version in (self.canary_version, self.shadow_version):
            if version is not None and version not in out:
                out.append(version)
        return tuple(out)


class PlanSource(Protocol):
    """Where a router reads plans from."""

    def list(self, environment: str | None = None) -> list[TrafficPlan]:
        """Every plan (of ``environment``), ordered by environment and model."""
        ...


class PlanStore(PlanSource, Protocol):
    """Plans as the manager reads and writes them."""

    def get(self, environment: str, model: str) -> TrafficPlan | None: ...

    def put(self, plan: TrafficPlan) -> TrafficPlan:
        """Store ``plan`` with the next generation (1 for a new one); return it as stored."""
        ...


class InMemoryPlanStore:
    """Plans held in memory, generations bumped like the SQL store's (tests, dry runs)."""

    def __init__(self, plans: list[TrafficPlan] | None = None) -> None:
        self._plans: dict[tuple[str, str], TrafficPlan] = {}
        self._lock = threading.Lock()
        for plan in plans or []:
            self.put(plan)

    def get(self, environment: str, model: str) -> TrafficPlan | None:
        with self._lock:
            return self._plans.get((environment, model))

    def put(self, plan: TrafficPlan) -> TrafficPlan:
        with self._lock:
            current = self._plans.get((plan.environment, plan.model))
            stored = replace(plan, generation=(current.generation if current else 0) + 1)
            self._plans[(plan.environment, plan.model)] = stored
            return stored

    def remove(self, environment: str, model: str) -> None:
        with self._lock:
            self._plans.pop((environment, model), None)

    def list(self, environment: str | None = None) -> list[TrafficPlan]:
        with self._lock:
            return [
                plan
                for key, plan in sorted(self._plans.items())
                if environment is None or key[0] == environment
            ]
