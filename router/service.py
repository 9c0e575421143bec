"""The router's work, without HTTP: route a scoring request, record it, answer status queries.

:class:`Router` owns the plan poller, the prediction-log writer, the metrics and the thread
pools, and starts and stops them. The ASGI layer (:mod:`router.app`) only moves bytes and
headers in and out of :meth:`Router.invoke` (on the event loop), :meth:`Router.feedback`,
:meth:`Router.models` and :meth:`Router.readiness`, and hands a reply's ``after`` to
``Router.shadow.launch``. Each job has its own module:

- :mod:`router.inference`  ``invoke``: plan, pin, arm, predict (inline or on a thread),
  failover to the baseline, one prediction record per answer (``Router`` is an ``Inference``)
- :mod:`router.pinning`    who may pin a version with ``x-model-version``
- :mod:`router.shadow`     mirrored predictions of the shadow version, after the reply
- :mod:`router.feedback`   delayed labels from label writers into the feedback store
- :mod:`router.request_ids`  signed request ids, checked when a label names one
- :mod:`router.views`      the ``GET /v1/models`` and ``GET /readyz`` bodies
- :mod:`router.reply`      ``Reply``, error replies, request ids
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from contract.clock import SYSTEM_CLOCK, Clock
from contract.plans import PlanSource
from contract.records import FeedbackSink, PredictionSink
from router.config import RouterConfig
from router.feedback import LabelPolicy, label_writer, store_feedback
from router.inference import Inference
from router.metrics import RouterMetrics
from router.plans import PlanPoller, PredictorLoader, RegistryLoader
from router.predlog import PredictionLogWriter
from router.request_ids import RequestIds, load_keys, new_key
from router.views import models_view, readiness_view

_log = logging.getLogger(__name__)


class Router(Inference):
    """The request path (:class:`~router.inference.Inference`) and the parts it runs on."""

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
        metrics = metrics if metrics is not None else RouterMetrics()
        super().__init__(
            config,
            poller=PlanPoller(plans, loader, config.environment, config.plan_poll_s, clock=clock),
            log=PredictionLogWriter(
                predictions,
                config.environment,
                batch_size=config.log_batch_size,
                flush_s=config.log_flush_s,
                queue_size=config.log_queue_size,
                on_drop=metrics.log_dropped.inc,
                on_write=metrics.log_written.inc,
                clock=clock,
            ),
            metrics=metrics,
            clock=clock,
        )
        self.feedback_sink = feedback
        self.label_policy = LabelPolicy(
            token_digests=config.label_token_sha256,
            allow_anonymous=config.allow_anonymous_labels,
            max_age_s=config.label_max_age_s,
            max_items=config.label_max_items,
            max_label_bytes=config.label_max_bytes,
            max_body_bytes=config.label_max_body_bytes,
        )
        keys = load_keys(config.request_id_key, config.request_id_key_file)
        if keys is None:
            _log.warning(
                "no ROLLOUT_REQUEST_ID_KEY(_FILE): request ids are signed with a random key of "
                "this process; labels for them are accepted only here, until it restarts"
            )
            keys = [new_key().encode()]
        self.request_ids = RequestIds(keys[0], clock, previous=keys[1:])
        self.metrics.watch_plans(self.poller.status)

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
        self._shutdown()
        self.log.close(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Write every prediction record queued so far (shutdown, tests)."""
        return self.log.flush(timeout)

    def launch(self, work: Callable[[], None]) -> bool:
        """Start background work (a shadow prediction) after a reply; False if too much waits.

        The same as ``self.shadow.launch``, which the ASGI layer calls directly.
        """
        return self.shadow.launch(work)

    # -- feedback --
    def label_writer(self, headers: Mapping[str, str]) -> str:
        """Who posts labels (401/403), checked before the body is read."""
        return label_writer(headers, self.label_policy)

    def feedback(self, body: bytes, content_type: str | None, writer: str) -> int:
        """Store ``writer``'s delayed labels, all or none; returns how many."""
        return store_feedback(
            self.feedback_sink,
            body,
            content_type,
            self.clock,
            writer=writer,
            ids=self.request_ids,
            policy=self.label_policy,
        )

    # -- status --
    def models(self) -> dict[str, Any]:
        """``GET /v1/models``: every model with a plan, its versions, weights and readiness."""
        return models_view(self.poller, self.config)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """``GET /readyz``: ready when every version of every plan is loaded and warmed."""
        return readiness_view(self.poller)
