"""Degradation benchmark: the serving release's change detectors with the bounds the product
derives, against per-window alert rules; and the product's own monitoring path, in one run.

``python bench/degradation.py [--quick] [--months 20000] [--runs 2000] [--days 14]
[--per-hour 500] [--workers 2] [--seed 2026] [--reference-requests N] [--reference-alpha A]
[--quality-alpha A] [--ratios 1.1,1.25,...] [--no-product-path]``

After a promotion the manager (:mod:`rollout.degradation`) keeps each closed hourly window of the
serving release and judges it with three e-detectors (errors, latency, quality) held to bounds
``p0`` from the release's own first windows, its reference period. Both parts use the product's
constants and the default analysis (``AnalysisSpec.model_validate({})``).

**Simulated releases.** Traffic follows a day/night cycle (Poisson around 300 requests an hour at
night to 3,000 by day, a 24-hour sine from a random hour); 1% of requests fail; latencies are
lognormal per request, median 20 ms and log-sd ``LATENCY_SIGMA`` = 0.5 (``bench/decisions.py``'s);
10% of the answered requests get a label, 90% of them right. Each release has:

1. its reference period as the product defines it: windows until ``REFERENCE_REQUESTS`` requests
   over at least ``REFERENCE_WINDOWS`` windows (or ``MIN_REFERENCE_REQUESTS`` after
   ``REFERENCE_MAX_WINDOWS``), every request's latency drawn and binned on ``LATENCY_EDGES``;
2. ``reference_streams`` on it: each stream's ``p0`` and detector (errors: the Clopper-Pearson
   upper bound times 1.5 or plus 0.0005, the error_rate gate's allowances; latency: 5% of requests
   above 1.2 x the reference p95; quality: the wrong rate's upper bound plus 0.01);
3. the windows after it, bad events counted as ``rollout.degradation._bad`` counts them: failed
   requests; requests in latency bins wholly above ``bound_ms`` (Binomial(n, P(latency > the
   first edge at or above bound_ms)): the law of drawing and binning each request); wrong ones
   among the labelled.

The detectors are those ``reference_streams`` built (alternatives, threshold), all releases
stepped at once by ``monitors.changes.advance``'s recursion at each release's own ``p0``
(``advance`` takes one ``p0``). The first release of every job is also drawn request by request,
counted by ``_bad`` and stepped by the product's ``ChangeDetector.update``, which must agree
window for window (the run stops otherwise). Peers on the same windows and ``p0``:
``rate_over_2x``, a Prometheus-style alert on a window's bad rate above twice ``p0``;
``binomial_0.05``, a one-sided binomial test of each window against ``p0`` at 0.05.

- A/A, ``--months`` releases of 720 windows (and, on the same traffic, the errors of a twin
  release at 0.1%): false alarms per 30 days, 95% Wilson interval; the headline adds the three
  streams of one release (the product's promise: at most one).
- Changes, ``--runs`` releases each, a week after the reference: error 1% -> 2%, error 0.1% ->
  0.3%, every latency x 1.3 (p95 +30%), accuracy 90% -> 87%: windows from the change to its
  stream's first alarm (1: the first changed window), median and p90, and the share caught
  within 720 windows (never: ``null`` in the JSON, ``>720`` in the table).

**The product's path.** A ``rollout.manager.Manager`` on a temporary SQLite store and a temporary
SQLite MLflow registry (a trivial pyfunc model under two names) serves two releases,
``--per-hour`` requests an hour each for ``--days`` days, written into the prediction log by
``contract.sql.predictions`` as the routers write it (two features a request; labels too):
errors at 1% for one and 5% for the other, doubled from the middle. ``watch_releases(now)``
runs after the first day (the first pass looks 24 windows back), then once an hour. Reported
per release: windows kept, alarms before the change, windows from the change to the alarm;
and the time a pass takes per window kept.

Progress on stderr, a table, and last one JSON line. ``--quick``: 1,000 months, 200 runs per
change, 3 days of the product's path (about 25 s on 2 cores).

**Trying other defaults.** ``--reference-requests`` (``REFERENCE_REQUESTS``), ``--reference-alpha``
(``REFERENCE_ALPHA``, both streams), ``--quality-alpha`` (the quality stream's alone) and
``--ratios`` (``monitors.changes.RATIOS``) replace the product's constants in the simulated
releases only: ``reference_streams`` runs with the alpha patched in for the call, and the
detectors are rebuilt at its ``p0`` with the ratios. The product's path keeps the product's
constants; ``--no-product-path`` skips it. The JSON line says what was replaced (``overrides``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special
from scipy.stats import binomtest
from sqlalchemy import Engine, func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rollout.degradation as product
from contract.records import Feedback, PredictionRecord
from contract.sql.predictions import SqlFeedbackSink, SqlPredictionSink
from contract.sql.schema import monitor_windows
from monitors.changes import ChangeDetector
from monitors.twosample import bin_counts
from rollout.degradation import (
    MIN_REFERENCE_REQUESTS,
    REFERENCE_MAX_WINDOWS,
    REFERENCE_REQUESTS,
    REFERENCE_WINDOWS,
    SETTLE_S,
    _bad,
    reference_streams,
)
from rollout.spec import AnalysisSpec
from rollout.store.monitoring import VersionWindow
from rollout.summary import LATENCY_EDGES

MONTH = 720  # hourly windows in 30 days
WEEK = 168  # windows after the reference before a change
HORIZON = 720  # windows watched after a change
CHUNK = 500  # releases simulated together in one job
LABEL_SHARE = 0.1
LATENCY_MEDIAN_MS = 20.0
LATENCY_SIGMA = 0.5  # log-sd of the latencies
HOUR = 3600.0
METHODS = ("e_detector", "rate_over_2x", "binomial_0.05")
MANAGER_STREAMS = ("errors", "latency", "quality")  # one release's detectors
ANALYSIS = AnalysisSpec.model_validate({})  # the default gates' allowances
PATH_ERRORS = ((0.01, 0.02), (0.05, 0.10))  # the product path's releases: errors before, after

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class World:
    error: float = 0.01
    slowdown: float = 1.0  # every latency times this
    wrong: float = 0.10  # among the labelled


@dataclass(frozen=True)
class Watched:
    key: str  # its name in the report
    stream: str  # the product's stream: errors, latency or quality
    world: int = 0  # which of the job's worlds


@dataclass(frozen=True)
class Scenario:
    name: str
    stream: str
    before: World
    after: World


SCENARIOS = (
    Scenario("error_1_to_2pct", "errors", World(error=0.01), World(error=0.02)),
    Scenario("error_0.1_to_0.3pct", "errors", World(error=0.001), World(error=0.003)),
    Scenario("latency_p95_plus_30pct", "latency", World(), World(slowdown=1.3)),
    Scenario("accuracy_90_to_87pct", "quality", World(), World(wrong=0.13)),
)
NULL_WORLDS = (World(), World(error=0.001))  # a release, and a twin erring at 0.1%
NULL_WATCHED = (
    Watched("errors", "errors"),
    Watched("latency", "latency"),
    Watched("quality", "quality"),
    Watched("errors_0.1pct", "errors", 1),
)


@dataclass(frozen=True)
class Overrides:
    """The product's constants the simulated releases use instead (None: the product's)."""

    reference_requests: int | None = None
    reference_alpha: float | None = None
    quality_alpha: float | None = None
    ratios: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Job:
    name: str  # "aa" or a scenario's name
    runs: int
    change: int | None  # the first changed window after the reference; None: A/A
    before: tuple[World, ...]
    after: tuple[World, ...]
    watched: tuple[Watched, ...]
    seed: tuple[int, ...]
    overrides: Overrides = Overrides()


@dataclass(frozen=True)
class PathJob:
    days: int
    per_hour: int
    seed: int


@dataclass(frozen=True)
class Done:
    job: Job
    alarms: dict[str, dict[str, int]]  # A/A: windows that alarmed, per key and method
    windows: dict[str, int]  # A/A: windows watched, per key
    delays: dict[str, dict[str, list[float]]]  # changes: per key and method, per run (inf: none)
    p0: dict[str, list[float]]  # per key, per run
    bad_rate: dict[str, tuple[float, float]]  # per key: the true bad rate before, after (median)
    verified: int  # windows checked against ChangeDetector.update
    reference_windows: list[int]  # per run: windows its reference period took


def requests_per_hour(hour: npt.ArrayLike) -> FloatArray:
    """The day/night mean: 300 at night to 3,000 by day."""
    return np.asarray(1650 + 1350 * np.sin(2 * np.pi * np.asarray(hour) / 24), dtype=np.float64)


def latencies(rng: np.random.Generator, n: int, slowdown: float) -> FloatArray:
    return rng.lognormal(math.log(LATENCY_MEDIAN_MS), LATENCY_SIGMA, n) * slowdown


def slow_share(bound_ms: float, slowdown: float) -> float:
    """P(a request is in a latency bin wholly above ``bound_ms``): bin i holds ``edges[i] < x
    <= edges[i + 1]``, so it is above the first edge at or above the bound (``_bad``'s count)."""
    edge = float(LATENCY_EDGES[int(np.searchsorted(LATENCY_EDGES[:-1], bound_ms, side="left"))])
    if not math.isfinite(edge):
        return 0.0
    z = (math.log(edge / slowdown) - math.log(LATENCY_MEDIAN_MS)) / LATENCY_SIGMA
    return float(special.ndtr(-z))


@contextlib.contextmanager
def _reference_alpha(alpha: float | None) -> Any:
    """``rollout.degradation.REFERENCE_ALPHA`` at ``alpha`` for the block (None: as it is)."""
    kept = product.REFERENCE_ALPHA
    product.REFERENCE_ALPHA = kept if alpha is None else alpha
    try:
        yield
    finally:
        product.REFERENCE_ALPHA = kept


def streams_from(counts: dict[str, int], latency: IntArray, overrides: Overrides) -> dict[str, Any]:
    """``reference_streams`` with the overridden alphas (the quality stream's own, if given)."""
    with _reference_alpha(overrides.reference_alpha):
        streams = reference_streams(counts, latency, ANALYSIS)
    if overrides.quality_alpha is not None:
        streams.pop("quality", None)
        with _reference_alpha(overrides.quality_alpha):
            quality = reference_streams(counts, latency, ANALYSIS).get("quality")
        if quality is not None:
            streams["quality"] = quality
    return streams


def reference(
    rng: np.random.Generator, hour: int, worlds: Sequence[World], overrides: Overrides
) -> tuple[int, list[dict[str, Any]]]:
    """One release's reference period from ``hour``: its length in windows, and for each world
    (sharing traffic and latencies) the streams ``reference_streams`` derives from it."""
    wanted = overrides.reference_requests or REFERENCE_REQUESTS
    served: list[int] = []
    windows = total = 0
    while not (
        (windows >= REFERENCE_WINDOWS and total >= wanted)
        or (windows >= REFERENCE_MAX_WINDOWS and total >= MIN_REFERENCE_REQUESTS)
    ):  # rollout.degradation's rule
        served.append(int(rng.poisson(requests_per_hour(hour + len(served)))))
        windows += served[-1] > 0
        total += served[-1]
    n = np.asarray(served, dtype=np.int64)
    latency = bin_counts(latencies(rng, total, worlds[0].slowdown), LATENCY_EDGES)
    out = []
    for world in worlds:
        errors = rng.binomial(n, world.error)
        labelled = rng.binomial(n - errors, LABEL_SHARE)
        wrong = rng.binomial(labelled, world.wrong)
        counts = {"windows": windows, "requests": total, "errors": int(errors.sum())}
        counts |= {"labelled": int(labelled.sum()), "wrong": int(wrong.sum())}
        out.append(streams_from(counts, latency, overrides))
    return len(served), out


class Detectors:
    """One watched stream of every release in a job: the detectors ``reference_streams`` built,
    stepped together, the peers at the same ``p0``, and the first release's detector stepped by
    the product's ``ChangeDetector.update`` beside them."""

    def __init__(
        self,
        watched: Watched,
        streams: Sequence[dict[str, Any]],
        ratios: tuple[float, ...] | None = None,
    ) -> None:
        found = [s.get(watched.stream) for s in streams]
        detectors = [ChangeDetector.from_dict(f["detector"]) for f in found if f is not None]
        if ratios is not None:  # the same bound, other alternatives
            detectors = [ChangeDetector(d.p0, ratios=ratios) for d in detectors]
        shapes = {(d.rates.size, d.log_threshold) for d in detectors}
        if len(shapes) != 1:
            raise ValueError(f"{watched.key}: want one (alternatives, threshold), got {shapes}")
        (m, self.log_threshold), runs = shapes.pop(), len(streams)
        self.watched = watched
        self.on = np.array([f is not None for f in found])
        self.p0, rates = np.full(runs, 0.5), np.full((runs, m), 0.5)  # 0.5: no detector
        self.p0[self.on] = [d.p0 for d in detectors]
        rates[self.on] = [d.rates for d in detectors]
        self.bound_ms = np.array([math.inf if f is None else f.get("bound_ms", 0) for f in found])
        # log L = bad * per_bad + (n - bad) * per_good (monitors.changes.log_likelihood_ratios)
        self.per_bad = np.log(rates) - np.log(self.p0)[:, None]
        self.per_good = np.log1p(-rates) - np.log1p(-self.p0)[:, None]
        self.log_sr = np.full((runs, m), -np.inf)
        self.first = detectors[0] if found[0] is not None else None
        self.first_streams = {watched.stream: found[0]}

    def step(self, n: IntArray, bad: IntArray) -> tuple[BoolArray, FloatArray]:
        """One window of every release: ``advance``'s recursion; a release without a detector
        or without requests is left as it was. The alarms, and each log M_t."""
        live = self.on & (n > 0)
        log_lr = bad[:, None] * self.per_bad + (n - bad)[:, None] * self.per_good
        new_sr = np.where(live[:, None], np.logaddexp(self.log_sr, 0.0) + log_lr, self.log_sr)
        top = np.max(new_sr, axis=1)
        safe = np.where(np.isfinite(top), top, 0.0)
        with np.errstate(divide="ignore"):
            total = np.log(np.sum(np.exp(new_sr - safe[:, None]), axis=1))
        statistic = safe + total - math.log(new_sr.shape[1])
        alarmed = live & (statistic >= self.log_threshold)
        self.log_sr = np.where(alarmed[:, None], -np.inf, new_sr)
        return alarmed, statistic

    def peers(self, n: IntArray, bad: IntArray) -> dict[str, BoolArray]:
        above = self.on & (bad > self.p0 * n)  # only these can be significant
        significant = np.zeros_like(above)
        # P(Bin(n, p0) >= bad) <= 0.05 (bdtrc(k, n, p) is P(X > k))
        significant[above] = special.bdtrc(bad[above] - 1, n[above], self.p0[above]) <= 0.05
        return {"rate_over_2x": self.on & (bad > 2 * self.p0 * n), "binomial_0.05": significant}

    def check_first(self, n: int, bad: int, alarmed: bool, statistic: float, t: int) -> None:
        """The product's detector agrees with the stepped one on the first release's window."""
        assert self.first is not None
        found = self.first.update(n, bad) is not None
        expected = self.first.log_statistic
        if found != alarmed or not (found or math.isclose(expected, statistic, abs_tol=1e-9)):
            raise AssertionError(
                f"{self.watched.key}, window {t}: ChangeDetector.update alarm={found}, log M="
                f"{expected!r}; the stepped recursion alarm={alarmed}, log M={statistic!r}"
            )


def simulate_job(job: Job) -> Done:
    """``job.runs`` releases: a reference period each, then every window through the detectors."""
    rng = np.random.default_rng(list(job.seed))
    hour0 = rng.integers(0, 24, job.runs)
    lengths, streams = zip(
        *(reference(rng, h, job.before, job.overrides) for h in hour0.tolist()), strict=True
    )
    start = hour0 + np.asarray(lengths, dtype=np.int64)  # the first judged window's hour
    ratios = job.overrides.ratios
    watched = [Detectors(w, [s[w.world] for s in streams], ratios) for w in job.watched]
    slow = {  # each release's share of slow requests, before and after the change
        d.watched.key: [
            np.array([slow_share(b, worlds[d.watched.world].slowdown) for b in d.bound_ms])
            for worlds in (job.before, job.after)
        ]
        for d in watched
        if d.watched.stream == "latency"
    }
    keys = [w.key for w in job.watched]
    alarms = {k: dict.fromkeys(METHODS, 0) for k in keys}
    first = {k: {m: np.full(job.runs, np.inf) for m in METHODS} for k in keys}
    verified = 0
    for t in range(MONTH if job.change is None else job.change + HORIZON):
        changed = job.change is not None and t >= job.change
        worlds = job.after if changed else job.before
        n = rng.poisson(requests_per_hour(start + t)).astype(np.int64)
        counts = []
        for world in worlds:
            errors = rng.binomial(n, world.error)
            labelled = rng.binomial(n - errors, LABEL_SHARE)
            counts.append((errors, labelled, rng.binomial(labelled, world.wrong)))
        for d in watched:
            w = d.watched
            errors, labelled, wrong = counts[w.world]
            if w.stream == "errors":
                size, bad = n, errors.copy()
            elif w.stream == "quality":
                size, bad = labelled, wrong.copy()
            else:
                size, bad = n, rng.binomial(n, slow[w.key][int(changed)])
            first_n = int(size[0])
            if d.first is not None:  # the first release, counted by the product request by request
                window = VersionWindow(
                    "bench", int(n[0]), int(errors[0]), labelled=int(labelled[0]),
                    correct=int(labelled[0] - wrong[0]),
                    latency_counts=bin_counts(
                        latencies(rng, int(n[0]), worlds[w.world].slowdown), LATENCY_EDGES
                    ).tolist() if w.stream == "latency" else [],
                )  # fmt: skip
                for _, counted, counted_n in _bad(window, d.first_streams):  # one, or none
                    bad[0], first_n = counted, counted_n
            alarmed, statistic = d.step(size, bad)
            if d.first is not None:
                d.check_first(first_n, int(bad[0]), bool(alarmed[0]), float(statistic[0]), t)
                verified += 1
            for method, mask in {"e_detector": alarmed, **d.peers(size, bad)}.items():
                if job.change is None:
                    alarms[w.key][method] += int(np.count_nonzero(mask))
                elif changed:
                    fresh = mask & np.isinf(first[w.key][method])
                    first[w.key][method][fresh] = t - job.change + 1

    def bad_rate(d: Detectors) -> tuple[float, float]:
        w = d.watched
        if w.key in slow:
            return float(np.median(slow[w.key][0])), float(np.median(slow[w.key][1]))
        before, after = job.before[w.world], job.after[w.world]
        if w.stream == "errors":
            return before.error, after.error
        return before.wrong, after.wrong

    aa = job.change is None
    return Done(
        job,
        alarms if aa else {},
        {d.watched.key: int(np.count_nonzero(d.on)) * MONTH for d in watched} if aa else {},
        {} if aa else {k: {m: v.tolist() for m, v in first[k].items()} for k in keys},
        {d.watched.key: d.p0[d.on].tolist() for d in watched},
        {d.watched.key: bad_rate(d) for d in watched},
        verified,
        [int(x) for x in lengths],
    )


# -- the product's path --


def product_path(job: PathJob) -> dict[str, Any]:
    """Two releases served by a real Manager for ``job.days`` days (the module docstring)."""
    import logging

    from rollout.environments import Environment
    from rollout.manager import Manager
    from rollout.registry import MlflowRegistry
    from rollout.settings import Settings

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its database's creation
    began = time.monotonic()
    rng = np.random.default_rng(job.seed)
    hours, change = job.days * 24, job.days * 12
    t0 = math.floor(time.time() / HOUR) * HOUR - job.days * 86_400.0
    models = {f"errors-{round(100 * rates[0])}pct": rates for rates in PATH_ERRORS}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        settings = Settings(
            home=home,
            registry_uri=f"sqlite:///{home / 'mlflow.db'}",
            store_url=f"sqlite:///{home / 'rollout.db'}",
            artifact_root=str(home / "artifacts"),
        )
        registry = MlflowRegistry(settings.registry_uri, settings.artifact_root)
        versions = _register(registry, list(models))
        manager = Manager(settings, registry=registry, environments=[Environment("prod")])
        for model, version in versions.items():
            manager.start(model, version, "prod", actor="bench")
        setup_s = time.monotonic() - began
        sink, labels = SqlPredictionSink(manager.engine), SqlFeedbackSink(manager.engine)
        passes: list[tuple[float, int]] = []  # seconds, windows kept
        raised = []
        for hour in range(hours):
            for model, (before, after) in models.items():
                error = after if hour >= change else before
                start = t0 + hour * HOUR
                records, feedback = _traffic(
                    rng, model, versions[model], start, job.per_hour, error
                )
                sink.write(records)
                labels.add_feedback(feedback)
            if hour + 1 < REFERENCE_MAX_WINDOWS:
                continue
            so_far, watched = _kept(manager.engine), time.monotonic()
            raised += manager.watch_releases(t0 + (hour + 1) * HOUR + SETTLE_S + 1.0)
            passes.append((time.monotonic() - watched, _kept(manager.engine) - so_far))
            if (hour + 1) % 24 == 0:
                print(f"  product path: day {(hour + 1) // 24}/{job.days}", file=sys.stderr)
        releases = []
        for model, (before, after) in models.items():
            kept = manager.kept_windows(model, "prod", limit=10_000)
            state = kept[-1].detectors or {}
            found = sorted(round((a.start - t0) / HOUR) for a in raised if a.model == model)
            later = [h for h in found if h >= change]
            releases.append(
                {
                    "model": model,
                    "error_before": before,
                    "error_after": after,
                    "change_window": change,
                    "windows_kept": sum(w.version == versions[model] for w in kept),
                    "reference_windows": state.get("reference", {}).get("windows"),
                    "p0": {k: _sig(v["p0"]) for k, v in state.get("streams", {}).items()},
                    "aa_alarms": sum(h < change for h in found),
                    "alarms_after_change": len(later),
                    "windows_to_alarm": later[0] - change + 1 if later else None,
                    "alarm_streams": sorted({a.stream for a in raised if a.model == model}),
                }
            )
        manager.close()
    (first_s, first_windows), hourly = passes[0], passes[1:]
    return {
        "days": job.days,
        "requests_per_hour": job.per_hour,
        "releases": releases,
        "ms_per_window": _sig(1000 * sum(s for s, _ in hourly) / sum(k for _, k in hourly)),
        "first_pass_s": round(first_s, 2),
        "first_pass_windows": first_windows,
        "setup_s": round(setup_s, 1),
        "seconds": round(time.monotonic() - began, 1),
    }


def _register(registry: Any, models: Sequence[str]) -> dict[str, str]:
    """A trivial pyfunc model logged once, registered under each name: name -> version."""
    import contextlib
    import io
    import warnings

    import mlflow
    from mlflow.pyfunc.model import PythonModel

    quiet = io.StringIO()
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(quiet),
        contextlib.redirect_stderr(quiet),
    ):
        warnings.simplefilter("ignore")

        class Constant(PythonModel):
            def predict(self, context: Any, model_input: Any, params: Any = None) -> list[int]:
                return [1] * len(model_input)

        with mlflow.start_run(experiment_id=registry.ensure_experiment("bench-degradation")):
            logged = mlflow.pyfunc.log_model(
                name="model", python_model=Constant(), pip_requirements=[]
            )
        return {m: str(mlflow.register_model(logged.model_uri, m).version) for m in models}


