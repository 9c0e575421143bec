"""What a router records: one :class:`PredictionRecord` per served request, and delayed labels.

Routers write records through a :class:`PredictionSink` (in batches, off the request path) and
labels through a :class:`FeedbackSink`; the manager reads both back from the store to judge a
step. :class:`InMemoryPredictionLog` is the twin of the SQL implementations
(:mod:`contract.sql.predictions`): one contract suite runs over all of them.

A label is joined to its request by ``request_id``. The first label of a request wins: a
second one is refused (:class:`LabelConflict`) unless it comes from the same ``writer``, and
then it replaces the first, which is kept in the label's history (a correction). The same label
again from its writer changes nothing (a retried call). A batch is stored whole or not at all.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PredictionRecord:
    request_id: str
    ts: float  # wall clock, epoch seconds
    environment: str
    model: str
    version: str
    arm: str  # contract.names.Arm: baseline | canary | pinned | shadow | failover
    rollout_id: str | None
    plan_generation: int
    features: str | None  # JSON list of input rows, or None when not sampled
    output: str | None  # JSON list of predictions; None on error
    latency_ms: float
    error: str | None
    status_code: int


@dataclass(frozen=True)
class Feedback:
    request_id: str
    label: object  # a scalar, or one label per row of the request
    ts: float  # when the label arrived, epoch seconds
    writer: str | None = None  # which label writer stored it (a digest of its token)


class LabelConflict(Exception):
    """Some requests already have a label from another writer; nothing was stored."""

    def __init__(self, request_ids: Sequence[str]) -> None:
        self.request_ids = tuple(request_ids)
        shown = ", ".join(repr(r) for r in self.request_ids[:3])
        more = f" and {len(self.request_ids) - 3} more" if len(self.request_ids) > 3 else ""
        super().__init__(f"already labelled by another writer: {shown}{more}")


class PredictionSink(Protocol):
    """Where prediction records go."""

    def write(self, records: Sequence[PredictionRecord]) -> None:
        """Store every record, or none (raise)."""
        ...


class FeedbackSink(Protocol):
    """Where delayed labels go."""

    def add_feedback(self, labels: Sequence[Feedback]) -> None:
        """Store every label or none: :class:`LabelConflict` if a request has a label from
        another writer; a label from the same writer replaces the old one (kept in history)."""
        ...


class InMemoryPredictionLog:
    """Records and labels in memory (tests, dry runs): a prediction and a feedback sink."""

    def __init__(self) -> None:
        self.records: list[PredictionRecord] = []
        self._labels: dict[str, Feedback] = {}
        self.history: list[tuple[Feedback, float]] = []  # (replaced label, replaced at)
        self._lock = threading.Lock()

    def write(self, records: Sequence[PredictionRecord]) -> None:
        with self._lock:
            self.records.extend(records)

    def add_feedback(self, labels: Sequence[Feedback]) -> None:
        with self._lock:
            conflicts = [
                f.request_id
                for f in labels
                if f.request_id in self._labels and self._labels[f.request_id].writer != f.writer
            ]
            if conflicts:
                raise LabelConflict(conflicts)
            for label in labels:
                old = self._labels.get(label.request_id)
                if old is not None:
                    if json.dumps(old.label) == json.dumps(label.label):
                        continue  # the same label again: a retried call
                    self.history.append((old, label.ts))
                self._labels[label.request_id] = label

    @property
    def labels(self) -> list[Feedback]:
        """The current label of every labelled request, in first-arrival order."""
        with self._lock:
            return list(self._labels.values())


def parse_feedback(payload: object) -> Iterable[tuple[str, object]]:
    """(request_id, label) pairs from ``{"request_id", "label"}`` or a list of them.

    Raises ``ValueError`` naming the offending item and field.
    """
    items = payload if isinstance(payload, list) else [payload]
    for index, item in enumerate(items):
        where = f"item {index}" if isinstance(payload, list) else "body"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object with 'request_id' and 'label'")
        request_id = item.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise ValueError(f"{where}: 'request_id' must be a non-empty string")
        if "label" not in item:
            raise ValueError(f"{where}: 'label' is missing")
        yield request_id, item["label"]
