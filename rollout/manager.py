"""The manager: one object that wires the rooms of the manager together, and its verbs.

Each job has its own module; :class:`Manager` only builds them on one store and one clock and
offers their verbs to the CLI, the API and the declarative ``apply``:

- :mod:`rollout.commands`  start, promote, approve, pause, resume, abort, rollback
- :mod:`rollout.loop`      the loop: load → decide → apply → save, under the store's lease
- :mod:`rollout.evidence`  what a look finds (digests, smoke tests, the step's gates)
- :mod:`rollout.apply`     the only writer of rollouts, events, releases, plans and aliases
- :mod:`rollout.queries`   status, history, events, reports (reads only)
- :mod:`rollout.machine`   the pure decision over the transition table

Environments are ordered (``dev → staging → prod`` by default, :mod:`rollout.environments`):
once a model has releases in an environment, a version enters the next one only after it
succeeded there, as the same artifact; each environment's policy says whether promotion needs
an approval, from whom, and how long it may wait.

The MLflow registry and the webhook sender are opened on first use, so reading a status loads
neither MLflow nor an HTTP client.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from contract.clock import SYSTEM_CLOCK, Clock
from contract.sql.engine import open_engine
from contract.sql.plans import SqlPlanStore
from rollout.apply import Applier
from rollout.commands import Commands
from rollout.degradation import Degradation, KeptWindow, ReleaseMonitor
from rollout.environments import Environment, Environments, load_environments
from rollout.evidence import Evidence
from rollout.lease import DEFAULT_TTL_S, Lease
from rollout.lifecycle import Decision
from rollout.loop import Loop
from rollout.queries import Queries, Status
from rollout.settings import Settings
from rollout.spec import AnalysisSpec, RolloutSpec
from rollout.store.audit import AuditLog
from rollout.store.configs import ConfigStore
from rollout.store.looks import LookRecord, LookStore
from rollout.store.monitoring import Monitoring, Window
from rollout.store.page_samples import (
    drop_old_samples,
    keep_finished_samples,
    last_evidence,
    window_start,
)
from rollout.store.predictions import PredictionLog
from rollout.store.records import EventRecord, RecordStore, Release, RolloutRecord
from rollout.store.retention import DAY_S, Pruned, Retention
from rollout.stored import parse_spec

if TYPE_CHECKING:
    from contract.registry import ModelVersionInfo
    from rollout.notify import Webhooks
    from rollout.registry import MlflowRegistry, Reference
    from rollout.smoke import SmokeRunner

__all__ = ["Manager", "Status"]

log = logging.getLogger(__name__)

PRUNE_BUDGET_S = 0.5  # the longest one pass of the retention may delete for
MONITOR_BUDGET_S = 20.0  # about the longest one pass of the release monitor (a thread) reads


class Manager:
    def __init__(
        self,
        settings: Settings,
        *,
        registry: MlflowRegistry | None = None,
        engine: Engine | None = None,
        environments: Environments | Sequence[str | Environment] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.engine = engine or open_engine(settings.store_url)
        self.environments = (
            Environments.of(environments)
            if environments is not None
            else load_environments(settings.environments_file)
        )
        self._registry = registry
        self._webhooks: Webhooks | None = None
        self._smoke: SmokeRunner | None = None
        self.plans = SqlPlanStore(self.engine, now=clock.time)
        self.records = RecordStore(self.engine)
        # the store's audit log (the CLI, the API and every transition append), keyed from outside
        self.audit = AuditLog(self.engine, settings.audit_key_bytes(), clock)
        self.configs = ConfigStore(self.engine, clock)  # config versions of applied specs
        self.looks_store = LookStore(self.engine)  # every look's bounds, thinned, for plots
        self.evidence = Evidence(
            PredictionLog(self.engine),
            lambda: self.registry,
            lambda: self.smoke,
            settings.home / "reports",
            self.records.events,
            self.environments.get,
        )
        self.applier = Applier(
            self.engine,
            self.records,
            self.plans,
            lambda: self.webhooks,
            lambda: self.registry,
            audit=self.audit,
        )
        self.retention = Retention(
            self.engine,
            lambda: [(env.name, env.retention) for env in self.environments.ordered],
            lambda: [record.id for record in self.records.list_active()],
        )
        self.release_monitor = ReleaseMonitor(
            self.engine,
            lambda: self.environments,
            lambda: self.webhooks,
            self._release_analysis,
            lambda model, environment: self.records.active(model, environment) is not None,
            lambda model, environment, reason: self._degraded(model, environment, reason),
            self.reference,
        )
        self.loop = Loop(
            self.records,
            self.environments,
            self.evidence,
            self.applier,
            lambda: self.webhooks,
            clock,
            looks=self.looks_store,
            prune=lambda now: self.prune(now, PRUNE_BUDGET_S),
            monitor=lambda now: self.release_monitor.run(now, MONITOR_BUDGET_S),
            audit_head=lambda: self.audit.export_head(settings.audit_head_path),
            audit_head_every_s=settings.audit_head_every_s,
        )
        self.commands = Commands(
            self.records,
            self.plans,
            self.environments,
            lambda: self.registry,
            self.applier,
            self.loop,
            clock,
        )
        self.queries = Queries(self.records, self.plans, self.environments, self.evidence, clock)

    # -- parts opened on first use --

    @property
    def registry(self) -> MlflowRegistry:
        if self._registry is None:
            from rollout.registry import MlflowRegistry

            self._registry = MlflowRegistry(self.settings.registry_uri, self.settings.artifact_root)
        return self._registry

    @property
    def webhooks(self) -> Webhooks:
        if self._webhooks is None:
            from rollout.notify import Webhooks

            settings = self.settings
            self._webhooks = Webhooks(
                self.engine, settings.webhook_urls, settings.webhook_secret, clock=self.clock
            )
        return self._webhooks

    @webhooks.setter
    def webhooks(self, webhooks: Webhooks) -> None:
        self._webhooks = webhooks

    @property
    def smoke(self) -> SmokeRunner:
        if self._smoke is None:
            from rollout.smoke import SmokeRunner

            self._smoke = SmokeRunner(
                self.settings.router_urls, self.settings.pin_token, self.settings.payload_dir
            )
        return self._smoke

    @smoke.setter
    def smoke(self, smoke: SmokeRunner) -> None:
        self._smoke = smoke

    @property
    def environment_names(self) -> tuple[str, ...]:
        """The ordered environment names (``dev``, ``staging``, ``prod`` by default)."""
        return self.environments.names

    def close(self) -> None:
        """Write the drift reports still waiting (at most 60 s), then release the store."""
        if not self.loop.reports.flush(60.0):
            log.warning("closing with drift reports still unwritten after 60 s")
        self.engine.dispose()

    # -- commands --

    def start(
        self,
        model: str,
        candidate: str | int,
        environment: str,
        spec: RolloutSpec | None = None,
        actor: str = "unknown",
    ) -> str:
        """Start a rollout of ``candidate`` (a version or ``@alias``); returns its id.

        With no version serving in ``environment`` yet this is an initial release: the candidate
        gets all traffic and the alias at once, and the rollout is ``succeeded``. A smoke
        test's ``payload_file`` is checked first (:func:`rollout.smoke.check_payload_files`).
        """
        if spec is not None and spec.smoke_tests:
            from rollout.smoke import check_payload_files

            check_payload_files(spec.smoke_tests, self.settings.payload_dir)
        return self.commands.start(model, candidate, environment, spec, actor)

    def promote(self, model: str, environment: str, actor: str) -> RolloutRecord:
        """Promote the active rollout now (skipping the remaining steps)."""
        return self.commands.command(model, environment, "promote", actor)

    def approve(self, model: str, environment: str, actor: str) -> RolloutRecord:
        return self.commands.command(model, environment, "approve", actor)

    def pause(self, model: str, environment: str, actor: str) -> RolloutRecord:
        return self.commands.command(model, environment, "pause", actor)

    def resume(self, model: str, environment: str, actor: str) -> RolloutRecord:
        return self.commands.command(model, environment, "resume", actor)

    def abort(
        self, model: str, environment: str, actor: str, reason: str | None = None
    ) -> RolloutRecord:
        return self.commands.command(model, environment, "abort", actor, reason)

    def rollback(
        self,
        model: str,
        environment: str,
        actor: str,
        to_release: int | None = None,
        reason: str | None = None,
    ) -> Release:
        """Roll back the active rollout, or return traffic to an earlier release."""
        return self.commands.rollback(model, environment, actor, to_release, reason)

    # -- the loop --

    def prune(self, now: float | None = None, budget_s: float = PRUNE_BUDGET_S) -> Pruned:
        """One pass of the retention (the loop runs one every 30 s while it holds the lease):
        first the dashboard's sample of each rollout finished since is kept
        (:func:`rollout.store.page_samples.keep_finished_samples`; only the newest 1,000 are
        kept), then prediction-log rows beyond their environment's ``retention`` are deleted,
        with their labels, except an active rollout's, and kept monitoring windows older than
        its ``retention.days`` that the detectors no longer need
        (:meth:`rollout.degradation.ReleaseMonitor.prune`)."""
        now = self.clock.time() if now is None else now
        try:
            keep_finished_samples(self.engine, self._judged_window_start, now)
            drop_old_samples(self.engine)
        except (SQLAlchemyError, ValueError):  # never in the way of the retention
            log.exception("keeping finished rollouts' samples failed; trying again later")
        pruned = self.retention.prune(now, budget_s)
        older_than = {
            env.name: env.retention.days * DAY_S
            for env in self.environments.ordered
            if env.retention.days is not None
        }
        windows = self.release_monitor.prune(now, older_than) if older_than else 0
        return replace(pruned, windows=windows)

    def _judged_window_start(self, rollout_id: str) -> float:
        """Where ``rollout_id``'s judged window began (what its page samples from)."""
        rollout = self.records.get(rollout_id)
        if rollout is None:
            return 0.0
        return window_start(rollout, last_evidence(self.events(rollout_id)))

    def tick(self, now: float | None = None) -> list[Decision]:
        """One pass over every active rollout; returns the transitions made."""
        return self.loop.tick(now)

    def run(
        self,
        interval_s: float = 0.5,
        stop_event: threading.Event | None = None,
        lease_ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        """Tick every ``interval_s`` while holding the store's lease, until ``stop_event``;
        with ``settings.manager_metrics`` (``ROLLOUT_MANAGER_METRICS_PORT``), serve
        ``/metrics`` meanwhile (:mod:`rollout.metrics_http`)."""
        from rollout.metrics_http import serve_manager_metrics

        address = self.settings.manager_metrics
        metrics = serve_manager_metrics(self, address) if address is not None else None
        lease = Lease(self.engine, ttl_s=max(lease_ttl_s, 2 * interval_s), clock=self.clock)
        log.info(
            "manager running every %.2fs on %s (lease holder id %s)",
            interval_s,
            self.settings.store_url,
            lease.holder,
        )
        try:
            self.loop.run(lease, interval_s, stop_event)
        finally:
            if metrics is not None:
                metrics.shutdown()
                metrics.server_close()

    # -- reading --

    def monitor(
        self, model: str, environment: str, *, hours: float = 24.0, window_s: float = 3600.0
    ) -> list[Window]:
        """What ``model`` served in ``environment`` over the last ``hours``, window by window
        (``rollout monitor``); ValueError for more than ``MAX_WINDOWS`` windows."""
        return Monitoring(self.engine).windows(
            model, environment, self.clock.time(), hours=hours, window_s=window_s
        )

    def watch_releases(self, now: float | None = None) -> list[Degradation]:
        """One pass of the release monitor (the loop runs one every 30 s while it holds the
        lease): every closed window not kept yet kept, the serving releases' change detectors
        updated; returns the alarms raised (:mod:`rollout.degradation`)."""
        return self.release_monitor.run(self.clock.time() if now is None else now, 60.0)

    def kept_windows(self, model: str, environment: str, limit: int = 48) -> list[KeptWindow]:
        """The newest kept monitoring windows, oldest first."""
        return self.release_monitor.windows(model, environment, limit)

    def degradations(self, model: str, environment: str, limit: int = 20) -> list[KeptWindow]:
        """The newest windows that raised an alarm, newest first."""
        return self.release_monitor.alarms(model, environment, limit)

    def _release_analysis(self, model: str, environment: str, version: str) -> AnalysisSpec:
        """The analysis of the rollout that released ``version`` (the default one if none)."""
        for release in self.records.releases(model, environment):
            if release.version == version and release.rollout_id is not None:
                record = self.records.get(release.rollout_id)
                if record is not None:
                    return parse_spec(record.spec).analysis
        return AnalysisSpec.model_validate({})

    def _degraded(self, model: str, environment: str, reason: str) -> None:
        self.rollback(model, environment, actor="monitor", reason=reason)

    def reference(self, model: str, version: str) -> Reference:
        """The training reference of ``model`` ``version`` (``rollout reference``)."""
        from rollout.registry import find_reference

        return find_reference(self.registry, model, version)

    def status(self, model: str, environment: str) -> Status:
        return self.queries.status(model, environment)

    def history(self, model: str, environment: str) -> list[Release]:
        """Release records, newest first."""
        return self.queries.history(model, environment)

    def events(self, rollout_id: str) -> list[EventRecord]:
        return self.queries.events(rollout_id)

    def report(self, rollout_id: str) -> dict[str, Any]:
        """The rollout, its events and releases, and where its pictures are: the latest drift
        report through the API (``url``, None before the first judged window) and its page."""
        from rollout.drift_report import NoDriftReport, stored_report

        report = self.queries.report(rollout_id)
        try:
            stored_report(self.evidence.reports, rollout_id)
            url: str | None = f"/v1/rollouts/{rollout_id}/drift-report"
        except NoDriftReport:
            url = None
        report["drift_report"] = {"url": url, "dashboard": f"/ui/rollouts/{rollout_id}"}
        return report

    def rollout(self, rollout_id: str) -> RolloutRecord:
        return self.queries.rollout(rollout_id)

    def looks(self, rollout_id: str, step_index: int | None = None) -> list[LookRecord]:
        """The kept looks of a rollout (every gate's bounds), oldest first."""
        self.queries.rollout(rollout_id)  # NoSuchRollout for an unknown id
        return self.looks_store.looks(rollout_id, step_index)

    def requests(self, rollout_id: str, since_ts: float = 0.0) -> dict[str, int]:
        """Requests per arm the rollout's routers logged since ``since_ts``."""
        return self.queries.requests(rollout_id, since_ts)

    def active(self, model: str, environment: str) -> RolloutRecord | None:
        """The active rollout of ``model`` in ``environment``, if any."""
        return self.queries.active(model, environment)

    def latest(self, model: str, environment: str) -> RolloutRecord | None:
        """The newest rollout of ``model`` in ``environment`` (active or not), if any."""
        return self.queries.latest(model, environment)

    def resolve(self, model: str, ref: str | int) -> ModelVersionInfo:
        """The registry's version ``ref`` (a number or ``@alias``) of ``model``."""
        return self.registry.resolve(model, ref)

    def serving_version(self, model: str, environment: str) -> str | None:
        """What serves ``model`` in ``environment`` now (the alias, else the plan); None."""
        return self.commands.serving_version(model, environment)
