"""Who may scrape the manager's metrics, and where: the manager's port and the API's route.

- The manager (``rollout manager``) serves ``/metrics`` on a port of its own when
  ``ROLLOUT_MANAGER_METRICS_PORT`` is set (bound to ``ROLLOUT_MANAGER_METRICS_HOST``, default
  ``127.0.0.1``): open to whoever reaches that port, so keep it on the internal network (compose
  publishes it to no host port). It serves the store's metrics (:mod:`rollout.metrics`) and the
  process's own: ``rollout_manager_decisions_total`` (outcome = the state it moved to, reason =
  the machine's event; the loop's transitions, not commands') and ``rollout_manager_lease_held``
  (1 while this manager holds the lease and acts).
- The API serves ``GET /metrics`` (:mod:`rollout.metrics_api`) on its own port only to a
  scrape token; it serves the store's metrics only.

Both cache the store's answer for ``CACHE_S``: however many scrapers ask, the store is read at
most once a second per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rollout.machine import TRANSITIONS
from rollout.metrics import StoreCollector
from rollout.settings import metrics_address

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from rollout.lifecycle import Decision
    from rollout.manager import Manager

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
CACHE_S: Final = 1.0


class Cached(Collector):
    """``inner``'s metrics, collected at most once per ``ttl_s`` (a lock keeps scrapes apart)."""

    def __init__(
        self, inner: Collector, ttl_s: float = CACHE_S, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._inner, self._ttl_s, self._now = inner, ttl_s, now
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._kept: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            if self._now() - self._at >= self._ttl_s:
                self._kept = list(self._inner.collect())
                self._at = self._now()
            return list(self._kept)


def store_registry(manager: Manager) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(Cached(StoreCollector(manager.engine, manager.clock)))
    return registry


class _LeaseHeld(Collector):
    def __init__(self, manager: Manager) -> None:
        self._manager = manager

    def collect(self) -> Iterable[Metric]:
        held = GaugeMetricFamily(
            "rollout_manager_lease_held", "1 while this manager holds the lease and acts."
        )
        held.add_metric([], 0.0 if self._manager.loop.lease is None else 1.0)
        yield held


def manager_registry(manager: Manager) -> CollectorRegistry:
    """The store's metrics and this manager process's; counts the loop's decisions from now."""
    registry = store_registry(manager)
    registry.register(_LeaseHeld(manager))
    decisions = Counter(
        "rollout_manager_decisions",
        "Transitions this manager's loop made, by outcome (the new state) and reason (event).",
        ["outcome", "reason"],
        registry=registry,
    )

    def count(decision: Decision) -> None:
        decisions.labels(decision.to_state, decision.event or "").inc()

    for (_state, event), rule in TRANSITIONS.items():  # every series from 0: increase() works
        decisions.labels(rule.to_state, event)
    manager.loop.observers.append(count)
    return registry


def serve_manager_metrics(manager: Manager, address: tuple[str, int]) -> WSGIServer:
    """Serve :func:`manager_registry` on ``address`` in a daemon thread; ``shutdown()`` it."""
    server, _thread = start_http_server(address[1], address[0], manager_registry(manager))
    return server


__all__ = [
    "CACHE_S",
    "Cached",
    "manager_registry",
    "metrics_address",
    "serve_manager_metrics",
    "store_registry",
]
