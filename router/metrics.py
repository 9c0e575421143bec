"""Prometheus metrics of one router app, in its own ``CollectorRegistry``.

Several apps in one process (tests) never clash, and nothing is registered at import time.
With ``PROMETHEUS_MULTIPROC_DIR`` set (``router.server`` sets it for ``--workers N``), counters
and histograms live in that directory's files and every scrape, whichever worker answers it,
sums all workers (``prometheus_client.multiprocess``); the plan gauges are the answering
worker's own (every worker applies a new plan within a poll).

==================================================  =========  ===============================
metric                                              type       labels
==================================================  =========  ===============================
``rollout_router_requests_total``                   counter    model, version, arm, status,
                                                               release
``rollout_router_request_duration_seconds``         histogram  model, version, arm
``rollout_router_prediction_value``                 histogram  model, version
``rollout_router_canary_failovers_total``           counter    model, version (canary failed,
                                                               the baseline answered)
``rollout_router_shadow_skipped_total``             counter    (too many mirrors waiting)
``rollout_router_plan_generation``                  gauge      model (the applied plan)
``rollout_router_canary_weight_pct``                gauge      model
``rollout_router_version_loaded``                   gauge      model, version (1 = warmed)
``rollout_router_prediction_log_written_total``     counter
``rollout_router_prediction_log_dropped_total``     counter
==================================================  =========  ===============================

``version`` and ``arm`` are empty for requests refused before a version was chosen; ``arm`` is
``baseline``, ``canary``, ``pinned`` or ``shadow``. ``release`` is the release of the version
that served (the ``x-release-id`` reply header: a release record id, or ``rollout:<id>`` for a
candidate under rollout), empty when unknown; it takes one value per release or rollout, so it
grows no faster than ``version``. The prediction histogram takes each row's
number (a class label or a value; the last column's for rows of scores), up to
``MAX_OBSERVED_ROWS`` rows per request, so its cost per request is bounded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
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
PREDICTION_BUCKETS = (-1.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 5.0, 10.0)
MAX_OBSERVED_ROWS: Final = 8
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self._children: dict[tuple[str, str, str, int, str], tuple[Any, Any]] = {}
        self.requests = Counter(
            "rollout_router_requests",
            "Inference requests, by the version, arm and release that served them and the HTTP "
            "status.",
            ["model", "version", "arm", "status", "release"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rollout_router_request_duration_seconds",
            "Inference latency in the router, from the request's arrival to its reply.",
            ["model", "version", "arm"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.predictions = Histogram(
            "rollout_router_prediction_value",
            "Predicted values (per row; a score row's last column), by version.",
            ["model", "version"],
            buckets=PREDICTION_BUCKETS,
            registry=self.registry,
        )
        self.failovers = Counter(
            "rollout_router_canary_failovers",
            "Canary predictions that failed or timed out and were answered by the baseline.",
            ["model", "version"],
            registry=self.registry,
        )
        self.shadow_skipped = Counter(
            "rollout_router_shadow_skipped",
            "Requests not mirrored to the shadow version because too many mirrors waited.",
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

    def observe(
        self,
        model: str,
        version: str,
        arm: str,
        status: int,
        seconds: float,
        outputs: Any = None,
        release: str = "",
    ) -> None:
        key = (model, version, arm, status, release)
        children = self._children.get(key)
        if children is None:
            latency = self.latency.labels(model, version, arm) if version else None
            children = (self.requests.labels(model, version, arm, str(status), release), latency)
            if len(self._children) < 10_000:
                self._children[key] = children
        children[0].inc()
        if children[1] is not None:
            children[1].observe(seconds)
        if outputs is not None and isinstance(outputs, list):
            self._observe_values(model, version, outputs)

    def _observe_values(self, model: str, version: str, outputs: list[Any]) -> None:
        histogram = None
        for row in outputs[:MAX_OBSERVED_ROWS]:
            value = row[-1] if isinstance(row, list) and row else row
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if histogram is None:
                histogram = self.predictions.labels(model, version)
            histogram.observe(float(value))

    def watch_plans(self, status: Callable[[], PlanStatus]) -> None:
        """Export the applied plans, read at every scrape."""
        self._plans = _PlanCollector(status)
        self.registry.register(self._plans)

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        plans = getattr(self, "_plans", None)
        if plans is not None:
            registry.register(plans)
        return generate_latest(registry)


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
