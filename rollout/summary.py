"""A step's window of the prediction log, folded into summaries of bounded size.

The manager looks at a step after every batch, and a step may last a week. Rather than
re-reading every row of the window into lists at each look, it folds new rows into a
:class:`WindowSummary` (by prediction-log id, see `PredictionLog.fold`) whose size does not grow
with traffic:

- requests and errors per arm: counts;
- latencies: counts on 19,200 log-spaced bins from 1 us to 1,000 s (every request; 0.11%
  wide: the latency gate's quantile bounds are bin edges) plus a reservoir per arm;
- numeric outputs: moments, a reservoir per arm (the exact KS distance while it holds every
  value) and 256 bins at the first values' quantiles, frozen when a reservoir fills (the KS
  bounds from every value after that);
- categorical outputs: counts per category (at most 1,000 categories, the rest pooled), and
  for the first 20 categories the canary's share minus the baseline's as an AIPW stream (for
  numbers, the same of the share at or below the baseline's median in its first batch);
- labelled outputs (delayed labels): correct counts per arm (accuracy), moments of each loss
  (log-loss, MAE, RMSE), and a reservoir of scores per class and arm (AUC). Labels arrive late
  and may be replaced, so these are rebuilt, streaming, at each look (`LabelSummary`).

Every reservoir holds `RESERVOIR_CAP` values per arm; while no reservoir is full every test
runs on all values and gives exactly what it gives on raw rows. Past the cap, counts, moments
and bins still cover every value; tests that need raw values run on the uniform sample and say
so in their reason.
"""

from __future__ import annotations

import json
import math
import numbers
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import orjson

from monitors._validate import FloatArray
from monitors.anytime import ArmBatch, MeanDifference
from monitors.loss import LOG_LOSS_CLIP
from monitors.names import ARMS, LOSS_METRICS, Arm
from monitors.quality import per_request_loss
from monitors.streaming import CategoryCounts, FixedBins, Moments, TwoArmStream

if TYPE_CHECKING:
    from rollout.store.predictions import ArmSample

RESERVOIR_CAP = 20_000
DEFAULT_MIN_SHARE = 0.1  # the smallest canary share of a step, unless the spec says otherwise
LOG_LOSS_MAX = -math.log(LOG_LOSS_CLIP)  # a log-loss per row is at most this
LATENCY_LOW_MS, LATENCY_HIGH_MS, LATENCY_BINS = 1e-3, 1e6, 19200
MAX_CATEGORIES = 1000
MAX_MIX = 20  # categories whose share difference is streamed (the first to appear)
CUT_MIN = 100  # baseline values of the batch whose median becomes the numeric outputs' cut
KS_BINS = 256
_PLAIN_NUMBERS = {int, float, bool}  # types a value may have to skip the per-value checks
MAX_WHOLE_DISTINCT = 10  # floats with at most this many whole values count as categories


LATENCY_EDGES = FixedBins.log_spaced(LATENCY_LOW_MS, LATENCY_HIGH_MS, LATENCY_BINS).edges
LATENCY_EDGES.flags.writeable = False


def _latency_bins() -> FixedBins:
    return FixedBins(LATENCY_EDGES)  # the edges computed once


LATENCY_LOG_BIN_RATIO = float(np.log(LATENCY_EDGES[2] / LATENCY_EDGES[1]))  # each edge / the last


@dataclass
class ArmCounts:
    versions: set[str] = field(default_factory=set)
    n_requests: int = 0
    n_errors: int = 0


