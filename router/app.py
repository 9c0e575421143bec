"""The router's HTTP face (see DESIGN.md, "Router (contract)").

=====================================  =======================================================
``POST /v1/models/{model}/invocations``  MLflow scoring protocol for ``model``
``POST /invocations``                    the same for the default model (``mlflow models serve``)
``POST /v1/feedback``                    delayed labels, one or a list → 202
``GET /v1/models``                       models, versions, weights, generations, readiness
``GET /healthz``                         the process is up
``GET /readyz``                          every version of every plan loaded and warmed, or 503
``GET /metrics``                         Prometheus text
=====================================  =======================================================

Every error is JSON ``{"error_code": ..., "message": ...}``. The body is read with a limit
(``max_body_bytes`` → 413), and parsing plus prediction run on a worker thread so the event loop
only moves bytes. The lifespan starts the plan poller and the prediction-log writer, and on
shutdown stops the poller and flushes the log.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from router.config import RouterConfig
from router.errors import PayloadTooLarge, RouterError
from router.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from router.service import REQUEST_ID_HEADER, Reply, Router, request_id_from


def create_app(config: RouterConfig, router: Router | None = None) -> FastAPI:
    """The router app for ``config``; ``router`` replaces the one built from it (tests)."""
    core = router if router is not None else Router.from_config(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        core.start()
        try:
            yield
        finally:
            await run_in_threadpool(core.stop)

    app = FastAPI(
        title="rollout router",
        summary="Serves MLflow model versions by traffic plan and records what it served.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.router = core
    limit = config.max_body_bytes

    @app.exception_handler(RouterError)
    async def _router_error(request: Request, exc: RouterError) -> Response:
        return JSONResponse(exc.to_json(), status_code=exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse({"error_code": code, "message": message}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        message = f"unexpected {type(exc).__name__} in the router: {exc}"
        return JSONResponse({"error_code": "internal_error", "message": message}, status_code=500)

    async def invoke(request: Request, model: str | None) -> Response:
        started = time.perf_counter()
        try:
            request_id = request_id_from(request.headers)
            body = await read_body(request, limit)
        except RouterError as exc:
            core.metrics.observe("", "", "", exc.status_code, time.perf_counter() - started)
            headers = {}
            if request.headers.get(REQUEST_ID_HEADER):
                headers[REQUEST_ID_HEADER] = request.headers[REQUEST_ID_HEADER][:64]
            return JSONResponse(exc.to_json(), status_code=exc.status_code, headers=headers)
        reply = await run_in_threadpool(
            core.invoke,
            model,
            body,
            request.headers.get("content-type"),
            request.headers,
            request_id=request_id,
            started=started,
        )
        return to_response(reply)

    @app.post("/v1/models/{model}/invocations")
    async def invocations_of(model: str, request: Request) -> Response:
        return await invoke(request, model)

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        return await invoke(request, None)

    @app.post("/v1/feedback", status_code=202)
    async def feedback(request: Request) -> Response:
        body = await read_body(request, limit)
        n = await run_in_threadpool(core.feedback, body, request.headers.get("content-type"))
        return JSONResponse({"accepted": n}, status_code=202)

    @app.get("/v1/models")
    async def models() -> Response:
        return JSONResponse(core.models())

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        ready, body = core.readiness()
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(core.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"the body is {int(declared)} bytes; this router accepts at most {limit} "
            "(ROLLOUT_MAX_BODY_BYTES)"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the body exceeds {limit} bytes, the most this router accepts "
                "(ROLLOUT_MAX_BODY_BYTES)"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def to_response(reply: Reply) -> Response:
    return Response(
        content=reply.body,
        status_code=reply.status_code,
        headers=reply.headers,
        media_type=reply.media_type,
    )