def _kept(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(monitor_windows)).scalar_one())


def _traffic(
    rng: np.random.Generator, model: str, version: str, start: float, per_hour: int, error: float
) -> tuple[list[PredictionRecord], list[Feedback]]:
    """An hour of requests as a router logs them (evenly spaced, lognormal latencies, two
    features, failures at ``error``) and labels for 10% of the answered ones (90% right)."""
    failed, latency = rng.random(per_hour) < error, latencies(rng, per_hour, 1.0)
    features = rng.normal(size=(per_hour, 2)).round(4).tolist()
    labelled, right = rng.random(per_hour) < LABEL_SHARE, rng.random(per_hour) < 0.9
    records, feedback = [], []
    for i in range(per_hour):
        request_id, ts, bad = uuid.uuid4().hex, start + (i + 0.5) * HOUR / per_hour, failed[i]
        records.append(
            PredictionRecord(
                request_id, ts, "prod", model, version, "baseline", None, 1,
                json.dumps([dict(zip(("x0", "x1"), features[i], strict=True))]),
                None if bad else "[1]", float(latency[i]), "boom" if bad else None,
                500 if bad else 200,
            )
        )  # fmt: skip
        if not bad and labelled[i]:
            feedback.append(Feedback(request_id, int(right[i]), ts + 60.0))
    return records, feedback