@dataclass
class GroupCounts:
    """Requests and errors of each arm served under one traffic plan (one plan generation):
    one traffic split, so the canary's share of its requests is one number."""

    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ARMS, 0))
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ARMS, 0))
    # each arm's labelled requests and those whose output equals its label (the quality
    # history of a step or a watch where the candidate serves alone)
    labelled: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ARMS, 0))
    correct: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ARMS, 0))
    # each arm's latencies on the window's latency bins (`WindowSummary.latency`), for the
    # latency gate's one-stream proof (monitors.exceedances), which takes one split at a time
    latency: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)
    occupied: tuple[int, int] | None = None  # the first and the last bin holding any of them
    # that proof's value once computed, by its arguments and the requests it saw (a
    # generation that has ended is computed once)
    proofs: dict[tuple[object, ...], float] = field(default_factory=dict, compare=False, repr=False)

    @property
    def canary_share(self) -> float | None:
        total = self.requests["baseline"] + self.requests["canary"]
        return self.requests["canary"] / total if total else None

    def add_latencies(
        self, arm: str, latencies_ms: Sequence[float]
    ) -> npt.NDArray[np.int64] | None:
        """Count latencies on ``LATENCY_EDGES``; return their counts (None when there are none)."""
        if not latencies_ms:
            return None
        index = np.searchsorted(
            LATENCY_EDGES[1:-1], np.asarray(latencies_ms, dtype=np.float64), side="left"
        )
        counts = np.bincount(index, minlength=LATENCY_BINS).astype(np.int64)
        held = self.latency.get(arm)
        self.latency[arm] = counts if held is None else held + counts
        low, high = int(index.min()), int(index.max())
        if self.occupied is not None:
            low, high = min(low, self.occupied[0]), max(high, self.occupied[1])
        self.occupied = (low, high)
        return counts


@dataclass
class OutputSummary:
    """The predicted values of both arms (one per predicted row).

    Numbers go to a `TwoArmStream`; category counts are kept while the outputs may be
    categorical (any non-number, ints, or at most 10 distinct whole-number floats) and stop
    once they are plainly continuous numbers, which is most of the cost of a fold.
    """

    # past RESERVOIR_CAP values the numbers are also counted on KS_BINS bins at the quantiles
    # of the first ones, so the KS bounds keep narrowing with every value
    numeric: TwoArmStream = field(
        default_factory=lambda: TwoArmStream(cap=RESERVOIR_CAP, psi_bins=KS_BINS)
    )
    categories: CategoryCounts = field(
        default_factory=lambda: CategoryCounts(max_categories=MAX_CATEGORIES)
    )
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ARMS, 0))
    all_numeric: bool = True  # every output so far is a real number
    all_int: bool = True  # ... and an int (counted as categories, like an int array)
    whole_values: set[float] = field(default_factory=set)  # up to MAX_WHOLE_DISTINCT + 1
    all_whole: bool = True
    categories_complete: bool = True  # every output so far is in `categories`
    # Per category, the canary's share of outputs minus the baseline's as the AIPW stream of
    # randomised assignment (monitors.anytime.MeanDifference), one batch per fold chunk and plan
    # generation (`add_streams`), in the order the categories first appeared (a stream starts when
    # its category does), at most MAX_MIX of them: the output-drift gate's proof that the mix
    # moved. Fed while the outputs are categories.
    mix: dict[str, MeanDifference] = field(default_factory=dict)
    # For numbers: the baseline's median in the first batch with at least CUT_MIN of its values
    # (fixed before the stream starts), and the canary's share of values at or below it minus
    # the baseline's as the AIPW stream of the batches after: the KS distance is at least its
    # absolute value.
    cut: float | None = None
    below_cut: MeanDifference | None = None

    def add_streams(
        self, share: float, canary: Sequence[object], baseline: Sequence[object], min_share: float
    ) -> None:
        """One batch of both arms' output rows served at canary ``share``, into the mix
        streams or the cut's stream (after :meth:`add` has counted them)."""
        if not (canary or baseline):
            return
        share = min(max(share, min_share), 1 - min_share)
        if self.categorical and self.categories_complete:
            self._add_mix(share, canary, baseline, min_share)
        elif self.all_numeric:
            self._add_cut(share, canary, baseline, min_share)

    def _add_cut(
        self, share: float, canary: Sequence[object], baseline: Sequence[object], min_share: float
    ) -> None:
        try:
            c = np.asarray(canary, dtype=np.float64)
            b = np.asarray(baseline, dtype=np.float64)
        except (TypeError, ValueError):
            return
        if self.below_cut is None:
            if b.size >= CUT_MIN:
                self.cut = float(np.median(b))
                self.below_cut = MeanDifference(0.0, 1.0, min_share)
            return  # the batch that chose the cut stays out of its stream
        assert self.cut is not None
        below_c = int(np.count_nonzero(c <= self.cut))
        below_b = int(np.count_nonzero(b <= self.cut))
        self.below_cut.add(
            share, ArmBatch(c.size, below_c, below_c), ArmBatch(b.size, below_b, below_b)
        )

    def _add_mix(
        self, share: float, canary: Sequence[object], baseline: Sequence[object], min_share: float
    ) -> None:
        counted = [_categories(rows) for rows in (canary, baseline)]
        for label in (*counted[0], *counted[1]):
            if label not in self.mix and len(self.mix) < MAX_MIX:
                self.mix[label] = MeanDifference(0.0, 1.0, min_share)
        for label, stream in self.mix.items():
            c, b = counted[0].get(label, 0), counted[1].get(label, 0)
            stream.add(share, ArmBatch(len(canary), c, c), ArmBatch(len(baseline), b, b))

    def add(self, arm: Arm, values: Sequence[object]) -> None:
        if not values:
            return
        self.counts[arm] += len(values)
        kinds = set(map(type, values))
        numbers = kinds <= _PLAIN_NUMBERS - {bool} or all(is_number(v) for v in values)
        if self.all_numeric and numbers:
            self._add_numbers(arm, values)
            if not self.categorical:
                self.categories_complete = False
                return
        else:
            self.all_numeric = False
        if len(kinds) == 1 and kinds <= {int, float, str}:  # equal values are equal categories
            counted = Counter(values)
            for value, count in counted.items():
                self.categories.add(arm, category(value), count)
            return
        for label, count in Counter(category(value) for value in values).items():
            self.categories.add(arm, label, count)

    def _add_numbers(self, arm: Arm, values: Sequence[object]) -> None:
        self.all_int = self.all_int and (
            set(map(type, values)) <= {int}
            or all(type(v) is int or isinstance(v, numbers.Integral) for v in values)
        )
        batch = np.asarray(values, dtype=np.float64)
        self.numeric.add(arm, batch)
        if self.all_whole:
            if not bool(np.all(batch == np.round(batch))):
                self.all_whole = False
            elif len(self.whole_values) <= MAX_WHOLE_DISTINCT:
                self.whole_values.update(np.unique(batch).tolist())

    def n(self, arm: Arm) -> int:
        return self.counts[arm]

    @property
    def categorical(self) -> bool:
        """Counted as categories: not all numbers, ints, or few whole-number floats."""
        return (
            not self.all_numeric
            or self.all_int
            or (self.all_whole and len(self.whole_values) <= MAX_WHOLE_DISTINCT)
        )


