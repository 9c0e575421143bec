"""What people ask of the manager: start a rollout, move one by a command, return to a release.

- :meth:`Commands.start` checks the candidate (the registry has it; it succeeded in the
  environment before this one, as the same artifact; nothing is active; it is not what serves)
  and creates the rollout. With nothing serving yet it is an *initial release*, decided by the
  state machine at once. Otherwise the new rollout is driven as far as it goes now (a running
  manager loop may move it first; then the loop drives it).
- :meth:`Commands.command` turns promote / approve / pause / resume / abort / rollback into a
  :class:`~rollout.lifecycle.Command` for the active rollout's next move (retried when a tick
  moved the rollout between our read and our write).
- :meth:`Commands.rollback` without an active rollout returns traffic to an earlier release
  (:func:`rollout.effects.return_to`, applied by :mod:`rollout.apply`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING

from contract.clock import Clock
from contract.plans import PlanStore
from rollout.apply import Applier
from rollout.effects import return_to
from rollout.environments import Environments
from rollout.errors import (
    ArtifactChanged,
    ConflictError,
    NoActiveRollout,
    NotFound,
    StateError,
)
from rollout.evidence import digest_matches
from rollout.lifecycle import Command, CommandKind
from rollout.loop import Loop
from rollout.machine import decide
from rollout.spec import RolloutSpec, config_hash, default_spec
from rollout.store.records import RecordStore, Release, RolloutRecord
from rollout.stored import bind_spec, machine_state

if TYPE_CHECKING:
    from rollout.registry import MlflowRegistry

COMMAND_RETRIES = 3


class Commands:
    def __init__(
        self,
        records: RecordStore,
        plans: PlanStore,
        environments: Environments,
        registry: Callable[[], MlflowRegistry],
        applier: Applier,
        loop: Loop,
        clock: Clock,
    ) -> None:
        self.records = records
        self.plans = plans
        self.environments = environments
        self._registry = registry
        self.applier = applier
        self.loop = loop
        self.clock = clock

    def serving_version(self, model: str, environment: str) -> str | None:
        """The version ``@environment`` points at, else the plan's baseline; None: none."""
        plan = self.plans.get(environment, model)
        return self._registry().alias_version(model, environment) or (
            plan.baseline_version if plan is not None else None
        )

    def start(
        self,
        model: str,
        candidate: str | int,
        environment: str,
        spec: RolloutSpec | None = None,
        actor: str = "unknown",
    ) -> str:
        """Start a rollout of ``candidate`` (a version or ``@alias``); returns its id."""
        self.environments.check(environment)  # a typo is refused, never released to
        spec = bind_spec(spec or default_spec(), model, candidate, environment)
        registry = self._registry()
        version = registry.resolve(model, str(candidate)).version
        digest = registry.record_digest(model, version)
        self._check_environment_order(model, environment, version, digest)
        active = self.records.active(model, environment)
        if active is not None:
            raise StateError(
                f"{model} already has rollout {active.id} ({active.state}) in {environment}; "
                "promote, roll it back or abort it first"
            )
        baseline = self.serving_version(model, environment)
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
        if baseline is None:  # an initial release: verified now, or refused with nothing stored
            verified = digest_matches(version, registry.verify_digest(model, version), "verify")
            state = machine_state(record, self.environments.get(environment))
            decision = decide(state, verified, now)
            self.applier.create(record, now, decision.reason, decision)
            return record.id
        reason = f"canary of v{version} over v{baseline} started by {actor}"
        self.applier.create(record, now, reason)
        with suppress(ConflictError):  # a running manager loop moved it first: it drives it
            self.loop.drive(record.id, now)
        return record.id

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
            raise ArtifactChanged(
                f"{model} v{version}: artifact digest {digest} differs from the one that "
                f"succeeded in {before} ({passed[0].artifact_digest})"
            )

    def command(
        self,
        model: str,
        environment: str,
        kind: CommandKind,
        actor: str,
        reason: str | None = None,
    ) -> RolloutRecord:
        """The active rollout after ``kind`` by ``actor``."""
        command = Command(kind=kind, actor=actor, reason=reason)
        for attempt in range(COMMAND_RETRIES):
            active = self.records.active(model, environment)
            if active is None:
                raise NoActiveRollout(f"{model} has no active rollout in {environment}")
            try:
                self.loop.drive(active.id, self.clock.time(), command)
            except ConflictError:
                if attempt == COMMAND_RETRIES - 1:
                    raise
                continue
            return self.loop.get(active.id)
        raise AssertionError("unreachable")

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
            record = self.command(model, environment, "rollback", actor, reason)
            for release in self.records.releases(model, environment):
                if release.rollout_id == record.id:
                    return release
            raise StateError(f"rollout {record.id} is {record.state}; no release was recorded")
        return self._return_to(model, environment, actor, to_release, reason)

    def _return_to(
        self,
        model: str,
        environment: str,
        actor: str,
        to_release: int | None,
        reason: str | None,
    ) -> Release:
        current = self.serving_version(model, environment)
        if current is None:
            raise NotFound(f"{model} has never been released in {environment}")
        if to_release is not None:
            target = self.records.release(to_release)
            if target is None or (target.model, target.environment) != (model, environment):
                raise NotFound(f"release {to_release} is not a release of {model} in {environment}")
            if target.outcome != "succeeded":
                raise StateError(
                    f"release {to_release} (v{target.version}) {target.outcome}; "
                    "only a release that succeeded can be returned to"
                )
        else:
            history = self.records.releases(model, environment)
            found = [r for r in history if r.outcome == "succeeded" and r.version != current]
            if not found:
                raise StateError(f"no earlier release of {model} in {environment} to roll back to")
            target = found[0]
        assert target.id is not None
        plan = self.plans.get(environment, model)
        actions = return_to(
            serving=current,
            version=target.version,
            release_id=target.id,
            sticky_key=plan.sticky_key if plan is not None else None,
            environment=environment,
        )
        registry = self._registry()
        digest = registry.verify_digest(model, target.version)
        info = registry.resolve(model, target.version)
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
        return self.applier.release(model, environment, actions, release)
