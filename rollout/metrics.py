"""What the store says about rollouts, as Prometheus metrics read at scrape time.

:class:`StoreCollector` is a ``prometheus_client`` collector: every scrape runs a fixed set of
queries, each with a ``LIMIT`` (:data:`MAX_ROWS`), so a scrape costs the same however long the
store's history is. The manager's metrics port and the API's ``/metrics``
(:mod:`rollout.metrics_http`) both serve it; the manager adds its own process's series.
A store that does not answer gives ``rollout_store_up 0`` and nothing else, never an error.

=================================================  ==========================================
metric (all gauges)                                labels
=================================================  ==========================================
``rollout_store_up``                               (1: the queries answered)
``rollout_phase``                                  model, environment, phase (1 for the newest
                                                   rollout's state, 0 for every other state)
``rollout_info``                                   model, environment, rollout_id, baseline,
                                                   candidate, strategy
``rollout_step_index``                             model, environment (from 0)
``rollout_time_in_state_seconds``                  model, environment, phase
``rollout_alpha_spent``                            model, environment (the error budget the
                                                   blocking gates hold: spent at the start)
``rollout_canary_weight_pct``                      model, environment (the traffic plan's)
``rollout_plan_generation``                        model, environment
``rollout_plan_version_info``                      model, environment, arm, version
``rollout_window_requests``                        model, environment, arm (the newest look)
``rollout_look_timestamp_seconds``                 model, environment
``rollout_gate_effect``                            model, environment, gate
``rollout_gate_lower_bound`` / ``_upper_bound``    model, environment, gate
``rollout_gate_threshold``                         model, environment, gate
``rollout_gate_blocking``                          model, environment, gate
``rollout_gate_verdict``                           model, environment, gate, verdict (1/0)
``rollout_monitor_window_requests``                model, environment, version (the newest
                                                   closed monitoring window); also ``_errors``,
                                                   ``_labelled``, ``_wrong``
``rollout_monitor_window_end_timestamp_seconds``   model, environment, version
``rollout_monitor_alarm``                          model, environment, version (1: it alarmed)
``rollout_webhook_deliveries``                     status (``pending``, ``retrying``, ``failed``)
``rollout_lease_info``                             name, holder (1)
``rollout_lease_expires_timestamp_seconds``        name
``rollout_audit_head_count``                       (rows in the audit chain: its last id)
``rollout_audit_head_info``                        hash (1: the chain's newest hash)
=================================================  ==========================================

A gate's bounds exist only once measured: a missing bound is a missing series, not a NaN.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Final

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, and_, case, func, select
from sqlalchemy.exc import SQLAlchemyError

from contract.clock import Clock
from contract.sql.schema import (
    audit_log,
    look_bounds,
    manager_leases,
    monitor_windows,
    rollout_events,
    rollouts,
    traffic_plans,
    webhook_deliveries,
)
from monitors.names import VERDICTS
from rollout.lifecycle import ACTIVE_STATES, TERMINAL_STATES

log = logging.getLogger(__name__)

MAX_ROWS: Final = 500  # the most (model, environment) pairs or windows one scrape reads
MAX_GATES: Final = 64  # the most gate rows read from one look
PHASES: Final = (*ACTIVE_STATES, *sorted(TERMINAL_STATES))
PAIR: Final = ["model", "environment"]


def _gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=[*PAIR, *labels])


class StoreCollector(Collector):
    """Rollouts, plans, looks, monitoring windows, webhooks, the lease and the audit head."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self._alpha: dict[str, float] = {}  # rollout id → its alpha (a spec never changes)

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("rollout_store_up", "1 when the store answered this scrape.")
        try:
            with self.engine.connect() as conn:
                families = list(self._families(conn, self.clock.time()))
        except SQLAlchemyError as exc:
            log.warning("metrics: the store did not answer: %s", exc)
            up.add_metric([], 0.0)
            return [up]
        up.add_metric([], 1.0)
        return [up, *families]

    def _families(self, conn: Connection, now: float) -> Iterator[Metric]:
        yield from self._rollouts(conn, now)
        yield from self._plans(conn)
        yield from self._monitor_windows(conn)
        yield from self._webhooks(conn)
        yield from self._lease(conn)
        yield from self._audit_head(conn)

    def _rollouts(self, conn: Connection, now: float) -> Iterator[Metric]:
        phase = _gauge("rollout_phase", "1 for the state of the newest rollout, else 0.", "phase")
        info = _gauge(
            "rollout_info",
            "The newest rollout of a model in an environment (value 1).",
            "rollout_id",
            "baseline",
            "candidate",
            "strategy",
        )
        step = _gauge("rollout_step_index", "The rollout's step, from 0.")
        in_state = _gauge(
            "rollout_time_in_state_seconds", "Seconds since the rollout entered its state.", "phase"
        )
        alpha = _gauge(
            "rollout_alpha_spent",
            "The error budget the rollout's blocking gates hold (all spent at the start).",
        )
        newest = (
            select(rollouts.c.environment, rollouts.c.model, func.max(rollouts.c.created_at))
            .group_by(rollouts.c.environment, rollouts.c.model)
            .subquery()
        )
        cols = newest.c
        query = (
            select(rollouts)
            .join(
                newest,
                and_(
                    rollouts.c.environment == cols.environment,
                    rollouts.c.model == cols.model,
                    rollouts.c.created_at == cols[2],
                ),
            )
            .order_by(rollouts.c.environment, rollouts.c.model)
            .limit(MAX_ROWS)
        )
        rows = conn.execute(query).mappings().all()
        entered = _entered(conn, [row["id"] for row in rows])
        active = []
        for row in rows:
            pair = [row["model"], row["environment"]]
            for name in PHASES:
                phase.add_metric([*pair, name], 1.0 if row["state"] == name else 0.0)
            info.add_metric(
                [
                    *pair,
                    row["id"],
                    row["baseline_version"] or "",
                    row["candidate_version"],
                    row["strategy"],
                ],
                1.0,
            )
            step.add_metric(pair, float(row["step_index"]))
            since = entered.get(row["id"], row["updated_at"])
            in_state.add_metric([*pair, row["state"]], max(0.0, now - since))
            alpha.add_metric(pair, self._alpha_of(row["id"], row["spec"]))
            if row["state"] in ACTIVE_STATES:
                active.append((row["id"], pair))
        yield from (phase, info, step, in_state, alpha)
        yield from _looks(conn, active)

    def _alpha_of(self, rollout_id: str, spec: str) -> float:
        if rollout_id not in self._alpha:
            from rollout.judge import blocking
            from rollout.stored import parse_spec

            analysis = parse_spec(spec).analysis
            deciding = sum(blocking(entry) for entry in analysis.effective_gates)
            share = analysis.alpha if analysis.correction == "none" else analysis.alpha / deciding
            if len(self._alpha) >= MAX_ROWS:
                self._alpha.clear()
            self._alpha[rollout_id] = share * deciding if deciding else 0.0
        return self._alpha[rollout_id]

    def _plans(self, conn: Connection) -> Iterator[Metric]:
        weight = _gauge("rollout_canary_weight_pct", "The traffic plan's canary weight, percent.")
        generation = _gauge("rollout_plan_generation", "The traffic plan's generation.")
        versions = _gauge(
            "rollout_plan_version_info", "The versions the traffic plan serves.", "arm", "version"
        )
        query = select(traffic_plans).order_by(traffic_plans.c.environment, traffic_plans.c.model)
        for row in conn.execute(query.limit(MAX_ROWS)).mappings():
            pair = [row["model"], row["environment"]]
            weight.add_metric(pair, float(row["canary_weight_pct"]))
            generation.add_metric(pair, float(row["generation"]))
            for arm in ("baseline", "canary", "shadow"):
                if row[f"{arm}_version"]:
                    versions.add_metric([*pair, arm, row[f"{arm}_version"]], 1.0)
        yield from (weight, generation, versions)

    def _monitor_windows(self, conn: Connection) -> Iterator[Metric]:
        counts = {
            column: _gauge(
                f"rollout_monitor_window_{column}",
                f"The newest closed monitoring window's {column} count, per version.",
                "version",
            )
            for column in ("requests", "errors", "labelled", "wrong")
        }
        end = _gauge(
            "rollout_monitor_window_end_timestamp_seconds",
            "When the newest closed monitoring window ended.",
            "version",
        )
        alarm = _gauge("rollout_monitor_alarm", "1 when that window raised an alarm.", "version")
        table = monitor_windows.c
        newest = (
            select(table.environment, table.model, func.max(table.start))
            .group_by(table.environment, table.model)
            .subquery()
        )
        query = (
            select(monitor_windows)
            .join(
                newest,
                and_(
                    table.environment == newest.c.environment,
                    table.model == newest.c.model,
                    table.start == newest.c[2],
                ),
            )
            .order_by(table.environment, table.model, table.version)
            .limit(MAX_ROWS)
        )
        for row in conn.execute(query).mappings():
            labels = [row["model"], row["environment"], row["version"]]
            for column, family in counts.items():
                family.add_metric(labels, float(row[column]))
            end.add_metric(labels, float(row["end"]))
            alarm.add_metric(labels, 1.0 if row["alarm"] else 0.0)
        yield from (*counts.values(), end, alarm)

    def _webhooks(self, conn: Connection) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "rollout_webhook_deliveries",
            "Webhook deliveries not delivered: pending (due), retrying (a failed attempt, "
            "retries left) and failed (gave up).",
            labels=["status"],
        )
        table = webhook_deliveries.c
        retried = func.sum(case((table.attempts > 0, 1), else_=0))
        query = (
            select(table.status, func.count(), retried)
            .where(table.status.in_(("pending", "failed")))
            .group_by(table.status)
        )
        found = {"pending": 0, "retrying": 0, "failed": 0}
        for status, count, attempted in conn.execute(query):
            if status == "pending":
                found["retrying"] = int(attempted or 0)
                found["pending"] = int(count) - found["retrying"]
            else:
                found[status] = int(count)
        for status, count in found.items():
            family.add_metric([status], float(count))
        yield family

    def _lease(self, conn: Connection) -> Iterator[Metric]:
        holder = GaugeMetricFamily(
            "rollout_lease_info",
            "Who holds the manager lease (value 1).",
            labels=["name", "holder"],
        )
        expires = GaugeMetricFamily(
            "rollout_lease_expires_timestamp_seconds",
            "When the manager lease expires unless renewed.",
            labels=["name"],
        )
        query = select(manager_leases).order_by(manager_leases.c.name).limit(MAX_ROWS)
        for row in conn.execute(query).mappings():
            holder.add_metric([row["name"], row["holder"]], 1.0)
            expires.add_metric([row["name"]], float(row["expires_at"]))
        yield from (holder, expires)

    def _audit_head(self, conn: Connection) -> Iterator[Metric]:
        last = conn.execute(
            select(audit_log.c.id, audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)
        ).first()
        count = GaugeMetricFamily(
            "rollout_audit_head_count", "Rows in the audit chain (its last id; 0 when empty)."
        )
        count.add_metric([], float(last[0]) if last else 0.0)
        head = GaugeMetricFamily(
            "rollout_audit_head_info", "The audit chain's newest hash (value 1).", labels=["hash"]
        )
        if last:
            head.add_metric([str(last[1])], 1.0)
        yield from (count, head)


