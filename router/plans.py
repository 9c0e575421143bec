"""Keep the router on the newest traffic plans, applying each one whole or not at all.

:class:`PlanPoller` re-reads its :class:`~contract.plans.PlanSource` every ``poll_s`` seconds on
a background thread. For a plan whose generation it has not applied yet it loads and warms every
version the plan needs (:class:`PredictorLoader`) *before* swapping it in; if one version fails
to load, the failure is kept for ``/readyz`` (retried with back-off) and the previous plan of
that model stays active. A version no plan uses any more is dropped, and so is a model whose
plan disappeared from the store. If the store cannot be read, everything stays as it was.

Readers take :attr:`PlanPoller.active` once per request: an immutable mapping replaced whole,
so a request sees one consistent plan even while a new one is being applied.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from contract.clock import SYSTEM_CLOCK, Clock
from contract.plans import PlanSource, TrafficPlan
from contract.registry import RegistryReader
from router.predictor import Predictor

_log = logging.getLogger(__name__)


class PredictorLoader(Protocol):
    """Load and warm one model version, or raise saying why it cannot."""

    def load(self, model: str, version: str) -> Predictor: ...


class RegistryLoader:
    """Versions from the model registry (:meth:`~contract.registry.RegistryReader.load_model`),
    warmed once."""

    def __init__(self, registry: RegistryReader) -> None:
        self.registry = registry

    def load(self, model: str, version: str) -> Predictor:
        started = time.perf_counter()
        predictor = Predictor(model, version, self.registry.load_model(model, version))
        warmed_with = predictor.warm()
        _log.info(
            "loaded %s v%s in %.2fs (warmed with %s)",
            model,
            version,
            time.perf_counter() - started,
            warmed_with,
        )
        return predictor


@dataclass(frozen=True)
class ActivePlan:
    plan: TrafficPlan
    predictors: Mapping[str, Predictor]  # version → predictor, for every version of the plan
    applied_at: float  # wall clock


@dataclass(frozen=True)
class LoadFailure:
    model: str
    version: str
    reason: str
    attempts: int
    retry_at: float  # monotonic clock


@dataclass(frozen=True)
class PlanStatus:
    """A snapshot for ``/readyz`` and ``GET /v1/models``."""

    environment: str
    polled: bool  # the store has been read at least once
    poll_error: str | None  # the last read's error, if it failed
    latest: Mapping[str, TrafficPlan]  # model → the plan as last read from the store
    active: Mapping[str, ActivePlan]
    failures: Mapping[tuple[str, str], LoadFailure] = field(default_factory=dict)
    loaded: frozenset[tuple[str, str]] = frozenset()  # (model, version) loaded and warmed

    def not_ready(self) -> list[dict[str, str]]:
        """Why the router is not ready, one item per cause; empty when it is."""
        if not self.polled:
            reason = self.poll_error or "the traffic plans have not been read yet"
            return [{"model": "", "version": "", "reason": reason}]
        if not self.latest:
            reason = f"no traffic plan for environment {self.environment!r}"
            return [{"model": "", "version": "", "reason": reason}]
        causes = []
        for model, plan in self.latest.items():
            active = self.active.get(model)
            if active is not None and active.plan == plan:
                continue
            pending = [v for v in plan.versions if (model, v) not in self.loaded]
            for version in pending:
                failure = self.failures.get((model, version))
                reason = failure.reason if failure else "loading"
                causes.append({"model": model, "version": version, "reason": reason})
            if not pending:
                reason = f"generation {plan.generation} is not applied yet"
                causes.append({"model": model, "version": "", "reason": reason})
        return causes


class PlanPoller:
    def __init__(
        self,
        source: PlanSource,
        loader: PredictorLoader,
        environment: str,
        poll_s: float = 0.5,
        *,
        retry_s: float = 2.0,
        max_retry_s: float = 60.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.source = source
        self.loader = loader
        self.environment = environment
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self.clock = clock
        self._active: Mapping[str, ActivePlan] = MappingProxyType({})
        self._latest: Mapping[str, TrafficPlan] = MappingProxyType({})
        # Replaced whole on every change (never mutated) so status() can read them any time.
        self._loaded: dict[tuple[str, str], Predictor] = {}
        self._failures: dict[tuple[str, str], LoadFailure] = {}
        self._polled = False
        self._poll_error: str | None = None
        self._lock = threading.Lock()  # one poll at a time
        self._stop = threading.Event()
        self._applied = threading.Condition()
        self._thread: threading.Thread | None = None

    # -- reading --
    @property
    def active(self) -> Mapping[str, ActivePlan]:
        return self._active

    @property
    def latest(self) -> Mapping[str, TrafficPlan]:
        return self._latest

    def status(self) -> PlanStatus:
        return PlanStatus(
            environment=self.environment,
            polled=self._polled,
            poll_error=self._poll_error,
            latest=self._latest,
            active=self._active,
            failures=self._failures,
            loaded=frozenset(self._loaded),
        )

    # -- running --
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="router-plan-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_until(self, predicate: Callable[[PlanStatus], bool], timeout: float) -> bool:
        """Block until ``predicate(status)`` holds after a poll, or ``timeout`` seconds pass."""
        deadline = self.clock.monotonic() + timeout
        with self._applied:
            while not predicate(self.status()):
                remaining = deadline - self.clock.monotonic()
                if remaining <= 0:
                    return False
                self._applied.wait(remaining)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self.clock.monotonic()
            try:
                self.poll_once()
            except Exception:  # never let the poller die
                _log.exception("traffic plan poll failed")
            self._stop.wait(max(0.0, self.poll_s - (self.clock.monotonic() - started)))

    def poll_once(self) -> None:
        """Read the plans once and apply every new one that can be applied whole."""
        with self._lock:
            try:
                plans = self.source.list(self.environment)
            except Exception as exc:
                self._poll_error = f"cannot read traffic plans: {type(exc).__name__}: {exc}"
                _log.warning("%s", self._poll_error)
                self._notify()
                return
            latest = {plan.model: plan for plan in plans}
            self._latest = MappingProxyType(latest)  # what is wanted, before it is loaded
            active = dict(self._active)
            for model, plan in latest.items():
                current = active.get(model)
                if current is not None and current.plan == plan:
                    continue
                predictors = self._load_all(model, plan.versions)
                if predictors is not None:
                    active[model] = ActivePlan(
                        plan, MappingProxyType(predictors), self.clock.time()
                    )
                    _log.info(
                        "applied plan %s/%s generation %d: baseline v%s, canary %s at %d%%",
                        plan.environment,
                        model,
                        plan.generation,
                        plan.baseline_version,
                        f"v{plan.canary_version}" if plan.canary_version else "none",
                        plan.canary_weight_pct,
                    )
            for model in set(active) - set(latest):
                del active[model]
                _log.info("model %s has no plan in %s any more: dropped", model, self.environment)
            self._active = MappingProxyType(active)
            self._prune(latest, active)
            self._polled = True
            self._poll_error = None
            self._notify()

    def _load_all(self, model: str, versions: tuple[str, ...]) -> dict[str, Predictor] | None:
        predictors: dict[str, Predictor] = {}
        complete = True
        for version in versions:
            key = (model, version)
            predictor = self._loaded.get(key)
            if predictor is None:
                predictor = self._load(model, version)
            if predictor is None:
                complete = False
            else:
                predictors[version] = predictor
        return predictors if complete else None

    def _load(self, model: str, version: str) -> Predictor | None:
        key = (model, version)
        failure = self._failures.get(key)
        if failure is not None and self.clock.monotonic() < failure.retry_at:
            return None
        try:
            predictor = self.loader.load(model, version)
        except Exception as exc:
            attempts = failure.attempts + 1 if failure else 1
            delay = min(self.max_retry_s, self.retry_s * 2 ** (attempts - 1))
            reason = f"{type(exc).__name__}: {exc}"
            retry_at = self.clock.monotonic() + delay
            failed = LoadFailure(model, version, reason, attempts, retry_at)
            self._failures = {**self._failures, key: failed}
            _log.warning("cannot load %s v%s (attempt %d): %s", model, version, attempts, reason)
            return None
        self._failures = {k: f for k, f in self._failures.items() if k != key}
        self._loaded = {**self._loaded, key: predictor}
        # A loaded model is hundreds of thousands of long-lived objects; moving them out of the
        # collector's reach keeps full collections (pauses of many ms) off the request path.
        gc.freeze()
        return predictor

    def _prune(self, latest: Mapping[str, TrafficPlan], active: Mapping[str, ActivePlan]) -> None:
        """Forget versions and failures no plan (applied or wanted) refers to any more."""
        wanted = {(m, v) for m, p in latest.items() for v in p.versions}
        wanted |= {(m, v) for m, a in active.items() for v in a.predictors}
        for key in set(self._loaded) - wanted:
            _log.info("dropped %s v%s: no plan uses it", *key)
        self._loaded = {k: p for k, p in self._loaded.items() if k in wanted}
        self._failures = {k: f for k, f in self._failures.items() if k in wanted}

    def _notify(self) -> None:
        with self._applied:
            self._applied.notify_all()
