"""The manager loop: load → decide → apply → save, for every active rollout.

:meth:`Loop.drive` moves one rollout as far as it can go now: it loads the rollout, gathers the
evidence its state needs (:mod:`rollout.evidence`), asks the pure
:func:`rollout.machine.decide`, and has :mod:`rollout.apply` save the decision, until the
rollout waits or finishes (at most ``MAX_MOVES_PER_TICK`` moves). A command (promote, pause, …)
is the first move's input instead of evidence. :meth:`Loop.tick` drives every active rollout;
:meth:`Loop.run` ticks while this manager holds the store's lease (:mod:`rollout.lease`), and
every save it makes re-checks the lease in its transaction, so of several managers on one store
exactly one acts. Webhooks are delivered by a thread beside the ticks, so a slow receiver never
delays a decision; the release monitor (:mod:`rollout.degradation`) runs in a thread beside them
too, and the retention (:mod:`rollout.store.retention`) after each tick, within its budget.
Optimistic concurrency (``row_version``) makes a second manager, or a command racing a tick,
lose cleanly with :class:`~rollout.errors.ConflictError` instead of acting twice. A look or a
save that finds the registry down (:class:`~rollout.errors.Unavailable`) holds the rollout
where it is, with the reason recorded once, and it resumes by itself when the registry answers
(:mod:`rollout.outage`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from contract.clock import Clock
from rollout.apply import Applier
from rollout.degradation import MONITOR_EVERY_S, Degradation
from rollout.environments import Environments
from rollout.errors import ConflictError, NoSuchRollout, RolloutError, Unavailable
from rollout.evidence import Evidence
from rollout.lease import DEFAULT_TTL_S, Lease
from rollout.lifecycle import TERMINAL_STATES, Command, Decision, State, StepEvidence
from rollout.machine import decide
from rollout.outage import Holds
from rollout.reports import ReportQueue
from rollout.store.looks import LookStore
from rollout.store.records import RecordStore, RolloutRecord
from rollout.store.retention import Pruned
from rollout.stored import machine_state

if TYPE_CHECKING:
    from rollout.notify import Webhooks

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 30.0  # between passes of the retention (each deletes for at most its budget)
PRUNE_BEHIND_S = 2.0  # between passes while rows are still due
MAX_MOVES_PER_TICK = 8  # transitions one rollout may make in one tick (e.g. promoting → succeeded)


class Loop:
    def __init__(
        self,
        records: RecordStore,
        environments: Environments,
        evidence: Evidence,
        applier: Applier,
        webhooks: Callable[[], Webhooks],
        clock: Clock,
        looks: LookStore | None = None,
        prune: Callable[[float], Pruned] | None = None,
        monitor: Callable[[float], list[Degradation]] | None = None,
        audit_head: Callable[[], object] | None = None,
        audit_head_every_s: float = 60.0,
    ) -> None:
        self.records = records
        self._audit_head = audit_head  # exports the audit chain's head, every audit_head_every_s
        self._audit_head_every_s = audit_head_every_s
        self._audit_head_at = -float("inf")
        self._monitor = monitor  # the release monitor's pass, every MONITOR_EVERY_S
        self._prune = prune  # the retention's pass, every PRUNE_EVERY_S while holding the lease
        self._prune_at = -float("inf")  # when the next pass is due
        self.looks = looks
        # per rollout: the (step, baseline, canary) counts of the last look kept
        self._kept: dict[str, tuple[int | None, int, int]] = {}
        self.environments = environments
        self.evidence = evidence
        self.reports = ReportQueue(evidence.write_report)  # rendered beside the loop
        self.applier = applier
        self._webhooks = webhooks
        self.clock = clock
        self.lease: Lease | None = None  # set while run() holds the lease; fences every save
        self.holds = Holds()  # the rollouts waiting for the registry
        self.observers: list[Callable[[Decision], None]] = []  # told each tick's transitions

    def get(self, rollout_id: str) -> RolloutRecord:
        record = self.records.get(rollout_id)
        if record is None:
            raise NoSuchRollout(f"no rollout with id {rollout_id!r}")
        return record

    def drive(
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
        reports: list[tuple[RolloutRecord, StepEvidence, Path]] = []
        try:
            self._moves(rollout_id, now, command, fenced, made, reports)
        finally:  # on their own thread: a report never delays a move, a look or the lease
            for record, evidence, path in reports:
                self.reports.submit(record, evidence, path)
        return made

    def _moves(
        self,
        rollout_id: str,
        now: float,
        command: Command | None,
        fenced: bool,
        made: list[Decision],
        reports: list[tuple[RolloutRecord, StepEvidence, Path]],
    ) -> None:
        """:meth:`drive`'s moves, appended to ``made``; the drift reports of the decisions
        saved, to render, appended to ``reports``."""
        fence = self.lease if fenced else None
        for _ in range(MAX_MOVES_PER_TICK):
            record = self.get(rollout_id)
            if command is None and record.state in TERMINAL_STATES:
                self.holds.forget(record.id)
                break
            state = machine_state(record, self.environments.get(record.environment))
            try:
                evidence = self.evidence.look(record, state, now) if command is None else None
            except Unavailable as exc:  # the registry: wait, and say so once
                self._hold(record, now, exc, fence)
                break
            if command is None and record.id in self.holds:
                reason = self.holds.resume(record.id, now)
                if reason is not None:
                    self._note(record, now, reason, fence)
                    record = self.get(rollout_id)
            if evidence is not None:
                self._keep(record.id, evidence, now)
            decision = decide(state, evidence, now, command)
            if not decision.changed:
                break
            report = self.evidence.report_path(record, evidence) if evidence else None
            if report is not None and decision.evidence is not None:
                decision = replace(
                    decision, evidence=replace(decision.evidence, report=str(report))
                )
            try:
                self.applier.save(record, decision, now, fence=fence)
            except ConflictError:
                if made:  # our earlier move (a command's) took effect; another manager goes on
                    break
                raise
            except Unavailable as exc:  # a release's lineage or the alias: nothing was saved
                if command is not None:
                    raise
                self._hold(record, now, exc, fence)
                break
            if report is not None and decision.evidence is not None:
                reports.append((record, decision.evidence, report))  # after it took effect
            made.append(decision)
            command = None

    def _hold(
        self, record: RolloutRecord, now: float, error: Unavailable, fence: Lease | None
    ) -> None:
        """``record`` waits for the registry: its reason and an event, once per kind of wait."""
        reason = self.holds.hold(record.id, now, error)
        if reason is None:  # already said
            log.debug("rollout %s (%s) still waits: %s", record.id, record.state, error)
            return
        log.warning("rollout %s (%s) waits: %s", record.id, record.state, error)
        self._note(record, now, reason, fence)

    def _note(self, record: RolloutRecord, now: float, reason: str, fence: Lease | None) -> None:
        """An event in the rollout's current state (no transition) and its reason."""
        state: State = record.state  # type: ignore[assignment]
        note = Decision(
            from_state=state,
            to_state=state,
            event=None,
            reason=reason,
            step_index=record.step_index,
            step_started_at=record.step_started_at,
            approved_by=record.approved_by,
        )
        self.applier.save(record, note, now, fence=fence)

    def _keep(self, rollout_id: str, evidence: StepEvidence, now: float) -> None:
        """Keep the look's bounds for plots when its window grew since the last one kept."""
        if self.looks is None or evidence.kind != "step" or not evidence.gates:
            return
        if evidence.n_canary == 0:  # nothing of the candidate yet: bounds say nothing
            return
        counts = (evidence.step_index, evidence.n_baseline, evidence.n_canary)
        if self._kept.get(rollout_id) == counts:
            return
        try:
            self.looks.record(rollout_id, evidence, now)
        except SQLAlchemyError as exc:  # a record for plots never stops a decision
            log.warning("rollout %s: look not kept: %s", rollout_id, exc)
            return
        self._kept[rollout_id] = counts

    def tick(self, now: float | None = None) -> list[Decision]:
        """One pass over every active rollout; returns the transitions made."""
        made: list[Decision] = []
        active = self.records.list_active()
        for gone in set(self._kept) - {record.id for record in active}:
            del self._kept[gone]
        self.holds.keep_only({record.id for record in active})
        for record in active:
            try:
                at = now if now is not None else self.clock.time()
                made.extend(self.drive(record.id, at, fenced=True))
            except ConflictError as exc:
                log.info("rollout %s: %s", record.id, exc)
            except RolloutError as exc:
                log.warning("rollout %s: %s", record.id, exc)
        return made

    def run(
        self,
        lease: Lease,
        interval_s: float = 0.5,
        stop_event: threading.Event | None = None,
    ) -> None:
        """Tick every ``interval_s`` while holding ``lease``, until ``stop_event``.

        A manager without the lease stands by and tries again every ``interval_s``; it takes
        over within the lease's TTL after the holder stops renewing (see :mod:`rollout.lease`).
        """
        stop = stop_event or threading.Event()
        holding, first = False, True
        done = threading.Event()
        deliverer = threading.Thread(
            target=self._deliver_webhooks,
            args=(stop, done, interval_s),
            name="webhooks",
            daemon=True,  # an attempt stuck in its timeout never holds up shutdown
        )
        deliverer.start()
        monitor = threading.Thread(
            target=self._monitor_releases, args=(stop, done), name="release-monitor", daemon=True
        )
        if self._monitor is not None:
            monitor.start()
        try:
            while not stop.is_set():
                try:
                    if lease.acquire():
                        if not holding:
                            log.info("manager %s holds the lease", lease.holder)
                        holding, self.lease = True, lease
                        for decision in self.tick():
                            log.info(
                                "%s → %s: %s",
                                decision.from_state,
                                decision.to_state,
                                decision.reason,
                            )
                            for observe in self.observers:
                                observe(decision)
                        self._export_audit_head()
                        self._housekeeping()
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
            deliverer.join(timeout=self._webhooks().timeout_s + 1.0)
            if monitor.is_alive():
                monitor.join(timeout=2.0)  # a pass reading a long log ends on its own
            if holding:
                lease.release()

    def _export_audit_head(self) -> None:
        """Export the audit chain's head (:meth:`rollout.store.audit.AuditLog.export_head`)
        every ``audit_head_every_s`` while holding the lease; a failure is logged, not fatal."""
        now = self.clock.time()
        if self._audit_head is None or now < self._audit_head_at:
            return
        self._audit_head_at = now + self._audit_head_every_s
        try:
            self._audit_head()
        except (OSError, SQLAlchemyError):
            log.exception("exporting the audit chain's head failed; trying again later")

    def _housekeeping(self) -> None:
        """The retention's pass, after a tick (so it never delays a decision by more than its
        budget): every ``PRUNE_EVERY_S``, or ``PRUNE_BEHIND_S`` while rows are still due."""
        now = self.clock.time()
        if self._prune is None or now < self._prune_at:
            return
        self._prune_at = now + PRUNE_EVERY_S
        try:
            pruned = self._prune(now)
        except SQLAlchemyError:
            log.exception("pruning the prediction log failed; trying again later")
            return
        if pruned.rows or pruned.windows:
            log.info(
                "retention: %d rows, %d labels and %d monitoring windows deleted in %.2fs",
                pruned.rows,
                pruned.labels,
                pruned.windows,
                pruned.seconds,
            )
        if not pruned.done:
            self._prune_at = now + PRUNE_BEHIND_S

    def _monitor_releases(self, stop: threading.Event, done: threading.Event) -> None:
        """The release monitor's pass every ``MONITOR_EVERY_S`` while this manager holds the
        lease, beside the tick loop: reading an hour of a busy model's log takes seconds, and
        a decision never waits for it."""
        assert self._monitor is not None
        while not (stop.is_set() or done.is_set()):
            if self.lease is not None:
                try:
                    for alarm in self._monitor(self.clock.time()):
                        back = (
                            " (traffic back on the previous release)" if alarm.rolled_back else ""
                        )
                        log.warning("%s%s", alarm.reason, back)
                except Exception:
                    log.exception("monitoring the serving releases failed; trying again later")
            done.wait(MONITOR_EVERY_S)

    def _deliver_webhooks(
        self, stop: threading.Event, done: threading.Event, interval_s: float
    ) -> None:
        """Post due webhooks while this manager holds the lease, beside the tick loop, so a
        slow or dead receiver (each attempt may wait ``timeout_s``) never delays a decision."""
        while not (stop.is_set() or done.is_set()):
            if self.lease is not None:
                try:
                    self._webhooks().deliver_due()
                except Exception:
                    log.exception("webhook delivery failed; retrying in %.2fs", interval_s)
            done.wait(interval_s)


__all__ = ["DEFAULT_TTL_S", "MAX_MOVES_PER_TICK", "Loop"]
