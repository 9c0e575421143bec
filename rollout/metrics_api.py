"""``GET /metrics`` on the API: the store's metrics (:mod:`rollout.metrics`), for a scrape token.

Only a bearer token whose sha256 is ``ROLLOUT_METRICS_TOKEN_SHA256`` gets them (401 with a JSON
error otherwise: the API's users' tokens do not); with the variable unset the route answers 404
and says how to turn it on. The store's answer is cached for a second
(:class:`rollout.metrics_http.Cached`).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import generate_latest

from rollout.metrics_http import CONTENT_TYPE, store_registry
from rollout.settings import METRICS_TOKEN_ENV as TOKEN_ENV
from rollout.settings import scrape_token_digest
from rollout.tokens import digest as digest_of

if TYPE_CHECKING:
    from rollout.manager import Manager


def add_metrics_route(app: FastAPI, manager: Manager, digest: str | None) -> None:
    """``GET /metrics`` for a bearer token whose sha256 is ``digest`` (404 when None)."""
    registry = store_registry(manager)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if digest is None:
            message = f"metrics are off: set {TOKEN_ENV} to the sha256 of a scrape token"
            return JSONResponse({"error_code": "not_found", "message": message}, 404)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = digest_of(token.strip())
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, digest):
            message = f"authorization: expected 'Bearer <scrape token>' (its sha256 in {TOKEN_ENV})"
            return JSONResponse(
                {"error_code": "unauthenticated", "message": message},  # as the API's 401s
                401,
                headers={"www-authenticate": "Bearer"},
            )
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE)


__all__ = ["TOKEN_ENV", "add_metrics_route", "scrape_token_digest"]
