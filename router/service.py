"""The router's work, without HTTP: route a scoring request, record it, answer status queries.

:class:`Router` owns the plan poller, the prediction-log writer and the metrics. The FastAPI
app (:mod:`router.app`) only moves bytes and headers in and out of :meth:`Router.invoke`,
:meth:`Router.feedback`, :meth:`Router.models` and :meth:`Router.readiness`.

One inference, in order: find the model's applied plan (404 no plan, 503 not loaded yet), parse
the body once (400/415), pick the arm from the sticky key or a random draw, let that version's
:class:`~router.predictor.Predictor` check and predict (422/500), then queue one prediction
record and count the request. Every reply, error or not, carries ``x-request-id``; every reply
from a chosen version also carries its model, version, arm, rollout id and plan generation.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rollout.registry import MlflowRegistry
from rollout.store import Feedback, PredictionLog, TrafficPlanStore, open_engine
from rollout.store.predictions import iter_feedback
from router.config import RouterConfig
from router.errors import (
    MalformedRequest,
    NotReady,
    PinningNotAllowed,
    RouterError,
    UnknownModel,
)
from router.metrics import RouterMetrics
from router.payload import Payload, media_type, parse_body
from router.plans import ActivePlan, PlanPoller, PlanSource, PredictorLoader, RegistryLoader
from router.predlog import FeedbackSink, LogEntry, PredictionLogWriter, PredictionSink
from router.split import BASELINE, CANARY, choose_arm, sticky_key

REQUEST_ID_HEADER = "x-request-id"
PIN_HEADER = "x-model-version"
MAX_REQUEST_ID = 64  # the prediction log's column width


@dataclass(frozen=True)
class Reply:
    status_code: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"


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
    ) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else RouterMetrics()
        self.poller = PlanPoller(plans, loader, config.environment, config.plan_poll_s)
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
        self._rng = random.Random(config.seed)
        self._rng_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: RouterConfig) -> Router:
        """A router on the configured store and MLflow registry."""
        engine = open_engine(config.store_url)
        log = PredictionLog(engine)
        registry = MlflowRegistry(config.registry_uri, config.artifact_root)
        return cls(
            config,
            plans=TrafficPlanStore(engine),
            loader=RegistryLoader(registry),
            predictions=log,
            feedback=log,
        )

    # -- lifecycle --
    def start(self) -> None:
        self.log.start()
        self.poller.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.poller.stop(timeout)
        self.log.close(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Write every prediction record queued so far (shutdown, tests)."""
        return self.log.flush(timeout)

    # -- inference --
    def invoke(
        self,
        model: str | None,
        body: bytes,
        content_type: str | None,
        headers: Mapping[str, str],
        *,
        request_id: str,
        started: float,
    ) -> Reply:
        """Serve one scoring request; ``started`` is its arrival on ``time.perf_counter``."""
        reply_headers = {REQUEST_ID_HEADER: request_id}
        name = model or ""
        try:
            name = model or self.default_model()
            reply_headers["x-model-name"] = name
            active = self.active_plan(name)
            if headers.get(PIN_HEADER):
                raise PinningNotAllowed(
                    f"pinning a version with '{PIN_HEADER}' needs a token allowed to pin; "
                    "this router accepts none yet"
                )
            payload = parse_body(body, content_type)
        except RouterError as exc:
            # Unknown names are not labels: a client must not be able to grow the metrics.
            label = name if name in self.poller.latest else ""
            self.metrics.observe(label, "", "", exc.status_code, time.perf_counter() - started)
            return error_reply(exc, reply_headers)
        return self._predict(name, active, payload, headers, reply_headers, request_id, started)

    def _predict(
        self,
        name: str,
        active: ActivePlan,
        payload: Payload,
        headers: Mapping[str, str],
        reply_headers: dict[str, str],
        request_id: str,
        started: float,
    ) -> Reply:
        plan = active.plan
        key = sticky_key(plan.sticky_key, headers, payload.field)
        with self._rng_lock:
            arm = choose_arm(
                plan.canary_weight_pct, key, salt=plan.rollout_id or plan.model, rng=self._rng
            )
            sampled = self._rng.random() < self.config.log_sample_rate
        version = plan.canary_version if arm == CANARY else plan.baseline_version
        assert version is not None  # a plan with a canary weight has a canary version
        reply_headers.update(
            {
                "x-model-version": version,
                "x-arm": arm,
                "x-rollout-id": plan.rollout_id or "",
                "x-plan-generation": str(plan.generation),
            }
        )
        predictor = active.predictors[version]
        error: RouterError | None = None
        outputs: Any = None
        try:
            prediction = predictor.predict(payload)
            outputs = prediction.outputs
            reply = Reply(200, prediction.body, reply_headers)
        except RouterError as exc:
            error = exc
            reply = error_reply(exc, reply_headers)
        elapsed = time.perf_counter() - started
        self.log.submit(
            LogEntry(
                request_id=request_id,
                ts=time.time(),
                model=name,
                version=version,
                arm=arm,
                rollout_id=plan.rollout_id,
                plan_generation=plan.generation,
                features=payload if sampled else None,  # rows are built off the request path
                output=outputs,
                latency_ms=elapsed * 1000.0,
                error=f"{error.error_code}: {error.message}" if error is not None else None,
                status_code=reply.status_code,
            )
        )
        self.metrics.observe(name, version, arm, reply.status_code, elapsed)
        return reply

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
        now = time.time()
        try:
            labels = [Feedback(rid, label, now) for rid, label in iter_feedback(decoded)]
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
                ("shadow", plan.shadow_version),
            ):
                if version is None:
                    continue
                failure = status.failures.get((model, version))
                versions.append(
                    {
                        "version": version,
                        "role": role,
                        "weight_pct": _weight(role, weight),
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
        return uuid.uuid4().hex
    if len(given) > MAX_REQUEST_ID:
        raise MalformedRequest(
            f"x-request-id is {len(given)} characters long; at most {MAX_REQUEST_ID} are kept",
            error_code="invalid_request_id",
        )
    return given
