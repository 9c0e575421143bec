"""Prometheus metrics of one router app, in its own ``CollectorRegistry``.

Several apps in one process (tests) never clash, and nothing is registered at import time.

==================================================  =========  ===============================
metric                                              type       labels
==================================================  =========  ===============================
``rollout_router_requests_total``                   counter    model, version, arm, status
``rollout_router_request_duration_seconds``         histogram  model, version, arm
``rollout_router_plan_generation``                  gauge      model (the applied plan)
``rollout_router_canary_weight_pct``                gauge      model
``rollout_router_version_loaded``                   gauge      model, version (1 = warmed)
``rollout_router_prediction_log_written_total``     counter
``rollout_router_prediction_log_dropped_total``     counter
==================================================  =========  ===============================

``version`` and ``arm`` are empty for requests refused before a version was chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router.plans import PlanStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "rollout_router_requests",
            "Inference requests, by the version and arm that served them and the HTTP status.",
            ["model", "version", "arm", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rollout_router_request_duration_seconds",
            "Inference latency in the router, from the request's arrival to its reply.",
            ["model", "version", "arm"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.log_written = Counter(
            "rollout_router_prediction_log_written",
            "Prediction records written to the store.",
            registry=self.registry,
        )
        self.log_dropped = Counter(
            "rollout_router_prediction_log_dropped",
            "Prediction records dropped (queue full or store unavailable).",
            registry=self.registry,
        )

    def observe(self, model: str, version: str, arm: str, status: int, seconds: float) -> None:
        self.requests.labels(model, version, arm, str(status)).inc()
        if version:
            self.latency.labels(model, version, arm).observe(seconds)

    def watch_plans(self, status: Callable[[], PlanStatus]) -> None:
        """Export the applied plans, read at every scrape."""
        self.registry.register(_PlanCollector(status))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PlanCollector(Collector):
    def __init__(self, status: Callable[[], PlanStatus]) -> None:
        self._status = status

    def collect(self) -> Iterable[Metric]:
        status = self._status()
        generation = GaugeMetricFamily(
            "rollout_router_plan_generation",
            "Generation of the traffic plan the router applies, per model.",
            labels=["model"],
        )
        weight = GaugeMetricFamily(
            "rollout_router_canary_weight_pct",
            "Canary weight of the applied plan, in percent.",
            labels=["model"],
        )
        loaded = GaugeMetricFamily(
            "rollout_router_version_loaded",
            "1 when a version the plans need is loaded and warmed, else 0.",
            labels=["model", "version"],
        )
        for model, active in sorted(status.active.items()):
            generation.add_metric([model], active.plan.generation)
            weight.add_metric([model], active.plan.canary_weight_pct)
        for model, plan in sorted(status.latest.items()):
            for version in plan.versions:
                loaded.add_metric(
                    [model, version], 1.0 if (model, version) in status.loaded else 0.0
                )
        yield generation
        yield weight
        yield loaded
