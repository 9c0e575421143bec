"""Retention of the prediction log: old rows pruned in batches, never a window still judged.

Every request the router serves is a row of ``predictions`` (with its features), and a label
a row of ``feedback`` (each label its writer replaced, one of ``feedback_history``). An
environment's ``retention`` (``environments.yaml``: ``retention: {days: 14, max_rows:
5000000}``) bounds both: a row older than ``days``, or beyond the newest ``max_rows`` of its
environment, is deleted with its labels. Rows of an active
rollout (any state from ``pending`` to ``watching``) are kept whatever their age: their window
is still being judged. ``max_rows`` counts them, so an environment may stay above it while a
long rollout runs.

:meth:`Retention.prune` deletes in batches of ``batch`` rows, each batch its own short
transaction (the router's log writer waits at most one batch on SQLite), oldest first, until
nothing is due or ``budget_s`` has passed; the manager's loop calls it between ticks while it
holds the store's lease, so one manager prunes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, delete, or_, select

from contract.sql.schema import feedback, feedback_history, predictions

DAY_S = 86_400.0
DEFAULT_BATCH = 5_000


@dataclass(frozen=True)
class RetentionPolicy:
    """How long an environment keeps its prediction log: ``days`` of age, ``max_rows`` rows
    (None: no bound of that kind)."""

    days: float | None = None
    max_rows: int | None = None

    @property
    def bounded(self) -> bool:
        return self.days is not None or self.max_rows is not None


@dataclass(frozen=True)
class Pruned:
    """What one call of :meth:`Retention.prune` deleted."""

    rows: int  # predictions (each with its label, if it had one)
    labels: int
    batches: int
    seconds: float
    done: bool  # nothing more was due when it stopped
    windows: int = 0  # kept monitoring windows (:meth:`rollout.degradation.ReleaseMonitor.prune`)


class Retention:
    def __init__(
        self,
        engine: Engine,
        policies: Callable[[], Iterable[tuple[str, RetentionPolicy]]],
        active_rollouts: Callable[[], Sequence[str]],
        *,
        batch: int = DEFAULT_BATCH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.engine = engine
        self.policies = policies
        self.active_rollouts = active_rollouts
        self.batch = batch
        self.clock = clock

    def prune(self, now: float, budget_s: float = 1.0) -> Pruned:
        """Delete due rows of every bounded environment, a batch at a time, until none is
        due or ``budget_s`` has passed (at least one batch per environment is tried)."""
        started = self.clock()
        rows = labels = batches = 0
        done = True
        keep = tuple(self.active_rollouts())
        for environment, policy in self.policies():
            if not policy.bounded:
                continue
            while True:
                deleted, unlabelled = self._batch(environment, policy, now, keep)
                if deleted:
                    batches += 1
                rows, labels = rows + deleted, labels + unlabelled
                if deleted < self.batch:
                    break  # nothing more due here
                if self.clock() - started >= budget_s:
                    done = False
                    break
            if not done:
                break
        return Pruned(rows, labels, batches, self.clock() - started, done)

    def _batch(
        self, environment: str, policy: RetentionPolicy, now: float, keep: tuple[str, ...]
    ) -> tuple[int, int]:
        """Delete one batch of due rows (oldest first) and their labels; (rows, labels)."""
        due = []
        if policy.days is not None:
            due.append(predictions.c.ts < now - policy.days * DAY_S)
        with self.engine.begin() as conn:
            if policy.max_rows is not None:
                last_kept = conn.execute(
                    select(predictions.c.id)
                    .where(predictions.c.environment == environment)
                    .order_by(predictions.c.id.desc())
                    .offset(policy.max_rows)
                    .limit(1)
                ).scalar()
                if last_kept is not None:
                    due.append(predictions.c.id <= last_kept)
            if not due:
                return 0, 0
            where = [predictions.c.environment == environment, or_(*due)]
            if keep:  # an active rollout's rows: its window is still judged
                where.append(
                    or_(predictions.c.rollout_id.is_(None), predictions.c.rollout_id.not_in(keep))
                )
            found = conn.execute(
                select(predictions.c.id, predictions.c.request_id)
                .where(*where)
                .order_by(predictions.c.id)
                .limit(self.batch)
            ).all()
            if not found:
                return 0, 0
            ids = [row.id for row in found]
            request_ids = list({row.request_id for row in found})
            unlabelled = conn.execute(
                delete(feedback).where(feedback.c.request_id.in_(request_ids))
            ).rowcount
            conn.execute(  # the labels their writers replaced go too
                delete(feedback_history).where(feedback_history.c.request_id.in_(request_ids))
            )
            conn.execute(delete(predictions).where(predictions.c.id.in_(ids)))
        return len(ids), int(unlabelled or 0)
