"""The router's work, without HTTP: route a scoring request, record it, answer status queries.

:class:`Router` owns the plan poller, the prediction-log writer and the metrics. The ASGI layer
(:mod:`router.app`) only moves bytes and headers in and out of :meth:`Router.invoke` (on the
event loop), :meth:`Router.feedback`, :meth:`Router.models` and :meth:`Router.readiness`.

One inference, in order: find the model's applied plan (404 no plan, 503 not loaded yet), check
a pinned version (``x-model-version``: 401 without a bearer token, 403 for a token whose sha256
is not in ``pin_token_sha256``, 404 for a version the plan does not serve), parse the body once
(400/415), pick the arm (pinned, else sticky key or random draw), let that version's
:class:`~router.predictor.Predictor` check and predict (422, 500, 504 after
``predict_timeout_s``), then queue one prediction record and count the request.

Where a prediction runs: a version on the numpy road whose warm prediction took under
``INLINE_MAX_S`` runs on the event loop (through a :class:`~router.batching.MicroBatcher` when
``batch_max_size > 1``): no thread hop for sub-millisecond work. Anything else runs on a thread
pool and is abandoned after ``predict_timeout_s`` (504).

Failover: when the canary fails on input that fits (500: it raised or returned malformed
predictions; 504: too slow), its failure is recorded (prediction record with the error, metric
``rollout_router_canary_failovers_total``) and the baseline answers the same request. When the
baseline (or a pinned version) fails, the reply is that 5xx.

Shadow: when the plan has a shadow version, ``shadow_fraction`` of the answered requests are
mirrored to it after the reply is sent (:attr:`Reply.after`), on one background thread; its
outputs are recorded with arm ``shadow`` and the same request id, never changing the reply.

Every reply, error or not, carries ``x-request-id``; every reply from a chosen version also
carries its model, version, arm (``baseline``, ``canary``, ``pinned``), rollout id and plan
generation, and ``x-release-id``, the release of the version that answered
(:meth:`~contract.plans.TrafficPlan.release_of`: the baseline's release record id, or
``rollout:<id>`` for a candidate under rollout; after a failover the baseline's), omitted when
the plan does not know it. The same value (``""`` when unknown) labels the requests metric.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final

from contract.clock import SYSTEM_CLOCK, Clock
from contract.names import (
    ARM_HEADER,
    BASELINE,
    CANARY,
    MAX_REQUEST_ID,
    MODEL_NAME_HEADER,
    MODEL_VERSION_HEADER,
    PINNED,
    PLAN_GENERATION_HEADER,
    RELEASE_ID_HEADER,
    REQUEST_ID_HEADER,
    ROLLOUT_ID_HEADER,
    SHADOW,
)
from contract.plans import PlanSource, TrafficPlan
from contract.records import Feedback, FeedbackSink, PredictionSink, parse_feedback
from router.batching import MicroBatcher
from router.config import RouterConfig
from router.errors import (
    MalformedRequest,
    ModelError,
    ModelTimeout,
    NotReady,
    PinningNotAllowed,
    RouterError,
    Unauthorized,
    UnknownModel,
)
from router.metrics import RouterMetrics
from router.payload import Payload, media_type, parse_body
from router.plans import ActivePlan, PlanPoller, PredictorLoader, RegistryLoader
from router.predictor import Prediction, Predictor
from router.predlog import LogEntry, PredictionLogWriter
from router.split import choose_arm, sticky_key

_log = logging.getLogger(__name__)

PIN_HEADER: Final = MODEL_VERSION_HEADER  # in a request: the version the caller pins
INLINE_MAX_S: Final = 0.002  # a warm prediction this quick runs on the event loop, unbatched
MODEL_THREADS: Final = 32  # predictions that may run (or hang past their timeout) at once
SHADOW_MAX_PENDING: Final = 64  # mirrored requests waiting; more are skipped and counted
# Request ids: 64 random bits per process, then a counter (unique without a syscall per request).
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))


def _new_id_source() -> None:
    global _ID_PREFIX, _ID_COUNTER
    _ID_PREFIX = os.urandom(8).hex()
    _ID_COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))


os.register_at_fork(after_in_child=_new_id_source)  # a forked worker must not repeat ids


@dataclass(frozen=True)
class Reply:
    status_code: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"
    after: Callable[[], None] | None = None  # work to start once the reply is sent (shadow)


class Router:
    def __init__(
        self,
        config: RouterConfig,
        *,
        plans: PlanSource,
        loader: PredictorLoader,
        predictions: PredictionSink,
        feedback: FeedbackSink | None = None,
        metrics: RouterMetrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = metrics if metrics is not None else RouterMetrics()
        self.poller = PlanPoller(plans, loader, config.environment, config.plan_poll_s, clock=clock)
        self.log = PredictionLogWriter(
            predictions,
            config.environment,
            batch_size=config.log_batch_size,
            flush_s=config.log_flush_s,
            queue_size=config.log_queue_size,
            on_drop=self.metrics.log_dropped.inc,
            on_write=self.metrics.log_written.inc,
        )
        self.feedback_sink = feedback
        self.metrics.watch_plans(self.poller.status)
        self._rng = random.Random(config.seed)  # used on the event loop only
        self._pin_digests = tuple(config.pin_token_sha256)
        self._pool = ThreadPoolExecutor(MODEL_THREADS, thread_name_prefix="router-model")
        self._shadow_pool = ThreadPoolExecutor(1, thread_name_prefix="router-shadow")
        self._shadow_lock = threading.Lock()
        self._shadow_pending = 0
        self._batchers: dict[tuple[str, str], MicroBatcher] = {}

    @classmethod
    def from_config(cls, config: RouterConfig, clock: Clock = SYSTEM_CLOCK) -> Router:
        """A router on the configured store and MLflow registry."""
        from contract.mlflow import MlflowRegistryReader
        from contract.sql.engine import open_engine
        from contract.sql.plans import SqlPlanStore
        from contract.sql.predictions import SqlFeedbackSink, SqlPredictionSink

        engine = open_engine(config.store_url, create=config.migrate_store)
        registry = MlflowRegistryReader(config.registry_uri, config.artifact_root)
        return cls(
            config,
            plans=SqlPlanStore(engine),
            loader=RegistryLoader(registry),
            predictions=SqlPredictionSink(engine),
            feedback=SqlFeedbackSink(engine),
            clock=clock,
        )

    # -- lifecycle --
    def start(self) -> None:
        self.log.start()
        self.poller.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.poller.stop(timeout)
        self._shadow_pool.shutdown(wait=True, cancel_futures=False)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.log.close(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Write every prediction record queued so far (shutdown, tests)."""
        return self.log.flush(timeout)

    # -- inference --
    async def invoke(
        self,
        model: str | None,
        body: bytes,
        content_type: str | None,
        headers: Mapping[str, str],
        *,
        request_id: str,
        started: float,
    ) -> Reply:
        """Serve one scoring request; ``started`` is its arrival on ``time.perf_counter``.

        Runs on the event loop. ``headers`` must have lower-case names.
        """
        reply_headers = {REQUEST_ID_HEADER: request_id}
        name = model or ""
        try:
            name = model or self.default_model()
            reply_headers[MODEL_NAME_HEADER] = name
            active = self.active_plan(name)
            pinned = self._pinned(headers, name, active)
            payload = parse_body(body, content_type)
        except RouterError as exc:
            # Unknown names are not labels: a client must not be able to grow the metrics.
            label = name if name in self.poller.latest else ""
            self.metrics.observe(label, "", "", exc.status_code, time.perf_counter() - started)
            return error_reply(exc, reply_headers)
        return await self._serve(
            name, active, payload, headers, reply_headers, request_id, started, pinned
        )

    def _pinned(self, headers: Mapping[str, str], model: str, active: ActivePlan) -> str | None:
        """The version ``x-model-version`` pins, if the bearer token may pin (401/403/404)."""
        wanted = headers.get(PIN_HEADER)
        if not wanted:
            return None
        if not self._pin_digests:
            raise PinningNotAllowed(
                f"pinning a version with '{PIN_HEADER}' needs a token allowed to pin; "
                "this router accepts none (ROLLOUT_PIN_TOKEN_SHA256 is empty)"
            )
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(
                f"pinning a version with '{PIN_HEADER}' needs 'Authorization: Bearer TOKEN'"
            )
        digest = hashlib.sha256(token.encode()).hexdigest()
        if not any(hmac.compare_digest(digest, allowed) for allowed in self._pin_digests):
            raise PinningNotAllowed(
                f"this bearer token may not pin versions with '{PIN_HEADER}' (its sha256 is "
                "not in ROLLOUT_PIN_TOKEN_SHA256)"
            )
        if wanted not in active.predictors:
            served = ", ".join(f"v{v}" for v in active.predictors)
            raise UnknownModel(
                f"{PIN_HEADER}: {wanted!r} is not a version of model {model!r} this router "
                f"serves now ({served})",
                error_code="unknown_version",
            )
        return wanted

    async def _serve(
        self,
        name: str,
        active: ActivePlan,
        payload: Payload,
        headers: Mapping[str, str],
        reply_headers: dict[str, str],
        request_id: str,
        started: float,
        pinned: str | None,
    ) -> Reply:
        plan = active.plan
        rng = self._rng
        if pinned is not None:
            arm: str = PINNED
            version = pinned
        else:
            key = sticky_key(plan.sticky_key, headers, payload.field)
            arm = choose_arm(
                plan.canary_weight_pct, key, salt=plan.rollout_id or plan.model, rng=rng
            )
            served = plan.canary_version if arm == CANARY else plan.baseline_version
            assert served is not None  # a plan with a canary weight has a canary version
            version = served
        sampled = rng.random() < self.config.log_sample_rate
        features = payload if sampled else None  # rows are built off the request path
        reply_headers[ROLLOUT_ID_HEADER] = plan.rollout_id or ""
        reply_headers[PLAN_GENERATION_HEADER] = str(plan.generation)
        reply = Reply(500, b"", reply_headers)
        while True:
            reply_headers[MODEL_VERSION_HEADER] = version
            reply_headers[ARM_HEADER] = arm
            release = plan.release_of(version)
            if release is not None:
                reply_headers[RELEASE_ID_HEADER] = release
            else:
                reply_headers.pop(RELEASE_ID_HEADER, None)
            predictor = active.predictors[version]
            error: RouterError | None = None
            outputs: Any = None
            try:
                prediction = await self._run(predictor, payload)
                outputs = prediction.outputs
                reply = Reply(200, prediction.body, reply_headers)
            except RouterError as exc:
                error = exc
                reply = error_reply(exc, reply_headers)
            elapsed = time.perf_counter() - started
            self._record(
                request_id, name, version, arm, plan, features, outputs, elapsed, error, reply,
                release or "",
            )  # fmt: skip
            if (
                arm == CANARY
                and isinstance(error, ModelError | ModelTimeout)
                and plan.baseline_version in active.predictors
            ):
                # The canary failed on input that fits: the baseline answers this request.
                self.metrics.failovers.labels(name, version).inc()
                arm, version = BASELINE, plan.baseline_version
                continue
            break
        if (
            reply.status_code == 200
            and plan.shadow_version is not None
            and plan.shadow_fraction > 0
            and plan.shadow_version != version
            and plan.shadow_version in active.predictors
            and rng.random() < plan.shadow_fraction
        ):
            shadow = active.predictors[plan.shadow_version]
            reply = replace(
                reply,
                after=partial(self._mirror, shadow, name, plan, payload, features, request_id),
            )
        return reply

    def _record(
        self,
        request_id: str,
        name: str,
        version: str,
        arm: str,
        plan: TrafficPlan,
        features: Any,
        outputs: Any,
        elapsed: float,
        error: RouterError | None,
        reply: Reply,
        release: str = "",
    ) -> None:
        self.log.submit(
            LogEntry(
                request_id=request_id,
                ts=self.clock.time(),
                model=name,
                version=version,
                arm=arm,
                rollout_id=plan.rollout_id,
                plan_generation=plan.generation,
                features=features,
                output=outputs,
                latency_ms=elapsed * 1000.0,
                error=f"{error.error_code}: {error.message}" if error is not None else None,
                status_code=reply.status_code,
            )
        )
        self.metrics.observe(name, version, arm, reply.status_code, elapsed, outputs, release)

    async def _run(self, predictor: Predictor, payload: Payload) -> Prediction:
        """Predict on the event loop when it is known to be sub-millisecond, else on a thread
        with the configured timeout (504)."""
        matrix = predictor.matrix(payload)  # checks the signature (422)
        if (
            matrix is not None
            and predictor.predict_s is not None
            and predictor.predict_s <= INLINE_MAX_S
        ):
            if self.config.batch_max_size > 1:
                return await self._batcher(predictor).predict(matrix)
            return predictor.predict_matrix(matrix)
        loop = asyncio.get_running_loop()
        call: Callable[[], Prediction] = (
            partial(predictor.predict_matrix, matrix)
            if matrix is not None
            else partial(predictor.predict, payload)
        )
        timeout = self.config.predict_timeout_s
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, call), timeout)
        except TimeoutError:
            raise ModelTimeout(
                f"{predictor.label} did not answer within {timeout:g}s (ROLLOUT_PREDICT_TIMEOUT_S)"
            ) from None

    def _batcher(self, predictor: Predictor) -> MicroBatcher:
        key = (predictor.model_name, predictor.version)
        batcher = self._batchers.get(key)
        if batcher is None or batcher.predictor is not predictor:
            loaded = self.poller.status().loaded
            self._batchers = {k: b for k, b in self._batchers.items() if k in loaded}
            batcher = MicroBatcher(
                predictor, self.config.batch_max_size, self.config.batch_max_wait_s
            )
            self._batchers[key] = batcher
        return batcher

    # -- shadow --
    def launch(self, work: Callable[[], None]) -> bool:
        """Start background work (a shadow prediction) after a reply; False if too much waits."""
        with self._shadow_lock:
            if self._shadow_pending >= SHADOW_MAX_PENDING:
                self.metrics.shadow_skipped.inc()
                return False
            self._shadow_pending += 1
        try:
            self._shadow_pool.submit(self._shadow_done, work)
        except RuntimeError:  # shut down
            with self._shadow_lock:
                self._shadow_pending -= 1
            return False
        return True

    def _shadow_done(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:
            _log.exception("shadow prediction failed")
        finally:
            with self._shadow_lock:
                self._shadow_pending -= 1

    def _mirror(
        self,
        predictor: Predictor,
        name: str,
        plan: TrafficPlan,
        payload: Payload,
        features: Any,
        request_id: str,
    ) -> None:
        """Predict the shadow version on a served request and record it (arm ``shadow``)."""
        started = time.perf_counter()
        error: RouterError | None = None
        outputs: Any = None
        status = 200
        try:
            outputs = predictor.predict(payload).outputs
        except RouterError as exc:
            error, status = exc, exc.status_code
        except Exception as exc:
            error = ModelError(f"{predictor.label} failed: {type(exc).__name__}: {exc}")
            status = 500
        elapsed = time.perf_counter() - started
        self._record(
            request_id,
            name,
            predictor.version,
            SHADOW,
            plan,
            features,
            outputs,
            elapsed,
            error,
            Reply(status, b""),
            plan.release_of(predictor.version) or "",
        )

    def default_model(self) -> str:
        """The model ``POST /invocations`` serves: configured, else the only one with a plan."""
        if self.config.default_model:
            return self.config.default_model
        models = sorted(self.poller.latest)
        if len(models) == 1:
            return models[0]
        if not models:
            raise NotReady(
                f"no traffic plan in environment {self.config.environment!r} yet, so there is "
                "no default model",
                error_code="no_plan",
            )
        raise UnknownModel(
            f"no default model: this router serves {', '.join(models)}; set "
            "ROLLOUT_DEFAULT_MODEL or POST to /v1/models/{model}/invocations",
            error_code="no_default_model",
        )

    def active_plan(self, model: str) -> ActivePlan:
        active = self.poller.active.get(model)
        if active is not None:
            return active
        status = self.poller.status()
        if model in status.latest:
            causes = [c for c in status.not_ready() if c["model"] == model]
            why = "; ".join(f"v{c['version']}: {c['reason']}" for c in causes if c["version"])
            raise NotReady(
                f"the traffic plan of model {model!r} is not loaded yet"
                + (f" ({why})" if why else "")
            )
        if not status.polled:
            raise NotReady(
                "the router has not read the traffic plans yet"
                + (f": {status.poll_error}" if status.poll_error else "")
            )
        served = ", ".join(sorted(status.latest)) or "none"
        raise UnknownModel(
            f"model {model!r} has no traffic plan in environment {self.config.environment!r} "
            f"(models served: {served})"
        )

    # -- feedback --
    def feedback(self, body: bytes, content_type: str | None) -> int:
        """Store delayed labels; returns how many. 400 on a malformed body."""
        if media_type(content_type) != "application/json":
            raise MalformedRequest("feedback must be JSON", error_code="invalid_format")
        try:
            decoded = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedRequest(
                f"the body is not valid JSON: {exc}", error_code="malformed_json"
            ) from exc
        now = self.clock.time()
        try:
            labels = [Feedback(rid, label, now) for rid, label in parse_feedback(decoded)]
        except ValueError as exc:
            raise MalformedRequest(str(exc), error_code="invalid_feedback") from exc
        for item in labels:
            if len(item.request_id) > MAX_REQUEST_ID:
                raise MalformedRequest(
                    f"request_id {item.request_id[:20]!r}... is longer than {MAX_REQUEST_ID}",
                    error_code="invalid_feedback",
                )
        if self.feedback_sink is None:
            raise NotReady("this router has no feedback store", error_code="store_unavailable")
        try:
            self.feedback_sink.add_feedback(labels)
        except Exception as exc:
            raise NotReady(
                f"cannot store feedback: {type(exc).__name__}: {exc}",
                error_code="store_unavailable",
            ) from exc
        return len(labels)

    # -- status --
    def models(self) -> dict[str, Any]:
        """``GET /v1/models``: every model with a plan, its versions, weights and readiness."""
        status = self.poller.status()
        causes = status.not_ready()
        out = []
        for model in sorted(set(status.latest) | set(status.active)):
            latest = status.latest.get(model)
            active = status.active.get(model)
            plan = active.plan if active is not None else latest
            assert plan is not None
            weight = plan.canary_weight_pct
            versions = []
            for role, version in (
                (BASELINE, plan.baseline_version),
                (CANARY, plan.canary_version),
                (SHADOW, plan.shadow_version),
            ):
                if version is None:
                    continue
                failure = status.failures.get((model, version))
                versions.append(
                    {
                        "version": version,
                        "role": role,
                        "weight_pct": _weight(role, weight),
                        "release": plan.release_of(version),
                        "loaded": (model, version) in status.loaded,
                        "error": failure.reason if failure else None,
                    }
                )
            out.append(
                {
                    "model": model,
                    "generation": active.plan.generation if active else None,
                    "latest_generation": latest.generation if latest else None,
                    "ready": active is not None and latest is not None and active.plan == latest,
                    "baseline_version": plan.baseline_version,
                    "canary_version": plan.canary_version,
                    "canary_weight_pct": weight,
                    "shadow_version": plan.shadow_version,
                    "shadow_fraction": plan.shadow_fraction,
                    "sticky_key": plan.sticky_key,
                    "rollout_id": plan.rollout_id,
                    "versions": versions,
                }
            )
        return {
            "environment": self.config.environment,
            "default_model": self.config.default_model
            or (next(iter(status.latest)) if len(status.latest) == 1 else None),
            "ready": not causes,
            "models": out,
        }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """``GET /readyz``: ready when every version of every plan is loaded and warmed."""
        status = self.poller.status()
        causes = status.not_ready()
        generations = {m: a.plan.generation for m, a in sorted(status.active.items())}
        if not causes:
            body: dict[str, Any] = {"ready": True, "generations": generations}
            if status.poll_error:
                body["store_error"] = status.poll_error
            return True, body
        described = "; ".join(_describe_cause(c) for c in causes)
        return False, {
            "error_code": "not_ready",
            "message": f"not ready: {described}",
            "not_ready": causes,
            "generations": generations,
        }


def _describe_cause(cause: Mapping[str, str]) -> str:
    """``bc v9: RegistryError: ...``, ``bc: generation 4 ...`` or just the reason."""
    if cause["version"]:
        return f"{cause['model']} v{cause['version']}: {cause['reason']}"
    if cause["model"]:
        return f"{cause['model']}: {cause['reason']}"
    return cause["reason"]


def _weight(role: str, canary_weight_pct: int) -> int:
    if role == BASELINE:
        return 100 - canary_weight_pct
    return canary_weight_pct if role == CANARY else 0


def error_reply(error: RouterError, headers: dict[str, str]) -> Reply:
    return Reply(error.status_code, json.dumps(error.to_json()).encode(), headers)


def request_id_from(headers: Mapping[str, str]) -> str:
    """The caller's ``x-request-id`` (400 if longer than the log keeps), else a new one."""
    given = headers.get(REQUEST_ID_HEADER)
    if not given:
        return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"
    if len(given) > MAX_REQUEST_ID:
        raise MalformedRequest(
            f"x-request-id is {len(given)} characters long; at most {MAX_REQUEST_ID} are kept",
            error_code="invalid_request_id",
        )
    return given
