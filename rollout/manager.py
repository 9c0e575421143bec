"""The manager: load → decide → apply → save, for every active rollout.

:class:`Manager` is the only writer of traffic plans, ``@<environment>`` aliases and release
records. ``start`` creates a rollout (or, when the environment has no version yet, makes an
*initial release*); ``tick`` drives every active rollout: it gathers evidence (artifact digest
checks while verifying and promoting; the prediction log's two arms since the step started,
analysed by :mod:`rollout.analysis`, while progressing), calls the pure
:func:`rollout.machine.decide` and saves the transition, its event (reason + evidence), the plan
and any release in one transaction; the alias moves inside that transaction, after the plan, so
a failure leaves the state unchanged and the next tick retries. Optimistic concurrency
(``row_version``) makes a second manager, or a command racing a tick, lose cleanly with
:class:`~rollout.errors.ConflictError` instead of acting twice.

Environments are ordered (``dev → staging → prod`` by default, :mod:`rollout.environments`):
once a model has releases in an environment, a version enters the next one only after it
succeeded there, as the same artifact; each environment's policy says whether promotion needs
an approval, from whom, and how long it may wait.

:meth:`run` ticks only while this manager holds the store's lease (:mod:`rollout.lease`), and
every save it makes re-checks the lease in its transaction, so of several managers on one store
exactly one acts. While verifying, declared smoke tests go through the environment's router to
the staged candidate (:mod:`rollout.smoke`). Every event also queues a webhook notification in
the same transaction (:mod:`rollout.notify`), delivered by the loop.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from sqlalchemy import Connection, Engine

from contract.clock import SYSTEM_CLOCK, Clock
from contract.plans import TrafficPlan
from contract.sql.engine import open_engine
from contract.sql.plans import SqlPlanStore
from monitors import GateResult
from rollout.analysis import analyse, write_drift_report
from rollout.environments import Environment, Environments, load_environments
from rollout.errors import ConflictError, RegistryError, RolloutError, SpecError, StateError
from rollout.lease import DEFAULT_TTL_S, Lease
from rollout.machine import (
    TERMINAL_STATES,
    Command,
    CommandKind,
    Decision,
    MoveAlias,
    RecordRelease,
    RolloutState,
    SetPlan,
    State,
    StepEvidence,
    decide,
)
from rollout.notify import Webhooks
from rollout.registry import MlflowRegistry
from rollout.settings import Settings
from rollout.shadow import shadow_evidence
from rollout.smoke import SmokeRunner
from rollout.spec import RolloutSpec, config_hash, default_spec
from rollout.store.audit import AuditLog
from rollout.store.predictions import ArmSample, PredictionLog
from rollout.store.records import EventRecord, RecordStore, Release, RolloutRecord
from rollout.summary import WindowSummary

log = logging.getLogger(__name__)

MAX_MOVES_PER_TICK = 8  # transitions one rollout may make in one tick (e.g. promoting → succeeded)
COMMAND_RETRIES = 3


@dataclass(frozen=True)
class Status:
    model: str
    environment: str
    plan: TrafficPlan | None
    alias_version: str | None
    rollout: RolloutRecord | None  # the active rollout, else the latest one
    live: StepEvidence | None = None  # the current step's evidence so far (progressing only)
    next_move: str | None = None  # what decide would say now
    events: tuple[EventRecord, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "environment": self.environment,
            "plan": asdict(self.plan) if self.plan is not None else None,
            "alias_version": self.alias_version,
            "rollout": self.rollout.to_dict() if self.rollout is not None else None,
            "live": self.live.to_dict() if self.live is not None else None,
            "next_move": self.next_move,
            "events": [event.to_dict() for event in self.events],
        }


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
        self.registry = registry or MlflowRegistry(settings.registry_uri, settings.artifact_root)
        self.engine = engine or open_engine(settings.store_url)
        self.plans = SqlPlanStore(self.engine)
        self.predictions = PredictionLog(self.engine)
        self.records = RecordStore(self.engine)
        self.environments = (
            Environments.of(environments)
            if environments is not None
            else load_environments(settings.environments_file)
        )
        self.clock = clock
        self.lease: Lease | None = None  # set while run() holds the lease; fences every save
        self.webhooks = Webhooks(
            self.engine, settings.webhook_urls, settings.webhook_secret, clock=clock
        )
        self.smoke = SmokeRunner(settings.router_urls, settings.pin_token)
        # Per rollout: the step window being judged and its running summary (bounded memory,
        # new rows only at each look); rebuilt from the log after a restart.
        self._windows: dict[str, tuple[tuple[float, str | None], WindowSummary]] = {}
        self.audit = AuditLog(self.engine)  # the store's audit log (the CLI and API append)

    @property
    def environment_names(self) -> tuple[str, ...]:
        """The ordered environment names (``dev``, ``staging``, ``prod`` by default)."""
        return self.environments.names

    def close(self) -> None:
        self.engine.dispose()

    # -- starting --

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
        gets all traffic and the alias at once, and the rollout is ``succeeded``.
        """
        spec = bind_spec(spec or default_spec(), model, candidate, environment)
        info = self.registry.resolve(model, str(candidate))
        version = info.version
        digest = self.registry.record_digest(model, version)
        self._check_environment_order(model, environment, version, digest)
        active = self.records.active(model, environment)
        if active is not None:
            raise StateError(
                f"{model} already has rollout {active.id} ({active.state}) in {environment}; "
                "promote, roll it back or abort it first"
            )
        plan = self.plans.get(environment, model)
        baseline = self.registry.alias_version(model, environment) or (
            plan.baseline_version if plan is not None else None
        )
        if baseline == version:
            raise StateError(f"{model} v{version} is already serving in {environment}")
        now = self.clock.time()
        record = RolloutRecord(
            id=f"r-{uuid.uuid4().hex[:12]}",
            model=model,
            environment=environment,
            strategy=spec.strategy.name,
            baseline_version=baseline,
            candidate_version=version,
            spec=spec.canonical_json(),
            config_hash=config_hash(spec),
            state="pending",
            step_index=0,
            step_started_at=None,
            created_at=now,
            updated_at=now,
            started_by=actor,
        )
        if baseline is None:
            self._initial_release(record, spec, now)
            return record.id
        with self.engine.begin() as conn:
            self.records.create(conn, record)
            self._add_event(
                conn,
                record,
                EventRecord(
                    rollout_id=record.id,
                    ts=now,
                    from_state=None,
                    to_state="pending",
                    step_index=0,
                    actor=actor,
                    reason=f"canary of v{version} over v{baseline} started by {actor}",
                ),
            )
        with suppress(ConflictError):  # a running manager loop moved it first: it drives it
            self._drive(record.id, now)
        return record.id

    def _initial_release(self, record: RolloutRecord, spec: RolloutSpec, now: float) -> None:
        model, environment, version = record.model, record.environment, record.candidate_version
        digest = self.registry.verify_digest(model, version)
        info = self.registry.resolve(model, version)
        reason = f"initial release of v{version} in {environment} by {record.started_by}"
        done = RolloutRecord(**{**record.__dict__, "state": "succeeded", "reason": reason})
        release = Release(
            model=model,
            environment=environment,
            version=version,
            previous_version=None,
            kind="initial",
            artifact_digest=digest,
            run_id=info.run_id,
            git_commit=info.git_commit,
            config_hash=record.config_hash,
            rollout_id=record.id,
            started_by=record.started_by,
            approved_by=None,
            started_at=now,
            finished_at=now,
            outcome="succeeded",
            evidence={"reason": reason},
        )
        with self.engine.begin() as conn:
            self.records.create(conn, done)
            self._add_event(
                conn,
                record,
                EventRecord(
                    rollout_id=record.id,
                    ts=now,
                    from_state=None,
                    to_state="succeeded",
                    step_index=None,
                    actor=record.started_by,
                    reason=reason,
                ),
            )
            stored = self.records.add_release(conn, release)
            self.plans.put_in(
                conn,
                TrafficPlan(
                    environment=environment,
                    model=model,
                    baseline_version=version,
                    sticky_key=spec.strategy.sticky_key,
                    baseline_release_id=stored.id,
                ),
            )
            self.registry.set_alias(model, environment, version)

    def _check_environment_order(
        self, model: str, environment: str, version: str, digest: str
    ) -> None:
        before = self.environments.previous(environment)
        if before is None:
            return
        history = self.records.releases(model, before)
        if not history:
            return  # the model does not use the earlier environment
        passed = [r for r in history if r.version == version and r.outcome == "succeeded"]
        if not passed:
            raise StateError(
                f"{model} v{version} has not succeeded in {before}, the environment before "
                f"{environment}; roll it out there first"
            )
        if passed[0].artifact_digest and passed[0].artifact_digest != digest:
            raise RegistryError(
                f"{model} v{version}: artifact digest {digest} differs from the one that "
                f"succeeded in {before} ({passed[0].artifact_digest})"
            )

    # -- the loop --

    def tick(self, now: float | None = None) -> list[Decision]:
        """One pass over every active rollout; returns the transitions made."""
        made: list[Decision] = []
        for record in self.records.list_active():
            try:
                at = now if now is not None else self.clock.time()
                made.extend(self._drive(record.id, at, fenced=True))
            except ConflictError as exc:
                log.info("rollout %s: %s", record.id, exc)
            except RolloutError as exc:
                log.warning("rollout %s: %s", record.id, exc)
        return made

    def run(
        self,
        interval_s: float = 0.5,
        stop_event: threading.Event | None = None,
        lease_ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        """Tick every ``interval_s`` while holding the manager lease, until ``stop_event``.

        A manager without the lease stands by and tries again every ``interval_s``; it takes
        over within ``lease_ttl_s`` after the holder stops renewing (see :mod:`rollout.lease`).
        """
        stop = stop_event or threading.Event()
        lease = Lease(self.engine, ttl_s=max(lease_ttl_s, 2 * interval_s))
        log.info(
            "manager running every %.2fs on %s (lease holder id %s)",
            interval_s,
            self.settings.store_url,
            lease.holder,
        )
        holding, first = False, True
        done = threading.Event()
        deliverer = threading.Thread(
            target=self._deliver_webhooks,
            args=(stop, done, interval_s),
            name="webhooks",
            daemon=True,  # an attempt stuck in its timeout never holds up shutdown
        )
        deliverer.start()
        try:
            while not stop.is_set():
                try:
                    if lease.acquire():
                        if not holding:
                            log.info("manager %s holds the lease", lease.holder)
                        holding, self.lease = True, lease
                        made = self.tick()
                        for decision in made:
                            log.info(
                                "%s → %s: %s",
                                decision.from_state,
                                decision.to_state,
                                decision.reason,
                            )
                    else:
                        if holding or first:
                            log.info("manager %s stands by: the lease is held", lease.holder)
                        holding, self.lease = False, None
                    first = False
                except Exception:
                    log.exception("tick failed; retrying in %.2fs", interval_s)
                stop.wait(interval_s)
        finally:
            self.lease = None
            done.set()
            deliverer.join(timeout=self.webhooks.timeout_s + 1.0)
            if holding:
                lease.release()

    def _deliver_webhooks(
        self, stop: threading.Event, done: threading.Event, interval_s: float
    ) -> None:
        """Post due webhooks while this manager holds the lease, beside the tick loop, so a
        slow or dead receiver (each attempt may wait ``timeout_s``) never delays a decision."""
        while not (stop.is_set() or done.is_set()):
            if self.lease is not None:
                try:
                    self.webhooks.deliver_due()
                except Exception:
                    log.exception("webhook delivery failed; retrying in %.2fs", interval_s)
            done.wait(interval_s)

    def _drive(
        self,
        rollout_id: str,
        now: float,
        command: Command | None = None,
        *,
        fenced: bool = False,
    ) -> list[Decision]:
        """Decide and save until the rollout waits (or finishes).

        ``fenced`` (the loop's ticks): each save also checks, in its transaction, that this
        manager still holds the lease (when it runs with one).
        """
        made: list[Decision] = []
        for _ in range(MAX_MOVES_PER_TICK):
            record = self._get(rollout_id)
            if command is None and record.state in TERMINAL_STATES:
                break
            state = self._state(record)
            evidence = self._evidence(record, state, now) if command is None else None
            decision = decide(state, evidence, now, command)
            if not decision.changed:
                break
            report = None
            if evidence is not None and evidence.kind == "step" and evidence.gates:
                report = self._report_path(record, evidence)
                decision = replace(decision, evidence=replace(evidence, report=str(report)))
            try:
                self._save(record, decision, now, fence=self.lease if fenced else None)
            except ConflictError:
                if made:  # our earlier move (a command's) took effect; another manager goes on
                    break
                raise
            if report is not None and evidence is not None:
                self._write_report(record, evidence, report)  # after the decision took effect
            made.append(decision)
            command = None
        return made

    # -- evidence --

    def _evidence(
        self, record: RolloutRecord, state: RolloutState, now: float
    ) -> StepEvidence | None:
        if state.state == "verifying":
            evidence = self._digest_evidence(record, "verify")
            tests = parse_spec(record.spec).smoke_tests
            if not tests or evidence.verdict != "pass":
                return evidence
            signature = self.registry.resolve(record.model, record.candidate_version).signature
            smoke = self.smoke.run(
                record.model,
                record.environment,
                record.candidate_version,
                tests,
                signature,
                waited_s=max(0.0, now - record.updated_at),
            )
            if smoke is None:
                return None  # the router has not loaded the staged candidate yet
            return StepEvidence(
                verdict=smoke.verdict,
                gates=evidence.gates + smoke.gates,
                reason=(
                    smoke.reason
                    if smoke.verdict == "fail"
                    else f"{evidence.reason}; {smoke.reason}"
                ),
                kind="verify",
            )
        if state.state == "promoting":
            return self._digest_evidence(record, "promote")
        if state.state == "progressing" and state.step.is_shadow:
            since = state.step_started_at if state.step_started_at is not None else now
            return shadow_evidence(
                self.predictions.paired(record.id, since_ts=since),
                parse_spec(record.spec),
                step_index=state.step_index,
                window_start=since,
            )
        if state.state == "progressing":
            since = state.step_started_at if state.step_started_at is not None else now
            preview = record.candidate_version if state.step.weight_pct == 0 else None
            evidence = analyse(
                self._window(record.id, since, preview),
                parse_spec(record.spec).analysis,
                weight_pct=state.step.weight_pct,
                step_index=state.step_index,
                window_start=since,
            )
            if preview is not None and state.step.min_requests == 0:
                return _preview_by_time(evidence)
            return evidence
        return None

    def _window(self, rollout_id: str, since: float, preview: str | None) -> WindowSummary:
        """The step window's summary, with the rows logged since the last look folded in."""
        key = (since, preview)
        cached = self._windows.get(rollout_id)
        summary = cached[1] if cached is not None and cached[0] == key else None
        summary = self.predictions.fold(rollout_id, since, summary, preview_version=preview)
        self._windows[rollout_id] = (key, summary)
        return summary

    def _report_path(self, record: RolloutRecord, evidence: StepEvidence) -> Path:
        step = (evidence.step_index or 0) + 1
        since = int(evidence.window_start or 0.0)
        return self.settings.home / "reports" / record.id / f"step-{step}-{since}.html"

    def _write_report(self, record: RolloutRecord, evidence: StepEvidence, path: Path) -> None:
        """Write the Evidently drift report of a judged window (features and outputs).

        It runs after the decision is saved, so rendering never delays a rollback; the report is
        for people, and a failure to write it is logged, never raised.
        """
        since = evidence.window_start or 0.0
        try:
            preview = evidence.weight_pct == 0  # blue/green preview: the pinned requests
            arms = [
                self.predictions.report_rows(record.id, "baseline", since_ts=since),
                self.predictions.report_rows(
                    record.id,
                    "pinned" if preview else "canary",
                    since_ts=since,
                    version=record.candidate_version if preview else None,
                ),
            ]
            write_drift_report(
                ArmSample(arm="baseline", outputs=arms[0][1]),
                ArmSample(arm="canary", outputs=arms[1][1]),
                path,
                baseline_features=pd.DataFrame(arms[0][0]) if arms[0][0] else None,
                canary_features=pd.DataFrame(arms[1][0]) if arms[1][0] else None,
            )
        except (ValueError, OSError) as exc:
            log.warning("no drift report for rollout %s at %s: %s", record.id, path.name, exc)

    def _digest_evidence(
        self, record: RolloutRecord, kind: Literal["verify", "promote"]
    ) -> StepEvidence:
        model, version = record.model, record.candidate_version
        try:
            digest = self.registry.verify_digest(model, version)
        except RegistryError as exc:
            return StepEvidence(
                verdict="fail",
                gates=(_check("artifact_digest", "fail", str(exc)),),
                reason=str(exc),
                kind=kind,
            )
        reason = f"artifact of v{version} matches its recorded digest {digest[:19]}…"
        return StepEvidence(
            verdict="pass",
            gates=(_check("artifact_digest", "pass", reason),),
            reason=reason,
            kind=kind,
        )

    # -- saving --

    def _save(
        self, record: RolloutRecord, decision: Decision, now: float, fence: Lease | None = None
    ) -> RolloutRecord:
        """Apply ``decision`` in one transaction: rollout row, release, plan, event, alias.

        The release is added before the plan, so a plan whose baseline it makes current names
        it (``baseline_release_id``: the newest release that succeeded with the baseline).

        With ``fence`` the transaction first checks that lease is still held (else
        ConflictError and nothing is written)."""
        releases = [
            self._release_row(record, action, decision, now)
            for action in decision.actions
            if isinstance(action, RecordRelease)
        ]
        with self.engine.begin() as conn:
            if fence is not None:
                fence.fence(conn)
            updated = self.records.update(
                conn,
                record,
                state=decision.to_state,
                step_index=decision.step_index,
                step_started_at=decision.step_started_at,
                approved_by=decision.approved_by,
                reason=decision.reason,
                updated_at=now,
            )
            for release in releases:  # first, so a plan below can name a release added here
                self.records.add_release(conn, release)
            for action in decision.actions:
                if isinstance(action, SetPlan):
                    self.plans.put_in(
                        conn,
                        TrafficPlan(
                            environment=record.environment,
                            model=record.model,
                            baseline_version=action.baseline_version,
                            canary_version=action.canary_version,
                            canary_weight_pct=action.canary_weight_pct,
                            sticky_key=action.sticky_key,
                            rollout_id=action.rollout_id,
                            shadow_version=action.shadow_version,
                            shadow_fraction=action.shadow_fraction,
                            baseline_release_id=self.records.serving_release_id(
                                conn, record.model, record.environment, action.baseline_version
                            ),
                        ),
                    )
            self._add_event(
                conn,
                record,
                EventRecord(
                    rollout_id=record.id,
                    ts=now,
                    from_state=decision.from_state,
                    to_state=decision.to_state,
                    step_index=decision.step_index,
                    actor=decision.actor,
                    reason=decision.reason,
                    evidence=decision.evidence.to_dict() if decision.evidence else None,
                ),
            )
            for action in decision.actions:
                if isinstance(action, MoveAlias):
                    self.registry.set_alias(record.model, action.alias, action.version)
        return updated

    def _add_event(self, conn: Connection, record: RolloutRecord, event: EventRecord) -> None:
        """The event row and its webhook notifications, in the caller's transaction."""
        self.records.add_event(conn, event)
        payload = {"model": record.model, "environment": record.environment, **event.to_dict()}
        self.webhooks.enqueue(conn, "state_change", payload)

    def _release_row(
        self, record: RolloutRecord, action: RecordRelease, decision: Decision, now: float
    ) -> Release:
        info = self.registry.resolve(record.model, action.version)
        events = self.records.events(record.id)
        steps = [
            event.evidence
            for event in events
            if event.evidence is not None and event.evidence.get("kind") == "step"
        ]
        final: Mapping[str, Any] | None = None
        if decision.evidence is not None:
            final = decision.evidence.to_dict()
            if final.get("kind") == "step":
                steps.append(final)
        else:  # a rollback's release: the evidence that started it
            final = next(
                (
                    event.evidence
                    for event in reversed(events)
                    if event.to_state == "rolling_back" and event.evidence is not None
                ),
                None,
            )
        return Release(
            model=record.model,
            environment=record.environment,
            version=action.version,
            previous_version=action.previous_version,
            kind=action.kind,
            artifact_digest=info.digest,
            run_id=info.run_id,
            git_commit=info.git_commit,
            config_hash=record.config_hash,
            rollout_id=record.id,
            started_by=record.started_by,
            approved_by=decision.approved_by,
            started_at=record.created_at,
            finished_at=now,
            outcome=action.outcome,
            evidence={"reason": decision.reason, "steps": steps, "final": final},
        )

    # -- commands --

    def promote(self, model: str, environment: str, actor: str) -> RolloutRecord:
        """Promote the active rollout now (skipping the remaining steps)."""
        return self._command(model, environment, "promote", actor)

    def approve(self, model: str, environment: str, actor: str) -> RolloutRecord:
        return self._command(model, environment, "approve", actor)

    def pause(self, model: str, environment: str, actor: str) -> RolloutRecord:
        return self._command(model, environment, "pause", actor)

    def resume(self, model: str, environment: str, actor: str) -> RolloutRecord:
        return self._command(model, environment, "resume", actor)

    def abort(
        self, model: str, environment: str, actor: str, reason: str | None = None
    ) -> RolloutRecord:
        return self._command(model, environment, "abort", actor, reason)

    def rollback(
        self,
        model: str,
        environment: str,
        actor: str,
        to_release: int | None = None,
        reason: str | None = None,
    ) -> Release:
        """Roll back the active rollout, or return traffic to an earlier release.

        With an active rollout (and no ``to_release``) its canary is removed. Otherwise the
        baseline becomes the version of ``to_release``, or of the newest succeeded release
        whose version is not the one serving; that move is itself a release (kind rollback).
        """
        active = self.records.active(model, environment)
        if active is not None:
            if to_release is not None:
                raise StateError(
                    f"rollout {active.id} is active in {environment}; roll it back (without "
                    "--to) or abort it before returning to an earlier release"
                )
            record = self._command(model, environment, "rollback", actor, reason)
            for release in self.records.releases(model, environment):
                if release.rollout_id == record.id:
                    return release
            raise StateError(f"rollout {record.id} is {record.state}; no release was recorded")
        return self._rollback_to_release(model, environment, actor, to_release, reason)

    def _rollback_to_release(
        self,
        model: str,
        environment: str,
        actor: str,
        to_release: int | None,
        reason: str | None,
    ) -> Release:
        plan = self.plans.get(environment, model)
        current = self.registry.alias_version(model, environment) or (
            plan.baseline_version if plan is not None else None
        )
        if current is None:
            raise StateError(f"{model} has never been released in {environment}")
        history = self.records.releases(model, environment)
        if to_release is not None:
            target = self.records.release(to_release)
            if target is None or (target.model, target.environment) != (model, environment):
                raise StateError(
                    f"release {to_release} is not a release of {model} in {environment}"
                )
            if target.outcome != "succeeded":
                raise StateError(
                    f"release {to_release} (v{target.version}) {target.outcome}; "
                    "only a release that succeeded can be returned to"
                )
        else:
            found = [r for r in history if r.outcome == "succeeded" and r.version != current]
            if not found:
                raise StateError(f"no earlier release of {model} in {environment} to roll back to")
            target = found[0]
        if target.version == current:
            raise StateError(
                f"release {target.id} is v{target.version}, "
                f"which is already serving in {environment}"
            )
        digest = self.registry.verify_digest(model, target.version)
        info = self.registry.resolve(model, target.version)
        now = self.clock.time()
        why = f"rollback from v{current} to v{target.version} (release {target.id}) by {actor}"
        if reason:
            why += f": {reason}"
        release = Release(
            model=model,
            environment=environment,
            version=target.version,
            previous_version=current,
            kind="rollback",
            artifact_digest=digest,
            run_id=info.run_id,
            git_commit=info.git_commit,
            config_hash=target.config_hash,
            rollout_id=None,
            started_by=actor,
            approved_by=None,
            started_at=now,
            finished_at=now,
            outcome="succeeded",
            evidence={"reason": why, "to_release": target.id},
        )
        with self.engine.begin() as conn:
            stored = self.records.add_release(conn, release)
            self.plans.put_in(
                conn,
                TrafficPlan(
                    environment=environment,
                    model=model,
                    baseline_version=target.version,
                    sticky_key=plan.sticky_key if plan is not None else None,
                    baseline_release_id=stored.id,
                ),
            )
            self.webhooks.enqueue(
                conn,
                "release",
                {
                    "model": model,
                    "environment": environment,
                    "release_id": stored.id,
                    "kind": "rollback",
                    "version": target.version,
                    "previous_version": current,
                    "actor": actor,
                    "reason": why,
                },
            )
            self.registry.set_alias(model, environment, target.version)
        return stored

    def _command(
        self,
        model: str,
        environment: str,
        kind: CommandKind,
        actor: str,
        reason: str | None = None,
    ) -> RolloutRecord:
        command = Command(kind=kind, actor=actor, reason=reason)
        for attempt in range(COMMAND_RETRIES):
            active = self.records.active(model, environment)
            if active is None:
                raise StateError(f"{model} has no active rollout in {environment}")
            try:
                self._drive(active.id, self.clock.time(), command)
            except ConflictError:
                if attempt == COMMAND_RETRIES - 1:
                    raise
                continue
            return self._get(active.id)
        raise AssertionError("unreachable")

    # -- reading --

    def status(self, model: str, environment: str) -> Status:
        plan = self.plans.get(environment, model)
        alias = self.registry.alias_version(model, environment)
        record = self.records.active(model, environment) or self.records.latest(model, environment)
        if record is None:
            return Status(model, environment, plan, alias, None)
        live: StepEvidence | None = None
        next_move: str | None = None
        if record.active:
            state = self._state(record)
            now = self.clock.time()
            if state.state == "progressing":
                live = self._evidence(record, state, now)
                next_move = decide(state, live, now).reason
            elif state.state == "awaiting_approval":
                next_move = decide(state, None, now).reason
        events = tuple(self.records.events(record.id))
        return Status(model, environment, plan, alias, record, live, next_move, events)

    def history(self, model: str, environment: str) -> list[Release]:
        """Release records, newest first."""
        return self.records.releases(model, environment)

    def events(self, rollout_id: str) -> list[EventRecord]:
        self._get(rollout_id)
        return self.records.events(rollout_id)

    def report(self, rollout_id: str) -> dict[str, Any]:
        """The rollout, every transition with its evidence, and the releases it made."""
        record = self._get(rollout_id)
        releases = [
            release.to_dict()
            for release in self.records.releases(record.model, record.environment)
            if release.rollout_id == rollout_id
        ]
        return {
            "rollout": record.to_dict(),
            "events": [event.to_dict() for event in self.records.events(rollout_id)],
            "releases": releases,
        }

    def rollout(self, rollout_id: str) -> RolloutRecord:
        return self._get(rollout_id)

    def _get(self, rollout_id: str) -> RolloutRecord:
        record = self.records.get(rollout_id)
        if record is None:
            raise StateError(f"no rollout with id {rollout_id!r}")
        return record

    def _state(self, record: RolloutRecord) -> RolloutState:
        spec = parse_spec(record.spec)
        state: State = record.state  # type: ignore[assignment]
        policy = self.environments.get(record.environment)
        return RolloutState(
            id=record.id,
            model=record.model,
            environment=record.environment,
            baseline_version=record.baseline_version,
            candidate_version=record.candidate_version,
            state=state,
            steps=spec.steps(),
            step_index=record.step_index,
            step_started_at=record.step_started_at,
            on_inconclusive=spec.analysis.on_inconclusive,
            approval_required=(
                spec.approval.required
                or policy.approval_required
                or (spec.strategy.shadow is not None and spec.strategy.shadow.then == "stop")
            ),
            started_by=record.started_by,
            approved_by=record.approved_by,
            sticky_key=spec.strategy.sticky_key,
            distinct_approver=policy.distinct_approver,
            approval_timeout_s=(
                spec.approval.timeout_s
                if spec.approval.timeout_s is not None
                else policy.approval_timeout_s
            ),
            on_approval_timeout=spec.approval.on_timeout or policy.on_approval_timeout,
            state_since=record.updated_at,
        )


@lru_cache(maxsize=256)
def parse_spec(spec_json: str) -> RolloutSpec:
    """The stored (canonical JSON) spec, parsed once."""
    return RolloutSpec.model_validate_json(spec_json)


def bind_spec(spec: RolloutSpec, model: str, candidate: str | int, environment: str) -> RolloutSpec:
    """The spec with the command's model, candidate and environment; they must agree."""
    given = {"model": model, "candidate": str(candidate), "environment": environment}
    for name, value in given.items():
        in_spec = getattr(spec, name)
        if in_spec is not None and str(in_spec) != value:
            raise SpecError(f"{name}: the spec says {in_spec!r} but the command says {value!r}")
    data = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        return RolloutSpec.model_validate({**data, **given})
    except ValueError as exc:
        raise SpecError(
            f"candidate: expected a version number or '@alias', got {candidate!r}"
        ) from exc


def _preview_by_time(evidence: StepEvidence) -> StepEvidence:
    """A blue/green preview that asks for no pinned requests is judged by time: the gates'
    evidence on whatever pinned traffic came can still fail it, but not hold it."""
    if evidence.verdict != "inconclusive":
        return evidence
    return replace(
        evidence,
        verdict="pass",
        reason=f"preview judged by time ({evidence.n_canary} pinned requests, too few for the "
        f"gates: {evidence.reason})",
    )


def _check(gate: str, verdict: Literal["pass", "fail"], reason: str) -> GateResult:
    return GateResult.unmeasured(gate, "sha256", verdict, reason)