def _entered(conn: Connection, rollout_ids: list[str]) -> dict[str, float]:
    """Per rollout: when its last transition (an event that changed its state) happened."""
    if not rollout_ids:
        return {}
    table = rollout_events.c
    query = (
        select(table.rollout_id, func.max(table.ts))
        .where(
            table.rollout_id.in_(rollout_ids),
            (table.from_state.is_(None)) | (table.from_state != table.to_state),
        )
        .group_by(table.rollout_id)
    )
    return {str(rollout_id): float(ts) for rollout_id, ts in conn.execute(query)}


def _looks(conn: Connection, active: list[tuple[str, list[str]]]) -> Iterator[Metric]:
    """The newest kept look of each active rollout: its window's counts and every gate."""
    window = _gauge("rollout_window_requests", "Requests in the newest look's window.", "arm")
    at = _gauge("rollout_look_timestamp_seconds", "When the newest look was taken.")
    names = {
        "estimate": ("rollout_gate_effect", "The gate's measured effect (canary vs baseline)."),
        "low": ("rollout_gate_lower_bound", "The lower anytime-valid bound of the effect."),
        "high": ("rollout_gate_upper_bound", "The upper anytime-valid bound of the effect."),
        "threshold": ("rollout_gate_threshold", "The margin the gate holds the effect to."),
    }
    values = {column: _gauge(name, doc, "gate") for column, (name, doc) in names.items()}
    blocking = _gauge("rollout_gate_blocking", "1 when the gate decides, 0 when advisory.", "gate")
    verdict = _gauge("rollout_gate_verdict", "1 for the gate's verdict, else 0.", "gate", "verdict")
    table = look_bounds.c
    for rollout_id, pair in active:
        mine = table.rollout_id == rollout_id
        step = select(func.max(table.step_index)).where(mine).scalar_subquery()
        seq = select(func.max(table.seq)).where(mine, table.step_index == step).scalar_subquery()
        query = (
            select(look_bounds)
            .where(mine, table.step_index == step, table.seq == seq)
            .order_by(table.id)
            .limit(MAX_GATES)
        )
        rows = conn.execute(query).mappings().all()  # one indexed look-up per subquery
        if not rows:
            continue
        window.add_metric([*pair, "baseline"], float(rows[0]["n_baseline"]))
        window.add_metric([*pair, "canary"], float(rows[0]["n_canary"]))
        at.add_metric(pair, float(rows[0]["ts"]))
        for row in rows:
            labels = [*pair, row["gate"]]
            for column, family in values.items():
                if row[column] is not None:
                    family.add_metric(labels, float(row[column]))
            blocking.add_metric(labels, 1.0 if row["blocking"] else 0.0)
            for name in VERDICTS:
                verdict.add_metric([*labels, name], 1.0 if row["verdict"] == name else 0.0)
    yield from (window, at, *values.values(), blocking, verdict)


__all__ = ["MAX_ROWS", "PHASES", "StoreCollector"]