def _categories(values: Sequence[object]) -> Counter[str]:
    """Counts per category; values of one plain type are counted before they are named."""
    kinds = set(map(type, values))
    if kinds <= {int} or kinds <= {str}:
        return Counter({category(value): n for value, n in Counter(values).items()})
    return Counter(category(value) for value in values)


@dataclass
class LabelSummary:
    """Labelled predictions of both arms: what the quality gates need."""

    labelled: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ARMS, 0))
    correct: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ARMS, 0))
    losses: dict[str, dict[str, Moments]] = field(
        default_factory=lambda: {m: {a: Moments() for a in ARMS} for m in LOSS_METRICS}
    )
    loss_errors: dict[str, str] = field(default_factory=dict)  # metric -> why it cannot run
    scores: dict[bool, TwoArmStream] = field(
        default_factory=lambda: {
            label: TwoArmStream(cap=RESERVOIR_CAP, seed=7 + int(label)) for label in (False, True)
        }
    )
    auc_error: str | None = None
    # Canary minus baseline mean per request of each bounded quality measure (correctness,
    # log-loss), as the AIPW stream of randomised assignment (monitors.anytime.MeanDifference),
    # one batch per fold chunk and plan generation; `min_share` is the smallest canary share the
    # rollout's steps use (0 < share <= 0.5), known in advance.
    min_share: float = DEFAULT_MIN_SHARE
    differences: dict[str, MeanDifference] = field(default_factory=dict)
    # Where the incremental fold stands (`PredictionLog.fold`): labels that arrived before
    # `cursor_ts` are final; `recent` maps prediction ids folded at or after it to their
    # label's time; `folded` counts labelled requests folded.
    cursor_ts: float = -math.inf
    newest_ts: float = -math.inf
    recent: dict[int, float] = field(default_factory=dict)
    folded: int = 0

    def add(self, arm: Arm, outputs: Sequence[object], labels: Sequence[object]) -> None:
        """One request's outputs and labels (one label for all rows, or one per row)."""
        self.add_pairs(arm, label_pairs(outputs, labels))

    def add_differences(
        self,
        share: float,
        canary: Sequence[tuple[object, object]],
        baseline: Sequence[tuple[object, object]],
    ) -> None:
        """One batch of labelled (output, label) pairs of both arms served at canary ``share``,
        into the difference streams (correctness always; log-loss when outputs are scores)."""
        self._add_differences(share, canary, baseline, _numbers(canary), _numbers(baseline))

    def _add_differences(
        self,
        share: float,
        canary: Sequence[tuple[object, object]],
        baseline: Sequence[tuple[object, object]],
        *found: Numbers,
    ) -> None:
        share = min(max(share, self.min_share), 1 - self.min_share)
        arrays = [
            None if isinstance(arm, str) or not pairs else arm
            for arm, pairs in zip(found, (canary, baseline), strict=True)
        ]
        correct = [
            _array_batch((arm[0] == arm[1]).astype(np.float64))
            if arm is not None
            else _batch(float(same(o, y)) for o, y in pairs)
            for arm, pairs in zip(arrays, (canary, baseline), strict=True)
        ]
        self._difference("accuracy", 0.0, 1.0).add(share, correct[0], correct[1])
        if "log_loss" in self.loss_errors:
            return
        if any(
            arm is None and pairs for arm, pairs in zip(arrays, (canary, baseline), strict=True)
        ):
            return  # the loss gate reports why from the moments
        try:
            losses = [
                _array_batch(per_request_loss("log_loss", *arm)) if arm is not None else ArmBatch()
                for arm in arrays
            ]
        except ValueError:
            return
        self._difference("log_loss", 0.0, LOG_LOSS_MAX).add(share, losses[0], losses[1])

    def add_chunk(
        self,
        by_generation: Mapping[int, Mapping[Arm, Sequence[tuple[object, object]]]],
        groups: Mapping[int, GroupCounts],
    ) -> None:
        """One chunk of labelled pairs by plan generation (each arm's in the order their labels
        arrived): every arm's pairs, and the difference streams at that generation's canary
        share (a generation served at 0% or 100% has no difference). Each batch of pairs is
        read as numbers once for both."""
        for generation, arms in by_generation.items():
            found = {arm: _numbers(pairs) for arm, pairs in arms.items() if pairs}
            group = groups.get(generation)
            for arm, numbers_ in found.items():
                right = self._add_pairs(arm, arms[arm], numbers_)
                if group is not None:
                    group.labelled[arm] += len(arms[arm])
                    group.correct[arm] += right
            share = group.canary_share if group is not None else None
            if share is not None and 0 < share < 1:
                self._add_differences(
                    share,
                    arms.get("canary", []),
                    arms.get("baseline", []),
                    found.get("canary", "no rows"),
                    found.get("baseline", "no rows"),
                )

    def _difference(self, metric: str, low: float, high: float) -> MeanDifference:
        stream = self.differences.get(metric)
        if stream is None:
            stream = self.differences[metric] = MeanDifference(low, high, self.min_share)
        return stream

    def add_pairs(self, arm: Arm, pairs: Sequence[tuple[object, object]]) -> None:
        """(output, label) pairs of one arm, one per labelled row."""
        if pairs:
            self._add_pairs(arm, pairs, _numbers(pairs))

    def _add_pairs(self, arm: Arm, pairs: Sequence[tuple[object, object]], found: Numbers) -> int:
        """Fold the pairs; return how many outputs equal their label."""
        self.labelled[arm] += len(pairs)
        if isinstance(found, str):
            right = sum(same(output, label) for output, label in pairs)
            self.correct[arm] += right
            for metric in LOSS_METRICS:
                self.loss_errors.setdefault(metric, found)
            self.auc_error = self.auc_error or found
            return right
        predicted, truth = found
        right = int(np.count_nonzero(predicted == truth))
        self.correct[arm] += right
        for metric in LOSS_METRICS:
            if metric in self.loss_errors:
                continue
            try:
                self.losses[metric][arm].add(per_request_loss(metric, predicted, truth))
            except ValueError as exc:
                self.loss_errors[metric] = str(exc)
        if self.auc_error is None:
            if not np.isin(truth, (0.0, 1.0)).all():
                self.auc_error = f"{arm}_labels must hold only 0/1 or True/False values"
                return right
            for label in (False, True):
                self.scores[label].add(arm, predicted[truth == float(label)])
        return right


