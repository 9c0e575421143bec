"""Rolling windows of what a model serves in an environment, rollout or not: ``rollout monitor``.

:meth:`Monitoring.windows` reads the prediction log of one model in one environment over the
last ``hours`` and folds it, in chunks (bounded memory, however many rows), into windows of
``window_s`` seconds aligned on the clock (hourly by default). Each :class:`Window` gives, per
version served: requests, failed requests and their rate, the p50/p95/p99 latency (on the
log-spaced bins the gates use, so each quantile is a bin's upper edge, within 0.11% of the
value), the share of each of the most frequent output values (categories, or numbers when
there are at most ten distinct), the mean of numeric outputs, and the labelled requests with
the share whose output equals its label. A failover (the baseline answering a request the
candidate failed) is counted apart, as ``failovers`` of the version that answered: the request
is the failed version's, already counted there as an error.

This is a view for people; the judged windows (``rollout.evidence``) stay the gates' own.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, select

from contract.sql.schema import feedback, predictions
from monitors.streaming import FixedBins
from monitors.twosample import bin_counts
from rollout.summary import LATENCY_BINS, LATENCY_EDGES, category, same

MAX_WINDOWS = 2_000  # hours / window: a longer view is refused, not read
CHUNK = 5_000
TOP_OUTPUTS = 5
QUANTILES = (0.5, 0.95, 0.99)


@dataclass
class VersionWindow:
    version: str
    requests: int = 0
    errors: int = 0
    failovers: int = 0  # requests another version failed that this one answered (not in requests)
    latency_ms: dict[str, float | None] = field(default_factory=dict)  # p50/p95/p99
    outputs: dict[str, float] = field(default_factory=dict)  # top output values: their share
    output_mean: float | None = None
    labelled: int = 0
    correct_share: float | None = None
    correct: int = 0
    # requests per latency bin (rollout.summary.LATENCY_EDGES), for the change detectors
    latency_counts: list[int] = field(default_factory=list, repr=False)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "error_rate": self.error_rate}
        del out["latency_counts"], out["correct"]
        return out


@dataclass
class Window:
    start: float
    end: float
    versions: list[VersionWindow]

    @property
    def requests(self) -> int:
        return sum(v.requests for v in self.versions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "requests": self.requests,
            "versions": [v.to_dict() for v in self.versions],
        }


@dataclass
class _Fold:
    """One version's counts in one window while the rows are read."""

    requests: int = 0
    errors: int = 0
    failovers: int = 0
    latency: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(LATENCY_BINS, dtype=np.int64)
    )
    outputs: Counter[str] = field(default_factory=Counter)
    numbers: int = 0
    total: float = 0.0
    labelled: int = 0
    correct: int = 0


class Monitoring:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def windows(
        self,
        model: str,
        environment: str,
        now: float,
        hours: float = 24.0,
        window_s: float = 3600.0,
    ) -> list[Window]:
        """The windows of the last ``hours`` (oldest first; the newest one is still filling),
        each with the versions that served in it."""
        if not (window_s > 0 and hours > 0 and math.isfinite(hours) and math.isfinite(window_s)):
            raise ValueError(f"need hours > 0 and window > 0, got {hours}, {window_s}")
        if hours * 3600.0 / window_s > MAX_WINDOWS:
            raise ValueError(
                f"{hours:g} h in windows of {window_s:g} s is more than {MAX_WINDOWS} windows"
            )
        first = math.floor((now - hours * 3600.0) / window_s) * window_s
        return self.read(model, environment, first, now, window_s)

    def read(
        self, model: str, environment: str, first: float, last: float, window_s: float
    ) -> list[Window]:
        """The windows of ``window_s`` seconds from ``first`` with rows up to ``last``."""
        folds: dict[tuple[int, str], _Fold] = {}
        query = (
            select(
                predictions.c.ts,
                predictions.c.version,
                predictions.c.arm,
                predictions.c.latency_ms,
                predictions.c.error,
                predictions.c.output,
                feedback.c.label,
            )
            .select_from(
                predictions.outerjoin(feedback, feedback.c.request_id == predictions.c.request_id)
            )
            .where(
                predictions.c.environment == environment,
                predictions.c.model == model,
                predictions.c.ts >= first,
                predictions.c.ts <= last,
                predictions.c.arm != "shadow",  # mirrored copies answered nobody
            )
        )
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=CHUNK).execute(query)
            for chunk in result.partitions():
                _fold(folds, chunk, first, window_s)
        return _windows(folds, first, window_s)


def _fold(folds: dict[tuple[int, str], _Fold], rows: Any, first: float, window_s: float) -> None:
    latencies: dict[tuple[int, str], list[float]] = {}
    for ts, version, arm, latency_ms, error, output, label in rows:
        key = (int((ts - first) // window_s), str(version))
        fold = folds.get(key)
        if fold is None:
            fold = folds[key] = _Fold()
        if arm == "failover":  # the request is the failed version's (its error row)
            fold.failovers += 1
            continue
        fold.requests += 1
        latencies.setdefault(key, []).append(float(latency_ms))
        if error is not None:
            fold.errors += 1
            continue
        if output is None:
            continue
        values = json.loads(output)
        values = values if isinstance(values, list) else [values]
        for value in values:
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            fold.outputs[category(value)] += 1
            if isinstance(value, int | float) and not isinstance(value, bool):
                fold.numbers += 1
                fold.total += float(value)
        if label is not None:
            fold.labelled += 1
            truth = json.loads(label)
            fold.correct += bool(
                same(values[0], truth[0] if isinstance(truth, list) and truth else truth)
            )
    for key, values in latencies.items():
        folds[key].latency += bin_counts(np.asarray(values, dtype=np.float64), LATENCY_EDGES)


def _windows(folds: dict[tuple[int, str], _Fold], first: float, window_s: float) -> list[Window]:
    by_window: dict[int, list[VersionWindow]] = {}
    for (number, version), fold in sorted(folds.items()):
        shown = sum(fold.outputs.values())
        by_window.setdefault(number, []).append(
            VersionWindow(
                version=version,
                requests=fold.requests,
                errors=fold.errors,
                failovers=fold.failovers,
                latency_ms=_quantiles(fold.latency),
                outputs={
                    value: count / shown for value, count in fold.outputs.most_common(TOP_OUTPUTS)
                },
                output_mean=fold.total / fold.numbers if fold.numbers else None,
                labelled=fold.labelled,
                correct_share=fold.correct / fold.labelled if fold.labelled else None,
                correct=fold.correct,
                latency_counts=[int(v) for v in fold.latency],
            )
        )
    return [
        Window(first + number * window_s, first + (number + 1) * window_s, versions)
        for number, versions in sorted(by_window.items())
    ]


def _quantiles(counts: npt.NDArray[np.int64]) -> dict[str, float | None]:
    """p50/p95/p99: each the upper edge of the bin holding it (None without requests)."""
    bins = FixedBins(LATENCY_EDGES)
    bins.baseline_counts = counts
    out: dict[str, float | None] = {}
    for q in QUANTILES:
        value = bins.quantile("baseline", q)
        out[f"p{round(q * 100)}"] = None if math.isnan(value) else value
    return out
