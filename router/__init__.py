"""The router: serves MLflow model versions as the traffic plans say, and records what it served.

It never decides anything about rollouts (docs/architecture.md): it reads the plans the
manager writes, splits traffic between the baseline and the canary, serves the MLflow scoring
protocol, and logs one prediction record per request.

- :mod:`router.config`     ``RouterConfig`` and ``from_env``
- :mod:`router.app`        ``create_app(config)``: the app (the HTTP contract; ASGI hot path)
- :mod:`router.service`    ``Router``: routing, logging and status, without HTTP
- :mod:`router.inference`  the request path: plan, pin, arm, predict, failover, record
- :mod:`router.pinning`    who may pin a version (``x-model-version``, bearer token)
- :mod:`router.shadow`     mirrored predictions of the shadow version, after the reply
- :mod:`router.feedback`   delayed labels from label writers (bearer token), first write wins
- :mod:`router.request_ids`  request ids: random, dated, MAC-signed, checked without the store
- :mod:`router.views`      the ``GET /v1/models`` and ``GET /readyz`` bodies
- :mod:`router.reply`      ``Reply``, error replies, the caller's own ``x-request-id``
- :mod:`router.payload`    the scoring request body, parsed once
- :mod:`router.schema`     a version's signature, checked without pandas
- :mod:`router.predictor`  one loaded version: check, predict, serialize as MLflow does
- :mod:`router.fastpath`   the numpy road: scikit-learn versions predicted without pandas
- :mod:`router.batching`   adaptive micro-batching of concurrent requests for one version
- :mod:`router.split`      the arm of a request (sticky, monotone)
- :mod:`router.plans`      the plan poller (apply whole or not at all)
- :mod:`router.predlog`    the prediction log writer (batched, off the request path)
- :mod:`contract.sql.predictions`   prediction records into the store's table via the DB-API driver
- :mod:`router.metrics`    Prometheus metrics per app
- :mod:`router.server`     ``serve`` and ``main`` (``python -m router``)
- :mod:`router.errors`     the named errors and their HTTP statuses
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router.app import create_app
    from router.config import RouterConfig

__all__ = ["RouterConfig", "create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing a light module (router.split, router.config) does not load MLflow.
    if name == "create_app":
        from router.app import create_app

        return create_app
    if name == "RouterConfig":
        from router.config import RouterConfig

        return RouterConfig
    raise AttributeError(f"module 'router' has no attribute {name!r}")
