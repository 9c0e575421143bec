"""Every serving release, rollout or not, watched window after window for as long as it serves.

While it holds the lease the manager runs :meth:`ReleaseMonitor.run` every ``MONITOR_EVERY_S``.
For each model with a traffic plan in an environment, the windows that closed since the last
pass (the environment's ``monitor.window``, an hour by default, aligned on the clock; a window
closes ``SETTLE_S`` after its end, once the routers' batched log writers have flushed it) are
read from the prediction log (:meth:`rollout.store.monitoring.Monitoring.read`) and kept in the
store's ``monitor_windows``: one row per version that served, with its requests, errors,
latency quantiles, top outputs and labelled requests. At most ``MAX_WINDOWS_PER_PASS`` windows
a pass (a manager that was down catches up over a few passes); the first pass starts
``REFERENCE_MAX_WINDOWS`` windows back.

The serving version (the plan's baseline) is judged by three change detectors
(:mod:`monitors.changes`: an e-detector per stream, at most one false alarm per 30 days of
hourly windows expected across the three), each counting "bad" requests against a bound
``p0`` taken from the version's **reference period**, its own first kept windows in the
environment (from its first window with requests until they hold ``REFERENCE_REQUESTS``
requests over at least ``REFERENCE_WINDOWS`` windows, or ``MIN_REFERENCE_REQUESTS`` after
``REFERENCE_MAX_WINDOWS``; until then its windows are kept, marked warming up):

- **errors**: failed requests among its requests, held to the reference rate's upper bound
  (Clopper-Pearson, alpha 0.2) with the release's ``error_rate`` gate's allowances
  (``max_ratio``, ``max_increase``: the default gates' when its spec has none);
- **latency**: requests slower than ``max_ratio`` times the reference's ``quantile`` latency
  (the ``latency`` gate's), among its requests, held to ``1 - quantile``: the null is "the
  quantile is at most ``max_ratio`` times the reference's";
- **quality**: wrong outputs among its labelled requests (the labels that arrived by the time
  the window is read), held to the reference's wrong rate's upper bound plus the ``quality``
  gate's ``max_decrease``; only with ``MIN_REFERENCE_LABELS`` labelled reference requests.

Each kept window of the serving version also holds its **input drift**: its first
``INPUT_ROWS`` feature rows against the version's training reference
(:func:`rollout.registry.find_reference`), else against its first window with requests (which
then says it is the reference), per feature with the false discovery rate held at
``INPUT_ALPHA`` within the window (:mod:`monitors.features`). It is shown, never alarmed on.
The first window's rows are kept in ``input_references`` when first read, so a manager that
starts after retention pruned them compares with the same rows.

A degradation found in the first hours of a release is the rollout's gates' and the watch's to
catch; these detectors find the changes that come later. An alarm is written on its window's
row, sent to the webhooks as ``degraded``, and with the environment's ``on_degradation:
rollback`` traffic returns to the previous release (unless a rollout is active: its gates own
the traffic then). The alarmed detector restarts; the rolled-back-to version starts its own.

Kept windows older than an environment's ``retention.days`` are deleted by the retention's
pass (:meth:`ReleaseMonitor.prune`), but for what the detectors need: each version's newest
window (their state), every window of a version not judged yet (its reference period so far),
its first window with ``MIN_INPUT_ROWS`` requests (the inputs' fallback reference) and every
window that raised an alarm.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import ColumnElement, Connection, Engine, Row, RowMapping, delete, func, select

from contract.sql.schema import input_references, monitor_windows, traffic_plans
from monitors.changes import ChangeDetector, bound_from_reference
from monitors.features import MAX_FEATURES, FeatureCounts, FeatureReference, input_drift
from rollout.environments import Environments
from rollout.notify import Webhooks
from rollout.spec import AnalysisSpec
from rollout.store.monitoring import Monitoring, VersionWindow, Window
from rollout.store.packed import by_column, from_columns, insert_new, pack, unpack
from rollout.store.predictions import PredictionLog
from rollout.summary import LATENCY_EDGES

if TYPE_CHECKING:
    from rollout.registry import Reference

log = logging.getLogger(__name__)

MONITOR_EVERY_S = 30.0
SETTLE_S = 60.0  # a window is read this long after its end
MAX_WINDOWS_PER_PASS = 48
REFERENCE_REQUESTS = 30_000
REFERENCE_WINDOWS = 3
REFERENCE_MAX_WINDOWS = 24
MIN_REFERENCE_REQUESTS = 1_000
MIN_REFERENCE_LABELS = 200
REFERENCE_ALPHA = 0.2
INPUT_ROWS = 2_000  # feature rows of a window compared with the reference
MIN_INPUT_ROWS = 100
PRUNE_BATCH = 5_000  # kept windows one retention pass deletes at most
INPUT_ALPHA = 0.05
STREAMS = ("errors", "latency", "quality")


@dataclass(frozen=True)
class Degradation:
    """An alarm a serving release raised, and whether traffic went back because of it."""

    environment: str
    model: str
    version: str
    stream: str
    start: float
    end: float
    reason: str
    rolled_back: bool = False


@dataclass(frozen=True)
class KeptWindow:
    """One kept window of one version (``rollout monitor`` reads them back)."""

    environment: str
    model: str
    version: str
    start: float
    end: float
    requests: int
    errors: int
    labelled: int
    wrong: int
    summary: Mapping[str, Any]
    detectors: Mapping[str, Any] | None
    alarm: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ReleaseMonitor:
    def __init__(
        self,
        engine: Engine,
        environments: Callable[[], Environments],
        webhooks: Callable[[], Webhooks],
        analysis: Callable[[str, str, str], AnalysisSpec],
        active: Callable[[str, str], bool],
        rollback: Callable[[str, str, str], None],
        reference: Callable[[str, str], Reference] | None = None,
    ) -> None:
        self.engine = engine
        self._environments = environments
        self._webhooks = webhooks
        self._analysis = analysis  # (model, environment, version) -> the release's analysis
        self._active = active  # (model, environment) -> a rollout is active there
        self._rollback = rollback  # (model, environment, reason): back to the previous release
        self._reference = reference  # (model, version) -> its training reference
        # (environment, model, version) -> the reference its windows' inputs are compared with
        self._inputs: dict[tuple[str, str, str], _InputReference] = {}
        self._training: dict[tuple[str, str], Reference] = {}  # (model, version): none found
        self.predictions = PredictionLog(engine)

    def run(self, now: float, budget_s: float = 2.0) -> list[Degradation]:
        """Keep and judge every closed window not kept yet (within ``budget_s``, roughly:
        the rest at the next pass); returns the alarms raised."""
        began = time.monotonic()
        raised: list[Degradation] = []
        with self.engine.connect() as conn:
            plans = [
                (str(env), str(model), str(version))
                for env, model, version in conn.execute(
                    select(
                        traffic_plans.c.environment,
                        traffic_plans.c.model,
                        traffic_plans.c.baseline_version,
                    )
                )
            ]
        for environment, model, serving in plans:
            if time.monotonic() - began > budget_s:
                break
            raised.extend(self._pass(environment, model, serving, now))
        return raised

    def prune(self, now: float, older_than: Mapping[str, float], limit: int = PRUNE_BATCH) -> int:
        """Delete up to ``limit`` kept windows that ended more than ``older_than[environment]``
        seconds before ``now`` (an environment's ``retention.days``; one not named keeps all);
        how many. What the detectors still need stays, whatever its age (see the module's
        docstring): every version's newest window (its detectors' state), every window of a
        version whose detectors are not judging yet (its reference period so far), the first
        window each version's inputs are compared with, and every window that raised an alarm."""
        deleted = 0
        for environment, seconds in older_than.items():
            with self.engine.begin() as conn:
                doomed = self._prunable(conn, environment, now - seconds, limit - deleted)
                if doomed:
                    conn.execute(delete(monitor_windows).where(monitor_windows.c.id.in_(doomed)))
            deleted += len(doomed)
            if deleted >= limit:
                break
        return deleted

    def _prunable(self, conn: Connection, environment: str, cutoff: float, limit: int) -> list[int]:
        """The ids of up to ``limit`` windows of ``environment`` :meth:`prune` may delete."""
        table = monitor_windows.c
        here = table.environment == environment
        keep: set[int] = set()
        judging: list[tuple[str, str]] = []
        for row in _each_versions(conn, here, start=func.max(table.start)):  # the newest window
            keep.add(int(row.id))
            if row.detectors and "streams" in json.loads(row.detectors):
                judging.append((str(row.model), str(row.version)))
        first_inputs = _each_versions(
            conn, here, table.requests >= MIN_INPUT_ROWS, start=func.min(table.start)
        )
        keep.update(int(row.id) for row in first_inputs)
        doomed: list[int] = []
        for model, version in judging:
            if len(doomed) >= limit:
                break
            found = conn.execute(
                select(table.id)
                .where(
                    here,
                    table.model == model,
                    table.version == version,
                    table.end < cutoff,
                    table.alarm.is_(None),
                )
                .order_by(table.start)
                .limit(limit - len(doomed) + len(keep))
            ).scalars()
            doomed.extend(i for i in map(int, found) if i not in keep)
        return doomed[:limit]

    def windows(self, model: str, environment: str, limit: int = 48) -> list[KeptWindow]:
        """The newest ``limit`` kept windows of ``model`` in ``environment``, oldest first."""
        query = (
            select(monitor_windows)
            .where(monitor_windows.c.environment == environment, monitor_windows.c.model == model)
            .order_by(monitor_windows.c.start.desc(), monitor_windows.c.version)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = [_kept(row._mapping) for row in conn.execute(query)]
        return rows[::-1]

    def alarms(self, model: str, environment: str, limit: int = 20) -> list[KeptWindow]:
        """The newest ``limit`` windows that raised an alarm, newest first."""
        query = (
            select(monitor_windows)
            .where(
                monitor_windows.c.environment == environment,
                monitor_windows.c.model == model,
                monitor_windows.c.alarm.is_not(None),
            )
            .order_by(monitor_windows.c.start.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_kept(row._mapping) for row in conn.execute(query)]

    # -- one model in one environment --

    def _pass(self, environment: str, model: str, serving: str, now: float) -> list[Degradation]:
        env = self._environments().get(environment)
        width = env.monitor_window_s
        closed = math.floor((now - SETTLE_S) / width) * width  # the newest closed window's end
        with self.engine.connect() as conn:
            last = conn.execute(
                select(func.max(monitor_windows.c.end)).where(
                    monitor_windows.c.environment == environment,
                    monitor_windows.c.model == model,
                )
            ).scalar()
        first = (
            closed - REFERENCE_MAX_WINDOWS * width
            if last is None
            else math.ceil(float(last) / width - 1e-9) * width
        )
        end = min(closed, first + MAX_WINDOWS_PER_PASS * width)
        if end <= first:
            return []
        read = Monitoring(self.engine).read(model, environment, first, end - 1e-6, width)
        by_start = {round(w.start, 3): w for w in read}
        raised: list[Degradation] = []
        for start in _starts(first, end, width):
            window = by_start.get(round(start, 3), Window(start, start + width, []))
            found = self._keep(environment, model, serving, window, now)
            if found is None:
                continue
            rolled_back = False
            if env.on_degradation == "rollback" and not self._active(model, environment):
                try:
                    self._rollback(model, environment, found.reason)
                    rolled_back = True
                except Exception as exc:  # the alarm stands: say why traffic did not go back
                    log.warning(
                        "%s in %s: no rollback after the alarm: %s", model, environment, exc
                    )
            raised.append(
                Degradation(
                    environment,
                    model,
                    serving,
                    found.stream,
                    window.start,
                    window.end,
                    found.reason,
                    rolled_back,
                )
            )
            if rolled_back:
                break  # the next windows belong to the version rolled back to
        return raised

    def _keep(
        self, environment: str, model: str, serving: str, window: Window, now: float
    ) -> _Alarm | None:
        versions = {v.version: v for v in window.versions}
        versions.setdefault(serving, VersionWindow(version=serving))
        alarm: _Alarm | None = None
        with self.engine.begin() as conn:
            for version, counts in versions.items():
                detectors = None
                summary = _summary(counts)
                if version == serving:
                    summary["input_drift"] = self._input_drift(
                        conn, environment, model, version, window
                    )
                    detectors, alarm = self._judge(conn, environment, model, version, counts)
                    if alarm is not None:
                        alarm = _Alarm(
                            alarm.stream,
                            f"{model} v{version} in {environment} degraded: {alarm.reason}",
                        )
                        self._webhooks().enqueue(
                            conn,
                            "degraded",
                            {
                                "model": model,
                                "environment": environment,
                                "version": version,
                                "stream": alarm.stream,
                                "window_start": window.start,
                                "window_end": window.end,
                                "reason": alarm.reason,
                            },
                        )
                conn.execute(
                    monitor_windows.insert().values(
                        environment=environment,
                        model=model,
                        version=version,
                        start=window.start,
                        end=window.end,
                        requests=counts.requests,
                        errors=counts.errors,
                        labelled=counts.labelled,
                        wrong=counts.labelled - counts.correct,
                        summary=json.dumps(summary),
                        detectors=None if detectors is None else json.dumps(detectors),
                        alarm=None if alarm is None or version != serving else alarm.reason,
                        created_at=now,
                    )
                )
        return alarm

    def _input_drift(
        self, conn: Connection, environment: str, model: str, version: str, window: Window
    ) -> dict[str, Any]:
        """The window's inputs (its first ``INPUT_ROWS`` feature rows) against the version's
        training reference, else against its first window with ``MIN_INPUT_ROWS`` rows (this
        one, if it is the first): which features drifted (:func:`monitors.features.
        input_drift` at alpha ``INPUT_ALPHA``: the false discovery rate within the window)."""
        rows = self.predictions.served_features(
            environment, model, version, window.start, window.end, INPUT_ROWS
        )
        key = (environment, model, version)
        found = self._inputs.get(key)
        if found is None:
            found = self._input_reference(conn, key, rows, window)
            if found.reference is not None:  # kept; else looked for again at the next window
                self._inputs[key] = found
        if found.reference is None:
            return {"rows": len(rows), "why": found.why}
        if found.first == window.start:
            return {"rows": len(rows), "source": found.source, "is_reference": True}
        if len(rows) < MIN_INPUT_ROWS:
            return {"rows": len(rows), "source": found.source, "why": "too few rows to compare"}
        counts = FeatureCounts(found.reference, INPUT_ROWS)
        counts.add(rows)
        drift = input_drift(counts, alpha=INPUT_ALPHA, min_n=MIN_INPUT_ROWS)
        return {
            "rows": counts.n_rows,
            "source": found.source,
            "features": len(drift.features),
            "drifted": drift.drifted,
            "verdict": drift.verdict,
            "most": [
                [f.name, f.distance, f.low, f.high] for f in drift.most_drifted(3) if f.drifted
            ],
        }

    def _input_reference(
        self,
        conn: Connection,
        key: tuple[str, str, str],
        rows: list[dict[str, object]],
        window: Window,
    ) -> _InputReference:
        environment, model, version = key
        why = "no training reference looked for"
        if self._reference is not None:
            try:
                training = self._training.get((model, version))
                if training is None:
                    training = self._reference(model, version)
                if training.frame is None:  # none: not looked for again (an outage is)
                    self._training[model, version] = training
            except Exception as exc:  # a registry outage: compare with the first window instead
                training, why = None, f"no training reference: {exc}"
            if training is not None and training.frame is not None:
                served = {name for row in rows for name in row}
                columns = [c for c in training.frame.columns if not served or c in served]
                if columns:
                    frame = training.frame
                    return _InputReference(
                        FeatureReference({str(c): frame[c].tolist() for c in columns}),
                        f"the training reference ({training.source})",
                    )
            if training is not None:
                why = training.why or "the training reference shares no column with the requests"
        kept = conn.execute(
            select(input_references.c.window_start, input_references.c.body).where(
                input_references.c.environment == environment,
                input_references.c.model == model,
                input_references.c.version == version,
            )
        ).first()
        if kept is not None:  # read before, and kept: its rows may be pruned since
            try:
                stored = from_columns(unpack(kept.body))
            except (ValueError, TypeError, AttributeError):
                stored = []
            if len(stored) >= MIN_INPUT_ROWS:
                return _first_window(stored, float(kept.window_start), why)
        first = conn.execute(
            select(func.min(monitor_windows.c.start)).where(
                monitor_windows.c.environment == environment,
                monitor_windows.c.model == model,
                monitor_windows.c.version == version,
                monitor_windows.c.requests >= MIN_INPUT_ROWS,
            )
        ).scalar()
        start = window.start if first is None else float(first)
        if start != window.start:
            rows = self.predictions.served_features(
                environment, model, version, start, start + window.end - window.start, INPUT_ROWS
            )
        if len(rows) < MIN_INPUT_ROWS:
            return _InputReference(None, "", f"{why}; its first window has too few feature rows")
        keep = insert_new(conn, input_references)
        conn.execute(
            keep.values(
                environment=environment,
                model=model,
                version=version,
                window_start=start,
                body=pack(by_column(rows, MAX_FEATURES)),
                created_at=time.time(),
            )
        )
        return _first_window(rows, start, why)

    def _judge(
        self,
        conn: Connection,
        environment: str,
        model: str,
        version: str,
        counts: VersionWindow,
    ) -> tuple[dict[str, Any], _Alarm | None]:
        """The serving version's detectors after this window (warming up: its reference so
        far), and the alarm it raised."""
        rows = conn.execute(
            select(monitor_windows)
            .where(
                monitor_windows.c.environment == environment,
                monitor_windows.c.model == model,
                monitor_windows.c.version == version,
            )
            .order_by(monitor_windows.c.start.desc())
            .limit(1)
        ).first()
        state = json.loads(rows.detectors) if rows is not None and rows.detectors else None
        if state is None or "streams" not in state:
            return self._warm(conn, environment, model, version, counts), None
        alarm: _Alarm | None = None
        streams = state["streams"]
        for name, bad, n in _bad(counts, streams):
            detector = ChangeDetector.from_dict(streams[name]["detector"])
            found = detector.update(n, bad)
            streams[name]["detector"] = detector.to_dict()
            if found is not None and alarm is None:
                alarm = _Alarm(name, f"{_STREAM_TEXT[name]}: {found.reason}")
        return state, alarm

    def _warm(
        self, conn: Connection, environment: str, model: str, version: str, counts: VersionWindow
    ) -> dict[str, Any]:
        """The reference period so far, this window included; once it is complete, the
        detectors, each at its bound."""
        kept = conn.execute(
            select(
                monitor_windows.c.requests,
                monitor_windows.c.errors,
                monitor_windows.c.labelled,
                monitor_windows.c.wrong,
                monitor_windows.c.summary,
            )
            .where(
                monitor_windows.c.environment == environment,
                monitor_windows.c.model == model,
                monitor_windows.c.version == version,
                monitor_windows.c.requests > 0,
            )
            .order_by(monitor_windows.c.start)
        ).all()
        windows = len(kept) + (counts.requests > 0)
        requests = sum(r.requests for r in kept) + counts.requests
        reference = {
            "windows": windows,
            "requests": requests,
            "errors": sum(r.errors for r in kept) + counts.errors,
            "labelled": sum(r.labelled for r in kept) + counts.labelled,
            "wrong": sum(r.wrong for r in kept) + counts.labelled - counts.correct,
        }
        ready = (windows >= REFERENCE_WINDOWS and requests >= REFERENCE_REQUESTS) or (
            windows >= REFERENCE_MAX_WINDOWS and requests >= MIN_REFERENCE_REQUESTS
        )
        if not ready:
            return {"warming_up": reference}
        latency = np.zeros(LATENCY_EDGES.size - 1, dtype=np.int64)
        for row in kept:
            _add_bins(latency, json.loads(row.summary).get("latency_bins", {}))
        if counts.latency_counts:
            latency += np.asarray(counts.latency_counts, dtype=np.int64)
        analysis = self._analysis(model, environment, version)
        return {"reference": reference, "streams": reference_streams(reference, latency, analysis)}


def reference_streams(
    reference: Mapping[str, int],
    latency: np.ndarray[Any, np.dtype[np.int64]],
    analysis: AnalysisSpec,
) -> dict[str, Any]:
    """Each stream's bound and fresh detector from a reference period (its ``requests``,
    ``errors``, ``labelled``, ``wrong``; its ``latency`` counts on ``LATENCY_EDGES``) and the
    release's gates (see the module's docstring)."""
    defaults = AnalysisSpec.model_validate({})
    errors = analysis.error_rate or defaults.error_rate
    slow = analysis.latency or defaults.latency
    quality = analysis.quality or defaults.quality
    assert errors is not None and slow is not None and quality is not None
    streams: dict[str, Any] = {}
    p0 = bound_from_reference(
        reference["requests"],
        reference["errors"],
        alpha=REFERENCE_ALPHA,
        max_ratio=errors.max_ratio,
        max_increase=errors.max_increase,
    )
    streams["errors"] = {"p0": p0, "detector": ChangeDetector(p0).to_dict()}
    total = int(latency.sum())
    if total:
        index = int(np.searchsorted(np.cumsum(latency), slow.quantile * total))
        reference_ms = float(LATENCY_EDGES[min(index + 1, LATENCY_EDGES.size - 1)])
        p0 = 1.0 - slow.quantile
        streams["latency"] = {
            "p0": p0,
            "quantile": slow.quantile,
            "reference_ms": reference_ms,
            "bound_ms": reference_ms * slow.max_ratio,
            "detector": ChangeDetector(p0).to_dict(),
        }
    if reference["labelled"] >= MIN_REFERENCE_LABELS and quality.metric == "accuracy":
        try:
            p0 = bound_from_reference(
                reference["labelled"],
                reference["wrong"],
                alpha=REFERENCE_ALPHA,
                max_ratio=1.0,
                max_increase=quality.max_decrease,
            )
        except ValueError:  # the reference is wrong too often for a bound below 1
            return streams
        streams["quality"] = {"p0": p0, "detector": ChangeDetector(p0).to_dict()}
    return streams


@dataclass(frozen=True)
class _InputReference:
    reference: FeatureReference | None
    source: str
    why: str = ""
    first: float | None = None  # the window that is the reference, when it is one


def _first_window(rows: list[dict[str, object]], start: float, why: str) -> _InputReference:
    """The version's first window (from ``start``, its feature ``rows``) as its reference."""
    return _InputReference(
        FeatureReference.from_rows(rows),
        f"its first window ({why}): {len(rows):,} requests from {_when(start)}",
        first=start,
    )


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class _Alarm:
    stream: str
    reason: str


_STREAM_TEXT = {
    "errors": "failed requests",
    "latency": "requests slower than the latency bound",
    "quality": "wrong predictions among the labelled requests",
}


def _bad(counts: VersionWindow, streams: Mapping[str, Any]) -> Iterator[tuple[str, int, int]]:
    """(stream, bad, n) of one window for every stream that has a detector."""
    if "errors" in streams:
        yield "errors", counts.errors, counts.requests
    if "latency" in streams and counts.latency_counts:
        bound = float(streams["latency"]["bound_ms"])
        above = int(np.searchsorted(LATENCY_EDGES, bound, side="left"))  # bins wholly above
        yield "latency", int(sum(counts.latency_counts[above:])), counts.requests
    if "quality" in streams:
        yield "quality", counts.labelled - counts.correct, counts.labelled


def _summary(counts: VersionWindow) -> dict[str, Any]:
    bins = {str(i): c for i, c in enumerate(counts.latency_counts) if c}
    return {
        "latency_ms": counts.latency_ms,
        "outputs": counts.outputs,
        "output_mean": counts.output_mean,
        "failovers": counts.failovers,
        "latency_bins": bins,
    }


def _add_bins(total: np.ndarray[Any, np.dtype[np.int64]], bins: Mapping[str, int]) -> None:
    for index, count in bins.items():
        total[int(index)] += int(count)


def _each_versions(
    conn: Connection, *where: ColumnElement[bool], start: ColumnElement[float]
) -> list[Row[Any]]:
    """Per (model, version), the kept window (id, model, version, detectors) whose start is
    ``start`` (an aggregate: ``max`` for the newest) among those ``where`` selects."""
    table = monitor_windows.c
    chosen = (
        select(table.model, table.version, start.label("start"))
        .where(*where)
        .group_by(table.model, table.version)
        .subquery()
    )
    same = (
        (table.model == chosen.c.model)
        & (table.version == chosen.c.version)
        & (table.start == chosen.c.start)
    )
    query = select(table.id, table.model, table.version, table.detectors).join(chosen, same)
    return list(conn.execute(query.where(*where)))


def _starts(first: float, end: float, width: float) -> Iterator[float]:
    start = first
    while start + width <= end + 1e-6:
        yield start
        start += width


def _kept(row: RowMapping) -> KeptWindow:
    summary = json.loads(row["summary"])
    summary.pop("latency_bins", None)
    return KeptWindow(
        environment=row["environment"],
        model=row["model"],
        version=row["version"],
        start=row["start"],
        end=row["end"],
        requests=row["requests"],
        errors=row["errors"],
        labelled=row["labelled"],
        wrong=row["wrong"],
        summary=summary,
        detectors=json.loads(row["detectors"]) if row["detectors"] else None,
        alarm=row["alarm"],
    )