@dataclass
class WindowSummary:
    """Everything the gates read about one window, in bounded memory.

    `last_id` is the highest prediction-log id folded and `folded` how many rows were; the
    store uses them to read only new rows and to notice rows that committed late.
    """

    arms: dict[str, ArmCounts] = field(default_factory=dict)
    groups: dict[int, GroupCounts] = field(default_factory=dict)  # by plan generation
    latency: TwoArmStream = field(
        default_factory=lambda: TwoArmStream(cap=RESERVOIR_CAP, seed=3, bins=_latency_bins())
    )
    outputs: OutputSummary = field(default_factory=OutputSummary)
    labels: LabelSummary = field(default_factory=LabelSummary)
    last_id: int = 0
    folded: int = 0

    def counts(self, arm: str) -> ArmCounts:
        return self.arms.setdefault(arm, ArmCounts())

    def add_request(
        self,
        arm: Arm,
        version: str,
        latency_ms: float,
        outputs: Sequence[object] | None,
        error: bool,
    ) -> None:
        self.add_batch(arm, {version}, [latency_ms], outputs or [], int(error))

    def add_batch(
        self,
        arm: Arm,
        versions: set[str],
        latencies_ms: Sequence[float],
        outputs: Sequence[object],
        n_errors: int,
        latency_counts: npt.NDArray[np.int64] | None = None,
    ) -> None:
        """Several requests of one arm: their latencies, the successful ones' output rows
        (``latency_counts``: the latencies already counted on ``LATENCY_EDGES``)."""
        counts = self.counts(arm)
        counts.versions |= versions
        counts.n_requests += len(latencies_ms)
        counts.n_errors += n_errors
        bins = self.latency.bins
        same_edges = bins is not None and bins.edges is LATENCY_EDGES
        self.latency.add(arm, latencies_ms, latency_counts if same_edges else None)
        self.outputs.add(arm, outputs)

    @classmethod
    def from_samples(
        cls,
        samples: Mapping[str, ArmSample],
        *,
        canary_share: float | None = None,
        label_batch: int = 500,
    ) -> WindowSummary:
        """The summary of raw per-arm samples (tests, and callers that hold rows anyway). With
        ``canary_share`` the arms are a traffic split at that share (one plan generation), and
        the labels feed the difference streams in batches of ``label_batch`` pairs."""
        summary = cls()
        if canary_share is not None:
            summary.labels.min_share = min(canary_share, 1 - canary_share)
        group = summary.groups.setdefault(1, GroupCounts())
        for arm in ARMS:
            sample = samples.get(arm)
            if sample is None:
                continue
            counts = summary.counts(arm)
            counts.versions |= sample.versions
            counts.n_requests += sample.n_requests
            counts.n_errors += sample.n_errors
            group.requests[arm] += sample.n_requests
            group.errors[arm] += sample.n_errors
            group.add_latencies(arm, sample.latencies_ms)
            for first in range(0, max(len(sample.latencies_ms), len(sample.outputs)), 2000):
                summary.latency.add(arm, sample.latencies_ms[first : first + 2000])
                summary.outputs.add(arm, sample.outputs[first : first + 2000])  # as folded
            summary.labels.add_pairs(arm, sample.labelled)
        if canary_share is not None:
            canary = samples["canary"].labelled if "canary" in samples else []
            baseline = samples["baseline"].labelled if "baseline" in samples else []
            batches = max(1, math.ceil((len(canary) + len(baseline)) / label_batch))
            for i in range(batches):
                summary.labels.add_differences(
                    canary_share,
                    canary[i * len(canary) // batches : (i + 1) * len(canary) // batches],
                    baseline[i * len(baseline) // batches : (i + 1) * len(baseline) // batches],
                )
        return summary


Numbers = tuple[FloatArray, FloatArray] | str  # a batch's outputs and labels, or why not numbers


def _numbers(pairs: Sequence[tuple[object, object]]) -> Numbers:
    try:
        return numeric_pairs(pairs)
    except ValueError as exc:
        return str(exc)


def _array_batch(values: FloatArray) -> ArmBatch:
    return ArmBatch(int(values.size), float(values.sum()), float(np.dot(values, values)))


def _batch(values: Iterable[float]) -> ArmBatch:
    collected = list(values)
    return ArmBatch(len(collected), float(sum(collected)), float(sum(v * v for v in collected)))


def label_pairs(outputs: Sequence[object], labels: Sequence[object]) -> list[tuple[object, object]]:
    """A request's (output, label) pairs: one label for all its rows, or one per row."""
    if len(labels) == 1 and len(outputs) > 1:
        labels = list(labels) * len(outputs)
    return list(zip(outputs, labels, strict=False))


def rows(value: object) -> list[object]:
    """A logged JSON value as a list of rows (a scalar is one row)."""
    return list(value) if isinstance(value, list) else [value]


def parse_many(raws: Sequence[str]) -> list[object]:
    """The rows of many logged JSON values, in order, parsed in one call."""
    rows_: list[object] = []
    for value in orjson.loads("[" + ",".join(raws) + "]"):
        if isinstance(value, list):
            rows_.extend(value)
        else:
            rows_.append(value)
    return rows_


def parse_rows(raw: str | bytes | None) -> list[object]:
    return rows(orjson.loads(raw)) if raw is not None else []


def is_number(value: object) -> bool:
    kind = type(value)
    if kind is float or kind is int:  # the common case, without the ABC check
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def category(value: object) -> str:
    """A value as a category label: text as is, anything else as its JSON."""
    if isinstance(value, str):
        return value
    if type(value) is int or type(value) is float:  # the common case, without json.dumps
        return repr(value) if math.isfinite(value) else json.dumps(value)
    return json.dumps(value, sort_keys=True)


def same(output: object, label: object) -> bool:
    """A prediction equals its label: numerically for numbers, else as text."""
    if isinstance(output, list) and len(output) == 1:
        output = output[0]
    if isinstance(output, numbers.Real) and isinstance(label, numbers.Real):
        return float(output) == float(label)
    return category(output) == category(label)


def numeric_pairs(
    labelled: Iterable[tuple[object, object]],
) -> tuple[FloatArray, FloatArray]:
    """(output, label) pairs as two float arrays; a one-element list output is unwrapped."""
    pairs = labelled if isinstance(labelled, list) else list(labelled)
    outputs = [output for output, _ in pairs]
    labels = [label for _, label in pairs]
    if set(map(type, outputs)) | set(map(type, labels)) <= _PLAIN_NUMBERS:  # the common case
        predicted = np.asarray(outputs, dtype=np.float64)
        truth = np.asarray(labels, dtype=np.float64)
    else:
        predicted, truth = _checked_numbers(pairs)
    if not (np.isfinite(predicted).all() and np.isfinite(truth).all()):
        raise ValueError("quality metrics need finite outputs and labels")
    return predicted, truth


def _checked_numbers(pairs: Sequence[tuple[object, object]]) -> tuple[FloatArray, FloatArray]:
    outputs, labels = [], []
    for output, label in pairs:
        if isinstance(output, list) and len(output) == 1:
            output = output[0]
        if not (is_number(output) or isinstance(output, bool)) or not (
            is_number(label) or isinstance(label, bool)
        ):
            raise ValueError(
                f"this quality metric needs numeric outputs and labels, got {output!r}, {label!r}"
            )
        outputs.append(float(output))  # type: ignore[arg-type]
        labels.append(float(label))  # type: ignore[arg-type]
    return np.asarray(outputs, dtype=np.float64), np.asarray(labels, dtype=np.float64)