# -- the run and the report --


def run(job: Job | PathJob) -> Done | dict[str, Any]:
    return product_path(job) if isinstance(job, PathJob) else simulate_job(job)


def plan(months: int, runs: int, seed: int, overrides: Overrides = Overrides()) -> list[Job]:
    def chunks(total: int) -> list[tuple[int, int]]:
        return [(i, min(CHUNK, total - first)) for i, first in enumerate(range(0, total, CHUNK))]

    jobs = [
        Job("aa", size, None, NULL_WORLDS, NULL_WORLDS, NULL_WATCHED, (seed, 0, i), overrides)
        for i, size in chunks(months)
    ]
    for s, sc in enumerate(SCENARIOS, start=1):
        watched = (Watched(sc.name, sc.stream),)
        jobs += [
            Job(sc.name, size, WEEK, (sc.before,), (sc.after,), watched, (seed, s, i), overrides)
            for i, size in chunks(runs)
        ]
    return jobs


def simulate(jobs: Sequence[Job | PathJob], workers: int) -> list[Done | dict[str, Any]]:
    done: list[Done | dict[str, Any]] = []
    started, every = time.monotonic(), max(1, len(jobs) // 10)

    def progress(result: Done | dict[str, Any]) -> None:
        done.append(result)
        what = result.job.name if isinstance(result, Done) else "product path"
        if len(done) % every == 0 or len(done) == len(jobs) or what == "product path":
            elapsed = time.monotonic() - started
            print(f"  {len(done)}/{len(jobs)} jobs ({what}), {elapsed:.0f} s", file=sys.stderr)

    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for result in pool.imap_unordered(run, jobs):
                progress(result)
    else:
        for job in jobs:
            progress(run(job))
    return done


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson interval of ``k`` successes in ``n`` (scipy's; (0, 1) for no runs)."""
    if n == 0:
        return (0.0, 1.0)
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return (float(ci.low), float(ci.high))


def _sig(value: float) -> float:
    """``value`` to 4 significant digits (the JSON line stays readable)."""
    return float(f"{value:.4g}")


def _quantile(values: Sequence[float], q: float) -> float:
    return float(np.quantile(np.asarray(values), q, method="inverted_cdf"))


def _row(cells: Sequence[object], widths: Sequence[int]) -> None:
    print("".join(f"{c!s:<{w}}" for c, w in zip(cells, widths, strict=True)))


def _p0_cell(p0: Sequence[float]) -> str:
    median, low, high = (100 * _quantile(p0, q) for q in (0.5, 0.1, 0.9))
    return f"{median:.3g}% [{low:.3g}, {high:.3g}]"


def report(
    done: Sequence[Done | dict[str, Any]], seconds: float, overrides: Overrides = Overrides()
) -> dict[str, Any]:
    sims = [d for d in done if isinstance(d, Done)]
    aa = [d for d in sims if d.job.change is None]
    paths = [d for d in done if isinstance(d, dict)]
    path = paths[0] if paths else None

    replaced = overrides.to_dict()
    lengths = [x for d in sims for x in d.reference_windows]
    print(
        "Simulated releases: "
        + (f"the product's constants replaced by {replaced}" if replaced else "product constants")
        + f"; reference period median {_quantile(lengths, 0.5):g} windows "
        f"[p10 {_quantile(lengths, 0.1):g}, p90 {_quantile(lengths, 0.9):g}]\n"
    )

    print("A/A: false alarms per 30 days; p0 from each release's reference period")
    widths: tuple[int, ...] = (16, 15, 32, 24)
    _row(("stream", "detector", "per 30 days [95% CI]", "p0 median [p10, p90]"), widths)
    false_alarms: dict[str, dict[str, Any]] = {}
    pooled = [0, 0]  # the e-detector's alarms and windows over one release's three streams
    for w in NULL_WATCHED:
        windows = sum(d.windows[w.key] for d in aa)
        p0 = [x for d in aa for x in d.p0[w.key]]
        false_alarms[w.key] = {"p0_median": _sig(_quantile(p0, 0.5))}
        for method in METHODS:
            k = sum(d.alarms[w.key][method] for d in aa)
            low, high = wilson(k, windows)
            rate, ci = k / windows * MONTH, [_sig(low * MONTH), _sig(high * MONTH)]
            false_alarms[w.key][method] = {"per_30_days": _sig(rate), "ci95": ci}
            if method == "e_detector" and w.key in MANAGER_STREAMS:
                pooled = [pooled[0] + k, pooled[1] + windows]
            head = method == METHODS[0]
            cells = (w.key if head else "", method, f"{rate:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]")
            _row((*cells, _p0_cell(p0) if head else ""), widths)
    streams = len(MANAGER_STREAMS)
    low, high = wilson(*pooled)
    headline = pooled[0] / pooled[1] * MONTH * streams
    ci95 = [_sig(low * MONTH * streams), _sig(high * MONTH * streams)]
    print(
        f"e-detector, one release's three streams together: {headline:.4f} false alarms per 30 "
        f"days [{ci95[0]:.4f}, {ci95[1]:.4f}] (the product's promise: <= 1)\n"
    )

    print(f"Changes, {WEEK} windows after the reference: windows from the change to an alarm")
    widths = (24, 24, 20, 15, 8, 8, 8)
    header = ("scenario", "p0 median [p10, p90]", "bad rate", "detector", "median", "p90")
    _row((*header, "caught"), widths)
    scenarios: dict[str, dict[str, Any]] = {}
    for sc in SCENARIOS:
        mine = [d for d in sims if d.job.name == sc.name]
        p0 = [x for d in mine for x in d.p0[sc.name]]
        before, after = np.median([d.bad_rate[sc.name] for d in mine], axis=0).tolist()
        figure: dict[str, Any] = {
            "stream": sc.stream,
            "runs": sum(d.job.runs for d in mine),
            "p0_median": _sig(_quantile(p0, 0.5)),
            "p0_p10_p90": [_sig(_quantile(p0, 0.1)), _sig(_quantile(p0, 0.9))],
            "bad_rate_before_after": [_sig(before), _sig(after)],
        }
        for method in METHODS:
            delays = [x for d in mine for x in d.delays[sc.name][method]]
            median, p90 = _quantile(delays, 0.5), _quantile(delays, 0.9)
            figure[method] = {
                "median_delay_windows": median if math.isfinite(median) else None,
                "p90_delay_windows": p90 if math.isfinite(p90) else None,
                "detected_share": _sig(float(np.isfinite(delays).mean())),
            }
            head = method == METHODS[0]
            cells = (
                (sc.name, _p0_cell(p0), f"{100 * before:.3g}% -> {100 * after:.3g}%")
                if head
                else ("", "", "")
            )
            shown = [f"{x:g}" if math.isfinite(x) else f">{HORIZON}" for x in (median, p90)]
            _row((*cells, method, *shown, f"{100 * figure[method]['detected_share']:.1f}%"), widths)
        scenarios[sc.name] = figure
    if path is not None:
        _report_path(path)
    return {
        "false_alarms_per_30_days": _sig(headline),
        "false_alarms_per_30_days_ci95": ci95,
        "false_alarm_budget_per_30_days": 1.0,
        "manager_streams": list(MANAGER_STREAMS),
        "overrides": replaced,
        "reference_windows_median": _quantile(lengths, 0.5),
        "false_alarms": false_alarms,
        "scenarios": scenarios,
        "product_path": path,
        "months": sum(d.job.runs for d in aa),
        "latency_median_ms": LATENCY_MEDIAN_MS,
        "latency_sigma": LATENCY_SIGMA,
        "verified_windows": sum(d.verified for d in sims),
        "seconds": round(seconds, 1),
    }


def _report_path(path: dict[str, Any]) -> None:
    print(
        f"\nThe product's path (Manager, SQLite store, SQLite MLflow registry): {path['days']} days"
        f" x {path['requests_per_hour']} requests/h per release, errors doubled from the middle"
    )
    for r in path["releases"]:
        caught = (
            f"caught after {r['windows_to_alarm']} window(s) ({', '.join(r['alarm_streams'])})"
            if r["windows_to_alarm"] is not None
            else f"not caught in {path['days'] * 24 - r['change_window']} windows"
        )
        print(
            f"  {r['model']}: {r['windows_kept']} windows kept, reference {r['reference_windows']}"
            f" windows, errors p0 {100 * r['p0']['errors']:.3g}%, alarms before the change "
            f"{r['aa_alarms']}; {100 * r['error_before']:g}% -> {100 * r['error_after']:g}% "
            + caught
        )
    print(
        f"  a pass: {path['ms_per_window']:.1f} ms per window kept (hourly passes); the first "
        f"{path['first_pass_s']} s for {path['first_pass_windows']} windows; setup "
        f"{path['setup_s']} s, all {path['seconds']} s"
    )


def _ratios(text: str) -> tuple[float, ...]:
    try:
        ratios = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"want ratios like 1.1,1.25,2, got {text!r}") from None
    if not ratios or min(ratios) <= 1.0:
        raise argparse.ArgumentTypeError(f"every ratio must be > 1, got {text!r}")
    return ratios


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 months, 200 runs, 3 days")
    parser.add_argument("--months", type=int, default=20_000, help="A/A releases of 30 days")
    parser.add_argument("--runs", type=int, default=2_000, help="releases per change")
    parser.add_argument("--days", type=int, default=14, help="days of the product's path")
    parser.add_argument("--per-hour", type=int, default=500, help="its requests per hour")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2026)
    what = "in the simulated releases instead of the product's"
    parser.add_argument("--reference-requests", type=int, help=f"REFERENCE_REQUESTS {what}")
    parser.add_argument("--reference-alpha", type=float, help=f"REFERENCE_ALPHA {what}")
    parser.add_argument("--quality-alpha", type=float, help=f"the quality stream's alpha {what}")
    parser.add_argument("--ratios", type=_ratios, help=f"RATIOS (e.g. 1.1,1.25,2) {what}")
    parser.add_argument("--no-product-path", action="store_true", help="simulated releases only")
    args = parser.parse_args(argv)
    months, runs, days = (1_000, 200, 3) if args.quick else (args.months, args.runs, args.days)
    overrides = Overrides(
        args.reference_requests, args.reference_alpha, args.quality_alpha, args.ratios
    )
    started = time.monotonic()
    jobs: list[Job | PathJob] = (
        [] if args.no_product_path else [PathJob(days, args.per_hour, args.seed)]
    )  # the longest first
    done = simulate([*jobs, *plan(months, runs, args.seed, overrides)], args.workers)
    out = report(done, time.monotonic() - started, overrides)
    print(json.dumps(out, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
