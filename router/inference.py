"""The request path: route one scoring request to a version, predict, record, reply.

:class:`Inference` is the part of :class:`~router.service.Router` that serves requests (on the
event loop); it reads the applied plans from the plan poller and writes one prediction record
per version that answered.

One inference, in order: find the model's applied plan (404 no plan, 503 not loaded yet), check
a pinned version (``x-model-version``, :mod:`router.pinning`: 401 without a bearer token, 403
for a token whose sha256 is not in ``pin_token_sha256``, 404 for a version the plan does not
serve), parse the body once (400/415), pick the arm (pinned, else sticky key or random draw),
let that version's :class:`~router.predictor.Predictor` check and predict (422, 500, 504 after
``predict_timeout_s``), then queue one prediction record and count the request.

Where a prediction runs: a version on the numpy road whose warm prediction took under
``INLINE_MAX_S`` runs on the event loop (through a :class:`~router.batching.MicroBatcher` when
``batch_max_size > 1``): no thread hop for sub-millisecond work. Anything else runs on a thread
pool and is abandoned after ``predict_timeout_s`` (504).

Failover: when the canary fails on input that fits (500: it raised or returned malformed
predictions; 504: too slow), its failure is recorded (prediction record with the error, metric
``rollout_router_canary_failovers_total``) and the baseline answers the same request, as arm
``failover`` (its record, its metric label and ``x-arm``: the gates leave such answers out, as
they are not requests the split gave the baseline). When the baseline (or a pinned version)
fails, the reply is that 5xx.

The client's errors are nobody's failure: a 4xx (the body, the signature) is answered before
any version is called when parsing finds it (non-finite numbers, too deep, bad shapes), and
when a version refuses the input (422 ``signature_mismatch``, 400) it writes no prediction
record, so no gate counts it against an arm (the requests metric still counts its status).
When the canary refuses input, the baseline is asked too: if it refuses it as well, the reply
is the canary's 4xx and nothing is recorded; if it answers, the input was fine and the canary's
refusal is recorded as its error (with its 4xx status), counted as a failover, and the
baseline's answer is the reply, recorded as arm ``failover``.

Shadow: an answered request the plan mirrors gets :attr:`~router.reply.Reply.after`, a
:meth:`~router.shadow.ShadowRunner.mirror` call run once the reply is sent (:mod:`router.shadow`).

Every reply, error or not, carries ``x-request-id``; every reply from a chosen version also
carries its model, version, arm (``baseline``, ``canary``, ``pinned``), rollout id and plan
generation, and ``x-release-id``, the release of the version that answered
(:meth:`~contract.plans.TrafficPlan.release_of`: the baseline's release record id, or
``rollout:<id>`` for a candidate under rollout; after a failover the baseline's), omitted when
the plan does not know it. The same value (``""`` when unknown) labels the requests metric.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Any, Final

from contract.clock import Clock
from contract.names import (
    ARM_HEADER,
    CANARY,
    FAILOVER,
    MODEL_NAME_HEADER,
    MODEL_VERSION_HEADER,
    PINNED,
    PLAN_GENERATION_HEADER,
    RELEASE_ID_HEADER,
    REQUEST_ID_HEADER,
    ROLLOUT_ID_HEADER,
)
from contract.plans import TrafficPlan
from router.batching import MicroBatcher
from router.config import RouterConfig
from router.errors import ModelError, ModelTimeout, NotReady, RouterError, UnknownModel
from router.metrics import RouterMetrics
from router.payload import Payload, parse_body
from router.pinning import pinned_version
from router.plans import ActivePlan, PlanPoller
from router.predictor import Prediction, Predictor
from router.predlog import LogEntry, PredictionLogWriter
from router.reply import Reply, error_reply
from router.shadow import ShadowRunner
from router.split import choose_arm, sticky_key

INLINE_MAX_S: Final = 0.002  # a warm prediction this quick runs on the event loop, unbatched
MODEL_THREADS: Final = 32  # predictions that may run (or hang past their timeout) at once


class Inference:
    """Serves scoring requests as the poller's applied plans say (the base of ``Router``)."""

    def __init__(
        self,
        config: RouterConfig,
        *,
        poller: PlanPoller,
        log: PredictionLogWriter,
        metrics: RouterMetrics,
        clock: Clock,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.poller = poller
        self.log = log
        self.shadow = ShadowRunner(self._record, on_skip=metrics.shadow_skipped.inc)
        self._rng = random.Random(config.seed)  # used on the event loop only
        self._pin_digests = tuple(config.pin_token_sha256)
        self._pool = ThreadPoolExecutor(MODEL_THREADS, thread_name_prefix="router-model")
        self._batchers: dict[tuple[str, str], MicroBatcher] = {}

    def _shutdown(self) -> None:
        """Let the waiting mirrors finish; abandon the predictions still queued (``stop``)."""
        self.shadow.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

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
            pinned = pinned_version(headers, name, active, self._pin_digests)
            payload = parse_body(body, content_type)
        except RouterError as exc:
            # Unknown names are not labels: a client must not be able to grow the metrics.
            label = name if name in self.poller.latest else ""
            self.metrics.observe(label, "", "", exc.status_code, time.perf_counter() - started)
            return error_reply(exc, reply_headers)
        return await self._serve(
            name, active, payload, headers, reply_headers, request_id, started, pinned
        )

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
        refused: tuple[str, RouterError, float] | None = None  # the canary refused the input
        while True:
            release = _label(reply_headers, plan, version, arm)
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
            if error is not None and error.client_error:
                if arm == CANARY and plan.baseline_version in active.predictors:
                    # Whose fault? The client's if the baseline refuses the input too.
                    refused = (version, error, elapsed)
                    arm, version = FAILOVER, plan.baseline_version
                    continue
                if refused is not None:  # both refuse it: the canary's 4xx is the reply
                    version, error, elapsed = refused
                    arm = CANARY
                    release = _label(reply_headers, plan, version, arm)
                    reply = error_reply(error, reply_headers)
                # The client's input, no version's failure: no prediction record, only counted.
                self.metrics.observe(
                    name, version, arm, reply.status_code, elapsed, None, release or ""
                )
                break
            if refused is not None:
                # The canary refused input the baseline serves: the canary's failure.
                canary, canary_error, canary_elapsed = refused
                refused = None
                self._record(
                    request_id, name, canary, CANARY, plan, features, None, canary_elapsed,
                    canary_error, Reply(canary_error.status_code, b"", {}),
                    plan.release_of(canary) or "",
                )  # fmt: skip
                self.metrics.failovers.labels(name, canary).inc()
            self._record(
                request_id, name, version, arm, plan, features, outputs, elapsed, error, reply,
                release or "",
            )  # fmt: skip
            if (
                arm == CANARY
                and isinstance(error, ModelError | ModelTimeout)
                and plan.baseline_version in active.predictors
            ):
                # The canary failed on input that fits: the baseline answers this request,
                # recorded as a failover (not a request the split gave the baseline).
                self.metrics.failovers.labels(name, version).inc()
                arm, version = FAILOVER, plan.baseline_version
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
                after=partial(
                    self.shadow.mirror, shadow, name, plan, payload, features, request_id
                ),
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
                + (f" ({why})" if why else ""),
                public=f"the traffic plan of model {model!r} is not loaded yet",
            )
        if not status.polled:
            raise NotReady(
                "the router has not read the traffic plans yet"
                + (f": {status.poll_error}" if status.poll_error else ""),
                public="the router has not read the traffic plans yet",
            )
        served = ", ".join(sorted(status.latest)) or "none"
        raise UnknownModel(
            f"model {model!r} has no traffic plan in environment {self.config.environment!r} "
            f"(models served: {served})"
        )


def _label(headers: dict[str, str], plan: TrafficPlan, version: str, arm: str) -> str | None:
    """Name the version and arm answering in the reply ``headers``; returns its release."""
    headers[MODEL_VERSION_HEADER] = version
    headers[ARM_HEADER] = arm
    release = plan.release_of(version)
    if release is not None:
        headers[RELEASE_ID_HEADER] = release
    else:
        headers.pop(RELEASE_ID_HEADER, None)
    return release
