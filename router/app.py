"""The router's HTTP face (the README's "Router" section is its contract).

=====================================  =======================================================
``POST /v1/models/{model}/invocations``  MLflow scoring protocol for ``model``
``POST /invocations``                    the same for the default model (``mlflow models serve``)
``POST /v1/feedback``                    a label writer's delayed labels → 202
                                         (:mod:`router.feedback`)
``GET /v1/models``                       models, versions, weights, generations, readiness
``GET /healthz``                         the process is up
``GET /readyz``                          every version of every plan loaded and warmed, or 503
``GET /ping``, ``GET /health``           as ``mlflow models serve``: 200 and a newline when
                                         ready, else 404 (existing probes keep working)
``GET /version``                         the MLflow version serving, as ``mlflow models serve``
``GET /metrics``                         Prometheus text

``GET /openapi.json``                    this table as OpenAPI (:mod:`router.openapi`)
=====================================  =======================================================

Every error is JSON ``{"error_code": ..., "message": ...}``, never a dropped connection: a path
holding a control character or bytes that are not UTF-8 (``%00``, ``%0d%0a``, ``%ff``) is a 400
``invalid_path`` before any route; a 5xx carries an incident id, its details are only logged
(:mod:`router.incidents`). The lifespan starts the plan poller and the prediction-log writer,
and on shutdown stops the poller and flushes the log.

The two invocation routes are the hot path, so they do not go through FastAPI's routing and
request objects: :class:`Invocations`, a plain ASGI middleware, answers them first. It reads the
body with a limit (``max_body_bytes`` → 413), hands it to :meth:`router.service.Router.invoke`
on the event loop (which predicts inline only when a prediction is known to take well under a
millisecond, and on a thread with a timeout otherwise), sends the reply, and only then starts a
shadow prediction if the plan mirrors this request. Everything else is FastAPI.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from contract.names import REQUEST_ID_HEADER
from router.config import RouterConfig
from router.errors import MalformedRequest, PayloadTooLarge, RouterError
from router.incidents import reply_json, unexpected
from router.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from router.openapi import document
from router.reply import CLIENT_REQUEST_ID_HEADER, Reply, client_request_id
from router.service import Router

_log = logging.getLogger(__name__)
MLFLOW_VERSION = importlib.metadata.version("mlflow")  # what /version answers, as MLflow does
# Control characters, and U+FFFD: what uvicorn decodes a percent-escape that is not UTF-8 to.
_BAD_PATH = re.compile("[\x00-\x1f\x7f-\x9f\ufffd]")


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
        openapi_url="/openapi.json",
    )
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
    app.state.router = core
    limit = config.max_body_bytes

    @app.exception_handler(RouterError)
    async def _router_error(request: Request, exc: RouterError) -> Response:
        return JSONResponse(reply_json(exc, request.url.path), status_code=exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse({"error_code": code, "message": message}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return JSONResponse(unexpected(exc, request.url.path), status_code=500)

    app.add_middleware(Invocations, core=core, limit=limit)

    @app.post("/v1/feedback", status_code=202)
    async def feedback(request: Request) -> Response:
        writer = core.label_writer(request.headers)  # 401/403 before the body is read
        body = await read_body(
            request, core.label_policy.max_body_bytes, "ROLLOUT_LABEL_MAX_BODY_BYTES"
        )
        content_type = request.headers.get("content-type")
        n = await run_in_threadpool(core.feedback, body, content_type, writer)
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

    async def ping() -> Response:
        ready, _ = core.readiness()
        return Response("\n", status_code=200 if ready else 404, media_type="application/json")

    app.get("/ping")(ping)
    app.get("/health")(ping)

    @app.get("/version")
    async def version() -> Response:
        return Response(MLFLOW_VERSION, media_type="application/json")

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(core.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    return app


async def read_body(request: Request, limit: int, setting: str = "ROLLOUT_MAX_BODY_BYTES") -> bytes:
    """The request body, refusing (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"the body is {int(declared)} bytes; this router accepts at most {limit} ({setting})"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the body exceeds {limit} bytes, the most this router accepts ({setting})"
            )
        chunks.append(chunk)
    return b"".join(chunks)


_PREFIX = "/v1/models/"
_SUFFIX = "/invocations"


