"""The features a rollout's arms serve, counted against a reference for the ``input_drift`` gate.

:meth:`ServedInputs.look` gives the judge an :class:`~rollout.judge.Inputs` at each look of a
rollout whose spec has an ``input_drift`` gate. The reference is the candidate's training
reference (:func:`rollout.registry.find_reference`: a dataset logged with
``mlflow.log_input``, else a sample beside the model), its columns limited to the features the
requests carry. Without one, the first ``STAND_IN_ROWS`` feature rows the baseline served in
the judged window stand in for it (the result says so), and the canary's rows are counted
once it is frozen.

The arms' rows are read incrementally (rows above the last id read, at most ``READ_ROWS`` per
arm and look) into :class:`~monitors.features.FeatureCounts` of the gate's ``max_rows``: the
first rows of the window, a prefix of the stream, so the bounds hold at every look. A restart
reads them again from the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from monitors.features import FeatureCounts, FeatureReference
from rollout.errors import RegistryError, RegistryUnavailable
from rollout.judge import Inputs
from rollout.spec import InputDriftGate
from rollout.store.predictions import PredictionLog
from rollout.store.records import RolloutRecord

if TYPE_CHECKING:
    import pandas as pd

    from rollout.registry import MlflowRegistry

log = logging.getLogger(__name__)

STAND_IN_ROWS = 5_000  # baseline rows that stand in for a missing training reference
READ_ROWS = 5_000  # rows read per arm and look (the rest at the next looks)
HISTORY_ROWS = 5_000  # the candidate's outputs (features) before a switch, and after, compared


@dataclass
class _State:
    key: tuple[float, str | None]
    frame: pd.DataFrame | None  # the training reference until its columns are chosen
    source: str
    why: str = ""
    reference: FeatureReference | None = None
    canary: FeatureCounts | None = None
    baseline: FeatureCounts | None = None
    last: dict[str, int] = field(default_factory=dict)  # arm -> the last id read
    stand_in: list[dict[str, object]] = field(default_factory=list)
    outage: bool = False  # the registry did not answer: ask again until a stand-in is frozen


@dataclass
class _History:
    key: tuple[float, int]
    counts: FeatureCounts | None = None
    last: int = 0


class ServedInputs:
    def __init__(self, predictions: PredictionLog, registry: Callable[[], MlflowRegistry]) -> None:
        self.predictions = predictions
        self._registry = registry
        self._states: dict[str, _State] = {}
        self._outputs: dict[str, _History] = {}  # the candidate's outputs around a switch
        self._features: dict[str, _History] = {}  # and its features

    def look(
        self, record: RolloutRecord, start: float, preview: str | None, gate: InputDriftGate
    ) -> Inputs:
        """The arms' features since ``start`` counted against the reference (``preview``: the
        candidate's pinned requests stand for the canary arm)."""
        key = (start, preview)
        state = self._states.get(record.id)
        if state is None or state.key != key or (state.outage and state.reference is None):
            state = self._states[record.id] = self._begin(record, key)
        canary_arm = "pinned" if preview is not None else "canary"
        if state.reference is None and state.frame is not None:
            rows = self._read(record.id, state, canary_arm, start, preview)
            if rows:
                self._choose_columns(state, rows)
        if state.reference is None and state.frame is None:
            self._stand_in(record.id, state, start)
        if state.reference is None:
            if state.frame is not None:
                return Inputs(None, why=f"no features logged yet to compare with {state.source}")
            return Inputs(
                None,
                why=f"{state.why}; the baseline's first {STAND_IN_ROWS:,} requests of this "
                f"rollout will stand in for one ({len(state.stand_in):,} so far)",
            )
        if state.canary is None:
            state.canary = FeatureCounts(state.reference, gate.max_rows)
            if state.frame is not None:  # a training reference: the baseline is compared too
                state.baseline = FeatureCounts(state.reference, gate.max_rows)
        self._count(record.id, state, canary_arm, start, preview, state.canary)
        if state.baseline is not None:
            self._count(record.id, state, "baseline", start, None, state.baseline)
        return Inputs(state.canary, state.baseline, state.source)

    def forget(self, rollout_id: str) -> None:
        self._states.pop(rollout_id, None)

    def outputs(self, rollout_id: str, start: float, first: int) -> FeatureCounts | None:
        """The candidate's outputs since plan generation ``first`` (the switch to 100%, or
        the watch) counted on the bins of its first ``HISTORY_ROWS`` outputs before it, in the
        window since ``start``; the later ones read incrementally, the first ``HISTORY_ROWS``
        (None: no outputs before the switch)."""
        return self._history(self._outputs, rollout_id, start, first, features=False)

    def history(self, rollout_id: str, start: float, first: int) -> Inputs:
        """The candidate's features since plan generation ``first`` against its own first
        ``HISTORY_ROWS`` before it (its canary-time window): the ``input_drift`` gate where it
        serves alone (a 100% step, the watch)."""
        counts = self._history(self._features, rollout_id, start, first, features=True)
        if counts is None:
            return Inputs(None, why="no feature rows of the candidate before the switch")
        before = counts.reference.n_rows
        return Inputs(counts, source=f"its own {before:,} requests before the switch")

    def _history(
        self,
        states: dict[str, _History],
        rollout_id: str,
        start: float,
        first: int,
        *,
        features: bool,
    ) -> FeatureCounts | None:
        key = (start, first)
        state = states.get(rollout_id)
        if state is None or state.key != key:
            _, before = self.predictions.candidate_rows(
                rollout_id, start, first, later=False, features=features, limit=HISTORY_ROWS
            )
            state = states[rollout_id] = _History(key)
            rows = before[:HISTORY_ROWS]
            try:
                reference = (
                    FeatureReference.from_rows(rows)
                    if features
                    else FeatureReference({"output": rows})
                )
            except ValueError:  # nothing before the switch (or rows without a feature)
                return None
            state.counts = FeatureCounts(reference, HISTORY_ROWS)
        if state.counts is None:
            return None
        if not state.counts.full:
            state.last, after = self.predictions.candidate_rows(
                rollout_id,
                start,
                first,
                later=True,
                features=features,
                after_id=state.last,
                limit=READ_ROWS,
            )
            state.counts.add(after if features else ({"output": value} for value in after))
        return state.counts

    def _begin(self, record: RolloutRecord, key: tuple[float, str | None]) -> _State:
        from mlflow.exceptions import MlflowException

        from contract.mlflow import answered_not_found
        from rollout.registry import find_reference

        version = record.candidate_version
        try:
            found = find_reference(self._registry(), record.model, version)
        except (RegistryError, MlflowException, OSError, ValueError) as exc:
            outage = isinstance(exc, RegistryUnavailable | OSError) or (
                isinstance(exc, MlflowException) and not answered_not_found(exc)
            )
            why = f"no training reference for v{version}: {exc}"
            return _State(key, None, "", why=why, outage=outage)
        if found.frame is None or found.frame.empty:
            why = found.why or f"the training reference of v{version} has no rows"
            return _State(key, None, "", why=why)
        return _State(key, found.frame, f"the training reference of v{version} ({found.source})")

    def _read(
        self, rollout_id: str, state: _State, arm: str, start: float, preview: str | None
    ) -> list[dict[str, object]]:
        last, rows = self.predictions.feature_rows(
            rollout_id, arm, start, state.last.get(arm, 0), READ_ROWS, version=preview
        )
        state.last[arm] = last
        return rows

    def _count(
        self,
        rollout_id: str,
        state: _State,
        arm: str,
        start: float,
        preview: str | None,
        counts: FeatureCounts,
    ) -> None:
        if not counts.full:
            counts.add(self._read(rollout_id, state, arm, start, preview))

    def _choose_columns(self, state: _State, rows: list[dict[str, object]]) -> None:
        """Freeze the training reference on the columns the requests carry."""
        assert state.frame is not None
        served = list(dict.fromkeys(name for row in rows for name in row))
        shared = [name for name in served if name in state.frame.columns]
        if not shared:
            state.why = (
                f"{state.source} shares no column with the served features "
                f"({', '.join(served[:5])}{', ...' if len(served) > 5 else ''})"
            )
            state.last = {}
            state.frame = None
            state.source = ""
            return
        state.reference = FeatureReference({name: state.frame[name].tolist() for name in shared})
        state.last = {}  # the rows read to choose the columns are counted from the start

    def _stand_in(self, rollout_id: str, state: _State, start: float) -> None:
        """Gather the baseline's first rows of the window; freeze them once there are
        ``STAND_IN_ROWS``."""
        rows = self._read(rollout_id, state, "baseline", start, None)
        state.stand_in.extend(rows[: STAND_IN_ROWS - len(state.stand_in)])
        if len(state.stand_in) < STAND_IN_ROWS:
            return
        try:
            state.reference = FeatureReference.from_rows(state.stand_in)
        except ValueError as exc:  # the rows carry no features
            state.why += f"; the baseline's requests cannot stand in: {exc}"
            state.stand_in = []
            return
        state.source = (
            f"the baseline's first {len(state.stand_in):,} requests of this rollout "
            f"(no training reference: {state.why})"
        )
        state.stand_in = []
        state.last = {}
