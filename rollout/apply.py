"""Apply decisions: the only writer of rollouts, events, releases, traffic plans and aliases.

Every change to what serves goes through :class:`Applier`, in one transaction:

- :meth:`Applier.create` a new rollout, with its first event, and (for an initial release) the
  decision that releases it at once;
- :meth:`Applier.save` one decision of :func:`rollout.machine.decide`: the rollout row
  (optimistic: ``row_version``), then the releases it records, then the plans it sets (so a
  plan can name the release that made its baseline current), then the event with its reason
  and evidence and its webhook notifications, and last the alias (the registry is outside the
  transaction: if moving it fails, nothing was committed and the next tick retries);
- :meth:`Applier.release` the one move outside a rollout, ``rollback --to`` an earlier release
  (:func:`rollout.effects.return_to`).

Each of them is also a row of the audit chain (:meth:`rollout.store.audit.AuditLog.append_in`:
identity the actor, ``manager`` for the machine's own decisions; verb ``from->to``, or
``release:<kind>`` for ``rollback --to``), appended last in the same transaction, so a move and
its row commit together or not at all.

With a ``fence`` (the manager loop's lease) the transaction first checks the lease is still
held, so of several managers on one store exactly one writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from contract.plans import TrafficPlan
from contract.sql.plans import SqlPlanStore
from rollout.errors import VersionNotFound
from rollout.lease import Lease
from rollout.lifecycle import Action, Decision, MoveAlias, RecordRelease, SetPlan
from rollout.store.records import EventRecord, RecordStore, Release, RolloutRecord

if TYPE_CHECKING:
    from contract.registry import ModelVersionInfo
    from rollout.notify import Webhooks
    from rollout.registry import MlflowRegistry
    from rollout.store.audit import AuditLog


class Applier:
    def __init__(
        self,
        engine: Engine,
        records: RecordStore,
        plans: SqlPlanStore,
        webhooks: Callable[[], Webhooks],
        registry: Callable[[], MlflowRegistry],
        audit: AuditLog | None = None,
    ) -> None:
        self.engine = engine
        self.audit = audit  # every event is also a row of the audit chain, in its transaction
        self.records = records
        self.plans = plans
        self._webhooks = webhooks
        self._registry = registry

    def create(
        self, record: RolloutRecord, now: float, reason: str, decision: Decision | None = None
    ) -> RolloutRecord:
        """Store a new rollout and its first event (``None → pending``, with ``reason``); with
        ``decision`` (an initial release) the rollout is stored as the decision leaves it and
        its actions are carried out in the same transaction."""
        releases = self._release_rows(record, decision, now) if decision is not None else []
        if decision is not None:
            record = replace(record, state=decision.to_state, reason=decision.reason)
            reason = decision.reason
        event = EventRecord(
            rollout_id=record.id,
            ts=now,
            from_state=None,
            to_state=record.state,
            step_index=None if decision is not None else 0,
            actor=record.started_by,
            reason=reason,
        )
        with self.engine.begin() as conn:
            self.records.create(conn, record)
            self._add_event(conn, record, event)
            if decision is not None:
                self._carry_out(conn, record, decision.actions, releases)
            self._chain_event(conn, record, event)
        return record

    def save(
        self, record: RolloutRecord, decision: Decision, now: float, fence: Lease | None = None
    ) -> RolloutRecord:
        """Apply ``decision`` to ``record`` in one transaction; ConflictError (and nothing
        written) if someone else changed the rollout first or ``fence`` is no longer held."""
        releases = self._release_rows(record, decision, now)
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
            event = EventRecord(
                rollout_id=record.id,
                ts=now,
                from_state=decision.from_state,
                to_state=decision.to_state,
                step_index=decision.step_index,
                actor=decision.actor,
                reason=decision.reason,
                evidence=decision.evidence.to_dict() if decision.evidence else None,
            )
            self._carry_out(conn, record, decision.actions, releases, event)
        return updated

    def release(
        self,
        model: str,
        environment: str,
        actions: Sequence[Action],
        release: Release,
    ) -> Release:
        """Carry out a move outside a rollout (``rollback --to``): ``release`` is recorded with
        the plan and alias ``actions``, and a ``release`` webhook is queued."""
        with self.engine.begin() as conn:
            stored = self.records.add_release(conn, release)
            for action in actions:
                if isinstance(action, SetPlan):
                    self._put_plan(conn, model, environment, action)
            self._webhooks().enqueue(
                conn,
                "release",
                {
                    "model": model,
                    "environment": environment,
                    "release_id": stored.id,
                    "kind": release.kind,
                    "version": release.version,
                    "previous_version": release.previous_version,
                    "actor": release.started_by,
                    "reason": (release.evidence or {}).get("reason"),
                },
            )
            self._move_aliases(model, actions)
            self._chain(
                conn,
                release.started_by,
                f"release:{release.kind}",
                None,
                model,
                environment,
                {
                    "kind": "release",
                    "release_id": stored.id,
                    "version": release.version,
                    "previous_version": release.previous_version,
                },
                release.started_at,
            )
        return stored

    # -- inside the transaction --

    def _carry_out(
        self,
        conn: Connection,
        record: RolloutRecord,
        actions: Sequence[Action],
        releases: Sequence[Release],
        event: EventRecord | None = None,
    ) -> None:
        """Releases first (a plan below may name one), then plans, the event, the alias."""
        for release in releases:
            self.records.add_release(conn, release)
        for action in actions:
            if isinstance(action, SetPlan):
                self._put_plan(conn, record.model, record.environment, action, record.id)
        if event is not None:
            self._add_event(conn, record, event)
        self._move_aliases(record.model, actions)
        if event is not None:
            self._chain_event(conn, record, event)

    def _put_plan(
        self,
        conn: Connection,
        model: str,
        environment: str,
        action: SetPlan,
        rollout_id: str | None = None,
    ) -> None:
        self.plans.put_in(
            conn,
            TrafficPlan(
                environment=environment,
                model=model,
                baseline_version=action.baseline_version,
                canary_version=action.canary_version,
                canary_weight_pct=action.canary_weight_pct,
                sticky_key=action.sticky_key,
                rollout_id=action.rollout_id,
                shadow_version=action.shadow_version,
                shadow_fraction=action.shadow_fraction,
                baseline_release_id=self.records.serving_release_id(
                    conn, model, environment, action.baseline_version
                ),
            ),
        )

    def _add_event(self, conn: Connection, record: RolloutRecord, event: EventRecord) -> None:
        """The event row and its webhook notifications, in the caller's transaction."""
        self.records.add_event(conn, event)
        payload = {"model": record.model, "environment": record.environment, **event.to_dict()}
        self._webhooks().enqueue(conn, "state_change", payload)

    def _chain(
        self,
        conn: Connection,
        identity: str,
        verb: str,
        record: RolloutRecord | None,
        model: str,
        environment: str,
        detail: dict[str, Any],
        ts: float,
    ) -> None:
        """The move's row in the audit chain, last in the transaction (after the alias), so
        the chain's lock is held only for the insert and taken after every row lock."""
        if self.audit is None:
            return
        if record is not None:
            detail = {"rollout_id": record.id, "candidate": record.candidate_version, **detail}
        self.audit.append_in(conn, identity, verb, model, environment, detail, ts=ts)

    def _chain_event(self, conn: Connection, record: RolloutRecord, event: EventRecord) -> None:
        self._chain(
            conn,
            event.actor,
            f"{event.from_state or 'new'}->{event.to_state}",
            record,
            record.model,
            record.environment,
            {"kind": "transition", "step_index": event.step_index, "reason": event.reason[:500]},
            event.ts,
        )

    def _move_aliases(self, model: str, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, MoveAlias):
                self._registry().set_alias(model, action.alias, action.version)

    # -- release records --

    def _release_rows(self, record: RolloutRecord, decision: Decision, now: float) -> list[Release]:
        return [
            self._release_row(record, action, decision, now)
            for action in decision.actions
            if isinstance(action, RecordRelease)
        ]

    def _release_row(
        self, record: RolloutRecord, action: RecordRelease, decision: Decision, now: float
    ) -> Release:
        """The release record of ``action``: lineage from the registry, and the evidence of
        every judged step (for a rollback, the evidence that started it). A registry that does
        not answer raises RegistryUnavailable (nothing is saved; the rollout waits); a version
        the registry no longer has (a rollback after it was deleted) is recorded without
        lineage."""
        try:
            info: ModelVersionInfo | None = self._registry().resolve(record.model, action.version)
        except VersionNotFound:
            info = None
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
        evidence: dict[str, Any] = {"reason": decision.reason}
        if action.kind != "initial":
            evidence |= {"steps": steps, "final": final}
        return Release(
            model=record.model,
            environment=record.environment,
            version=action.version,
            previous_version=action.previous_version,
            kind=action.kind,
            artifact_digest=info.digest if info is not None else None,
            run_id=info.run_id if info is not None else None,
            git_commit=info.git_commit if info is not None else None,
            config_hash=record.config_hash,
            rollout_id=record.id,
            started_by=record.started_by,
            approved_by=decision.approved_by,
            started_at=record.created_at,
            finished_at=now,
            outcome=action.outcome,
            evidence=evidence,
        )