def invocation_model(path: str) -> str | bool | None:
    """``None`` for ``/invocations``, the model for ``/v1/models/{model}/invocations``, else
    False (not an invocation route)."""
    if path == _SUFFIX:
        return None
    if path.startswith(_PREFIX) and path.endswith(_SUFFIX):
        model = path[len(_PREFIX) : -len(_SUFFIX)]
        if model and "/" not in model:
            return model
    return False


class Invocations:
    """ASGI middleware answering ``POST`` to the invocation routes without FastAPI."""

    def __init__(self, app: ASGIApp, core: Router, limit: int) -> None:
        self.app = app
        self.core = core
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if _BAD_PATH.search(path) is not None:
                await self.bad_path(path, send)
                return
            model = invocation_model(path)
            if model is not False:
                assert not isinstance(model, bool)
                if scope["method"] == "POST":
                    await self.invoke(scope, receive, send, model)
                else:
                    await self.not_allowed(scope, send)
                return
        await self.app(scope, receive, send)

    async def bad_path(self, path: str, send: Send) -> None:
        shown = path.encode("unicode_escape").decode("ascii")
        error = MalformedRequest(
            f"the path {shown[:80]!r} holds a control character or a percent-escape that is not "
            "UTF-8; paths are /v1/models/{model}/invocations, /invocations, /v1/feedback, ...",
            error_code="invalid_path",
        )
        await _send(send, Reply(400, json.dumps(error.to_json()).encode()))

    async def not_allowed(self, scope: Scope, send: Send) -> None:
        message = f"{scope['method']} {scope['path']}: Method Not Allowed; use POST"
        body = json.dumps({"error_code": "method_not_allowed", "message": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"allow", b"POST"),
        ]
        await send({"type": "http.response.start", "status": 405, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def invoke(self, scope: Scope, receive: Receive, send: Send, model: str | None) -> None:
        started = time.perf_counter()
        core = self.core
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = core.request_ids.issue()
        client_id: str | None = None
        try:
            client_id = client_request_id(headers)
            body = await self.read_body(headers, receive)
        except RouterError as exc:
            core.metrics.observe("", "", "", exc.status_code, time.perf_counter() - started)
            reply_headers = {REQUEST_ID_HEADER: request_id}
            reply = Reply(exc.status_code, json.dumps(reply_json(exc)).encode(), reply_headers)
        else:
            try:
                reply = await core.invoke(
                    model,
                    body,
                    headers.get("content-type"),
                    headers,
                    request_id=request_id,
                    started=started,
                )
            except Exception as exc:  # a bug in the router: still a JSON error
                body_out = unexpected(exc, scope["path"])
                reply = Reply(500, json.dumps(body_out).encode(), {REQUEST_ID_HEADER: request_id})
        await _send(send, reply, client_id)
        if reply.after is not None:
            core.shadow.launch(reply.after)

    async def read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        limit = self.limit
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(
                f"the body is {int(declared)} bytes; this router accepts at most {limit} "
                "(ROLLOUT_MAX_BODY_BYTES)"
            )
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False) and len(body) <= limit:
            return body
        chunks = [body]
        size = len(body)
        while message.get("more_body", False):
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                break
            chunks.append(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the body exceeds {limit} bytes, the most this router accepts "
                "(ROLLOUT_MAX_BODY_BYTES)"
            )
        return b"".join(chunks)


async def _send(send: Send, reply: Reply, client_id: str | None = None) -> None:
    raw = [
        (b"content-type", reply.media_type.encode()),
        (b"content-length", str(len(reply.body)).encode()),
    ]
    raw.extend((k.encode("latin-1"), _header_value(v)) for k, v in reply.headers.items())
    if client_id is not None:
        raw.append((CLIENT_REQUEST_ID_HEADER.encode(), _header_value(client_id)))
    await send({"type": "http.response.start", "status": reply.status_code, "headers": raw})
    await send({"type": "http.response.body", "body": reply.body})


def _header_value(value: str) -> bytes:
    """``value`` as a header's bytes: Latin-1 as it is, else percent-encoded UTF-8 (a model
    name from the path may hold any character; a header cannot)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return quote(value, safe="").encode("ascii")
