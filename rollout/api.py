"""The manager's HTTP API (FastAPI; OpenAPI at ``/openapi.json``, docs at ``/docs``, offline:
:mod:`rollout.swagger_ui`).

The same verbs as the CLI, on one :class:`~rollout.manager.Manager`::

    POST /v1/rollouts                         start  {model, candidate, environment, spec?}
    POST /v1/apply                            apply  {spec}  (idempotent)
    POST /v1/plan                             plan   {spec}  (changes nothing)
    GET  /v1/models/{m}/environments/{e}/status    status (?watch=true: NDJSON, one line per
                                                   change, until the rollout ends)
    POST /v1/models/{m}/environments/{e}/pause|resume|promote|approve|abort   {reason?}
    POST /v1/models/{m}/environments/{e}/rollback  {to_release?, reason?}
    GET  /v1/models/{m}/environments/{e}/history   release records, newest first
    GET  /v1/rollouts/{id}/report             the rollout, its events and its releases
    GET  /v1/rollouts/{id}/drift-report       its latest drift report (HTML; ?step=N: of step N)
    GET  /v1/rollouts/{id}/looks              every kept look's gate bounds (?step=N, from 1)
    GET  /v1/audit                            audit rows, newest first (?model, environment,
                                              identity, limit)
    GET  /v1/audit/verify                     walk the keyed audit chain (?head=HASH:COUNT, else
                                              the exported head file): ok, or the first bad row
    POST   /v1/tokens                         token create {identity, roles, environments?,
                                              expires} (admin): the token, shown once
    GET    /v1/tokens                         every token's id, identity, roles, state (admin)
    DELETE /v1/tokens/{id or identity}        revoke it, or all of that identity's (admin)
    GET  /healthz
    GET  /ui/ ...                             the web dashboard (:mod:`rollout.web`)

Every ``/v1`` call needs ``Authorization: Bearer <token>``; the token's sha256 (hex) must be one
of ``ROLLOUT_API_TOKENS`` (``identity[:role+role][@env+env]=sha256hex,...``, see
:mod:`rollout.auth`: roles default to ``viewer``, environments to all) or a good (not revoked,
not expired) token of the store (:mod:`rollout.tokens`, read on every request). The identity is the
actor recorded for the call, so "approved by someone other than who started it" holds through
the API. A call the token's roles or environments do not allow is refused (403) before it
changes anything. Separation of duties: where the environment requires an approval (prod by
default) only ``approver`` or ``admin`` may force a ``promote``, which skips the remaining
steps but still waits for an ``approve`` by someone other than who started the rollout
(:mod:`rollout.machine`).
Every mutating call (start, apply, the verbs on an environment, token create and revoke),
allowed or not, appends a row to the audit log (:mod:`rollout.store.audit`) with its
outcome: ``allowed``, ``denied`` (401/403) or ``failed`` (any other error).
Errors are JSON ``{"error_code", "message"}``, the status chosen by the error's type
(:func:`contract.errors.http_status`): 401 ``unauthenticated``, 403 ``forbidden`` (names the
identity, the verb, the environment and the roles that would do), 404 ``not_found``, 409
``state_conflict`` (not allowed in this state, or someone else acted first), 422
``invalid_spec`` / ``registry_error`` / ``invalid_request``, 503 ``unavailable``.

Limits (README, "Security"): a request body larger than ``ROLLOUT_API_MAX_BODY_BYTES``
(1 MiB by default) is refused with 413 ``body_too_large`` before it is read (by its
Content-Length, or once a chunked body passes the limit; :class:`BodyLimit`, outside everything
else). A body is parsed only after the token is known (401) and one of its roles may do the
verb in at least one of its environments (403); the environment named in the body is checked
after parsing. A body nested more than a few dozen levels deep is refused (422), and errors
quote at most a short excerpt of what was sent. A watch stream's ``interval_s`` must be in
0.1..30 (422 outside), lasts at most ``ROLLOUT_API_WATCH_MAX_S`` and runs on the event loop
(no thread sleeps for it); one identity may hold ``ROLLOUT_API_WATCH_STREAMS`` open at once
(429 ``too_many_streams`` beyond).

Serve with ``rollout api --port 8090`` (the manager loop runs separately: ``rollout manager``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar, get_args

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rollout import swagger_ui
from rollout.audited import Call, Denials, http_outcome, record, summary_status
from rollout.auth import GRANTS, ROLES, Token, authorize, non_production, parse_tokens
from rollout.declarative import apply, plan
from rollout.drift_report import stored_report
from rollout.errors import (
    Forbidden,
    NoSuchRollout,
    RolloutError,
    Unauthenticated,
    Unavailable,
    http_status,
)
from rollout.manager import Manager
from rollout.metrics_api import add_metrics_route
from rollout.spec import load_spec
from rollout.spec.document import MAX_DEPTH, depth_of, excerpt
from rollout.store.audit import Head
from rollout.store.records import RolloutRecord, json_safe
from rollout.store.tokens import TokenStore
from rollout.tokens import Authenticator, issue, revoke
from rollout.watch import (
    STREAM_MAX_INTERVAL_S,
    STREAM_MIN_INTERVAL_S,
    rollout_active,
    stream_changes,
)
from rollout.web import dashboard

log = logging.getLogger(__name__)

Verb = Literal["pause", "resume", "promote", "approve", "abort"]
VERBS: tuple[str, ...] = (*get_args(Verb), "start", "apply", "plan", "rollback")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


NAME_CHARS = 200  # model, candidate and environment names (they go into audit rows)
REASON_CHARS = 1000


class StartBody(_Body):
    model: str = Field(max_length=NAME_CHARS)
    candidate: str = Field(description="a version number or '@alias'", max_length=NAME_CHARS)
    environment: str = Field(max_length=NAME_CHARS)
    spec: dict[str, Any] | None = Field(default=None, description="rollout spec (as YAML maps)")


class SpecBody(_Body):
    spec: dict[str, Any]


class CommandBody(_Body):
    reason: str | None = Field(default=None, max_length=REASON_CHARS)


class TokenBody(_Body):
    identity: str = Field(max_length=255, description="who the token acts as")
    roles: list[str] = Field(min_length=1, max_length=5, description="e.g. ['scientist']")
    environments: list[str] | None = Field(
        default=None, max_length=64, description="where it may act (default: everywhere)"
    )
    expires: str = Field(max_length=16, description="lifetime: 30d, 12h, 90m, 2w or 'never'")


class RollbackBody(_Body):
    to_release: int | None = Field(default=None, description="release id to return to")
    reason: str | None = Field(default=None, max_length=REASON_CHARS)


Body = TypeVar("Body", bound=_Body)
APPROVERS = ("approver", "admin")  # who may force a promotion where an approval is required


class BodyTooLarge(Exception):
    """A request body passed the limit while it was being received."""


def _too_large(max_bytes: int) -> JSONResponse:
    return JSONResponse(
        {
            "error_code": "body_too_large",
            "message": f"the request body may be at most {max_bytes} bytes",
        },
        413,
    )


class BodyLimit:
    """Pure ASGI middleware: refuse a body over ``max_bytes`` before anything reads it.

    A Content-Length over the limit is answered at once (the body is never received); a body
    without one (chunked) is counted as it arrives and refused once it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                declared = int(value) if value.strip().isdigit() else -1
                if declared < 0:
                    response = JSONResponse(
                        {
                            "error_code": "invalid_request",
                            "message": "Content-Length: expected a number of bytes",
                        },
                        400,
                    )
                    await response(scope, receive, send)
                    return
                if declared > self.max_bytes:
                    await _too_large(self.max_bytes)(scope, receive, send)
                    return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if not started:
                await _too_large(self.max_bytes)(scope, receive, send)


class _Stream(StreamingResponse):
    """A streaming response that calls ``release`` once it is over, however it ended."""

    def __init__(self, content: Any, release: Callable[[], None]) -> None:
        super().__init__(content, media_type="application/x-ndjson")
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def _body_schema(model: type[_Body], required: bool) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a body the handler parses itself (after the token)."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


async def _parse_body(request: Request, model: type[Body], required: bool) -> Body | None:
    """The JSON body as ``model``; 422 ``invalid_request`` naming the field otherwise."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise RequestValidationError([{"loc": ("body",), "msg": "a JSON body is required"}])
        return None
    try:
        data = json.loads(raw)
    except RecursionError:
        data = None
        problem = f"nested more than {MAX_DEPTH} levels deep"
    except (ValueError, UnicodeDecodeError) as exc:
        data = None
        problem = f"expected a JSON object: {excerpt(str(exc))[1:-1]}"
    else:
        problem = (
            f"nested more than {MAX_DEPTH} levels deep"
            if depth_of(data, MAX_DEPTH + 2) > MAX_DEPTH + 2
            else ""
        )
    if problem:
        raise RequestValidationError([{"loc": ("body",), "msg": problem}])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {"loc": ("body", *error["loc"]), "msg": error["msg"], "input": error.get("input")}
                for error in exc.errors()
            ]
        ) from None


_ENV_VERB = re.compile(
    r"^/v1/models/(?P<model>[^/]+)/environments/(?P<env>[^/]+)/(?P<verb>[^/]+)/?$"
)


def _mutation(method: str, path: str) -> Call | None:
    """The audited call this request is, or None (reads, ``/v1/plan``, unknown paths)."""
    if path.rstrip("/") == "/v1/tokens" and method == "POST":
        return Call("token_create")
    if path.startswith("/v1/tokens/") and method == "DELETE":
        return Call("token_revoke")
    if method != "POST":
        return None
    if path.rstrip("/") == "/v1/rollouts":
        return Call("start")
    if path.rstrip("/") == "/v1/apply":
        return Call("apply")
    found = _ENV_VERB.match(path)
    if found is None:
        return None
    return Call(found["verb"], found["model"], found["env"])


def _call(request: Request) -> Call | None:
    call = getattr(request.state, "audit", None)
    return call if isinstance(call, Call) else None


def _note(request: Request, **detail: Any) -> None:
    """Add to the detail of this request's audit row (when it has one)."""
    call = _call(request)
    if call is not None:
        call.detail.update(detail)


_bearer = HTTPBearer(auto_error=False)


def _token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Token:
    """The token that was sent (its identity, roles and environments); 401 otherwise."""
    if credentials is None:
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    authenticator: Authenticator = request.app.state.authenticator
    token = authenticator.identify(credentials.credentials)
    if token is None:
        raise Unauthenticated("unknown, expired or revoked token")
    call = _call(request)
    if call is not None:
        call.identity = token.identity
        if token.token_id is not None:
            call.detail["token_id"] = token.token_id
    return token


Caller = Annotated[Token, Depends(_token)]


async def _checked_body(
    request: Request,
    token: Token,
    model: type[Body],
    verb: str | None,
    *,
    required: bool,
    in_path: bool,
) -> Body | None:
    """The token first (the dependency), then the role (``verb`` in some environment of the
    token, or with ``in_path`` in the path's environment; verb None: the path's verb), and
    only then the body."""
    params = request.path_params
    name = verb if verb is not None else params.get("verb", "")
    if name not in VERBS:
        raise RequestValidationError(
            [{"loc": ("path", "verb"), "msg": f"expected one of {', '.join(get_args(Verb))}"}]
        )
    if in_path:
        request.app.state.allow(request, token, name, params["environment"])
    else:
        request.app.state.allow_somewhere(request, token, name)
    return await _parse_body(request, model, required)


async def _start_body(request: Request, token: Caller) -> StartBody:
    body = await _checked_body(request, token, StartBody, "start", required=True, in_path=False)
    assert body is not None
    return body


async def _apply_body(request: Request, token: Caller) -> SpecBody:
    body = await _checked_body(request, token, SpecBody, "apply", required=True, in_path=False)
    assert body is not None
    return body


async def _plan_body(request: Request, token: Caller) -> SpecBody:
    body = await _checked_body(request, token, SpecBody, "plan", required=True, in_path=False)
    assert body is not None
    return body


async def _command_body(request: Request, token: Caller) -> CommandBody | None:
    return await _checked_body(request, token, CommandBody, None, required=False, in_path=True)


async def _rollback_body(request: Request, token: Caller) -> RollbackBody | None:
    return await _checked_body(
        request, token, RollbackBody, "rollback", required=False, in_path=True
    )


StartParsed = Annotated[StartBody, Depends(_start_body)]
ApplyParsed = Annotated[SpecBody, Depends(_apply_body)]
PlanParsed = Annotated[SpecBody, Depends(_plan_body)]
CommandParsed = Annotated[CommandBody | None, Depends(_command_body)]
RollbackParsed = Annotated[RollbackBody | None, Depends(_rollback_body)]


async def _token_body(request: Request, token: Caller) -> TokenBody:
    """Only an unlimited admin gets as far as the body of ``POST /v1/tokens``."""
    request.app.state.allow(request, token, "token_create", None)
    body = await _parse_body(request, TokenBody, True)
    assert body is not None
    return body


TokenParsed = Annotated[TokenBody, Depends(_token_body)]


def create_app(
    manager: Manager,
    tokens: Mapping[str, Token | str] | None = None,
    token_store: TokenStore | None = None,
) -> FastAPI:
    """The API over ``manager``; ``tokens`` maps sha256 hex → :class:`~rollout.auth.Token`
    (or an identity, which gets the default role ``viewer``), else the settings'
    ``ROLLOUT_API_TOKENS``; and the store's tokens (:mod:`rollout.tokens`)."""
    known = (
        {digest: Token(t) if isinstance(t, str) else t for digest, t in tokens.items()}
        if tokens is not None
        else parse_tokens(manager.settings.api_tokens)
    )
    denials = Denials()

    def write_due(due: list[tuple[Call, int]]) -> None:
        for summary, count in due:
            record(manager.audit, summary, "denied", summary_status(summary), count=count)

    def seal() -> None:
        """Seal rows from before the key, if any (the next append would, too)."""
        try:
            manager.audit.seal()
        except Exception:  # the API still serves; the manager loop seals before its export
            log.exception("could not seal the unkeyed audit rows at start")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(seal)
        yield
        await run_in_threadpool(write_due, denials.due(0.0, all_of_them=True))  # counted ones

    app = FastAPI(
        title="mlrollout manager",
        version="1",
        description="Start, watch, approve and roll back model rollouts (same verbs as the CLI).",
        lifespan=lifespan,
        docs_url=None,  # /docs from this package, not a CDN (rollout.swagger_ui)
        redoc_url=None,
    )
    swagger_ui.install(app)
    app.state.tokens = known
    store = token_store if token_store is not None else TokenStore(manager.engine)
    app.state.authenticator = Authenticator(known, store)
    app.state.denials = denials
    settings = manager.settings
    open_streams: dict[str, int] = {}  # identity → open watch streams

    def allow(request: Request, token: Token, verb: str, environment: str | None) -> None:
        """403 (before anything changes) unless ``token`` may do ``verb`` in ``environment``;
        422 ``unknown_environment`` when it is not a configured one."""
        call = _call(request)
        if call is not None:
            call.environment = environment if environment is not None else call.environment
        if environment is not None:
            manager.environments.check(environment)
        if (
            verb == "promote"
            and environment is not None
            and token.may_see(environment)
            and manager.environments.get(environment).approval_required
        ):
            # separation of duties: a forced promotion where an approval is required is the
            # approver's (or an admin's) to force; it still waits for the approval
            if any(role in APPROVERS for role in token.roles):
                return
            _note(request, needs=list(APPROVERS), roles=list(token.roles))
            raise Forbidden(
                f"{token.identity} may not promote in {environment}: it requires an approval, "
                f"so only role {' or '.join(APPROVERS)} may force a promotion there; has "
                f"{'+'.join(token.roles)}"
            )
        denial = authorize(token, verb, environment, non_production(manager.environment_names))
        if denial is not None:
            _note(request, needs=list(denial.needs), roles=list(token.roles))
            raise Forbidden(denial.message)

    def allow_somewhere(request: Request, token: Token, verb: str) -> None:
        """403 before the body is read unless ``token`` may do ``verb`` in at least one
        environment it holds (the environment the body names is checked after parsing)."""
        places = token.environments or manager.environment_names
        production = non_production(manager.environment_names)
        if any(authorize(token, verb, env, production) is None for env in places):
            return
        needs = [role for role in ROLES if verb in GRANTS[role]]
        _note(request, needs=needs, roles=list(token.roles))
        raise Forbidden(
            f"{token.identity} may not {verb} in any of its environments: needs role "
            f"{' or '.join(needs)}, has {'+'.join(token.roles)}"
        )

    def readable_rollout(request: Request, token: Token, rollout_id: str) -> RolloutRecord:
        """The rollout ``rollout_id`` if ``token`` may read its report. A rollout in an
        environment the token is not limited to is answered as an unknown id (404, the same
        message), so such a token cannot tell which ids exist elsewhere."""
        record = manager.rollout(rollout_id)
        if not token.may_see(record.environment):
            raise NoSuchRollout(f"no rollout with id {rollout_id!r}")
        allow(request, token, "report", record.environment)
        return record

    app.state.allow = allow
    app.state.readable_rollout = readable_rollout
    app.state.allow_somewhere = allow_somewhere

    @app.middleware("http")
    async def _audited(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        call = _mutation(request.method, request.url.path)
        if call is None:
            due = denials.due(manager.clock.time())
            if due:
                await run_in_threadpool(write_due, due)
            return await call_next(request)
        call.address = request.client.host if request.client is not None else None
        call.user_agent = request.headers.get("user-agent", "")[:255] or None
        call.path = request.url.path[:255]
        request.state.audit = call
        try:
            response = await call_next(request)
        except Exception:
            await run_in_threadpool(record, manager.audit, call, "failed", 500)
            raise
        status = response.status_code
        outcome = http_outcome(status)
        if outcome == "redirected":  # nothing happened; the call it redirects to is audited
            return response
        if outcome == "denied":
            admitted, due = denials.admit(call, status, manager.clock.time())
            if due:
                await run_in_threadpool(write_due, due)
            if not admitted:  # counted into a summary row when its window closes
                return response
        await run_in_threadpool(record, manager.audit, call, outcome, status)
        return response

    def _error(request: Request, status: int, code: str, message: str) -> JSONResponse:
        _note(request, error_code=code, message=message)
        return JSONResponse({"error_code": code, "message": message}, status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {excerpt(error['msg'], 300)[1:-1]}"
            for error in exc.errors()[:20]
        )
        return _error(request, 422, "invalid_request", problems)

    @app.exception_handler(BodyTooLarge)
    async def _body_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return _too_large(settings.api_max_body_bytes)

    @app.exception_handler(RolloutError)
    async def _rollout_error(request: Request, exc: RolloutError) -> JSONResponse:
        status, code = http_status(exc)
        return _error(request, status, code, str(exc))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/rollouts", status_code=201, openapi_extra=_body_schema(StartBody, True))
    def start(request: Request, parsed: StartParsed, token: Caller) -> dict[str, Any]:
        body = parsed
        call = _call(request)
        if call is not None:
            call.model = body.model
        _note(request, candidate=body.candidate)
        allow(request, token, "start", body.environment)
        spec = load_spec(body.spec) if body.spec is not None else None
        rollout_id = manager.start(
            body.model, body.candidate, body.environment, spec, token.identity
        )
        record = manager.rollout(rollout_id)
        _note(request, rollout_id=rollout_id, state=record.state)
        return _out(record.to_dict())

    @app.post("/v1/apply", openapi_extra=_body_schema(SpecBody, True))
    def apply_spec(request: Request, body: ApplyParsed, token: Caller) -> dict[str, Any]:
        spec = load_spec(body.spec)
        call = _call(request)
        if call is not None:
            call.model = spec.model
        _note(request, candidate=spec.candidate)
        allow(request, token, "apply", spec.environment)
        result = apply(manager, spec, token.identity)
        _note(request, action=result.action, rollout_id=result.rollout_id)
        return _out(result.to_dict())

    @app.post("/v1/plan", openapi_extra=_body_schema(SpecBody, True))
    def plan_spec(request: Request, body: PlanParsed, token: Caller) -> dict[str, Any]:
        spec = load_spec(body.spec)
        allow(request, token, "plan", spec.environment)
        return _out(plan(manager, spec).to_dict())

    @app.get(
        "/v1/models/{model}/environments/{environment}/status",
        response_model=None,
        responses={
            200: {
                "description": "the status; with watch=true an NDJSON stream, one status a line",
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            }
        },
    )
    async def status(
        request: Request,
        model: str,
        environment: str,
        token: Caller,
        watch: bool = False,
        interval_s: Annotated[
            float,
            Query(ge=STREAM_MIN_INTERVAL_S, le=STREAM_MAX_INTERVAL_S, allow_inf_nan=False),
        ] = 0.5,
    ) -> dict[str, Any] | Response:
        allow(request, token, "status", environment)
        if not watch:
            current = await run_in_threadpool(manager.status, model, environment)
            return _out(current.to_dict())
        identity = token.identity
        if open_streams.get(identity, 0) >= settings.api_watch_streams:
            return _error(
                request,
                429,
                "too_many_streams",
                f"{identity} already has {settings.api_watch_streams} watch stream(s) open "
                "(ROLLOUT_API_WATCH_STREAMS); close one first",
            )
        open_streams[identity] = open_streams.get(identity, 0) + 1

        def release() -> None:
            left = open_streams.get(identity, 1) - 1
            if left > 0:
                open_streams[identity] = left
            else:
                open_streams.pop(identity, None)

        lines = stream_changes(
            lambda: run_in_threadpool(manager.status, model, environment),
            lambda status: _line(status.to_dict()),
            rollout_active,
            interval_s,
            settings.api_watch_max_s,
        )
        return _Stream(lines, release)

    @app.post(
        "/v1/models/{model}/environments/{environment}/rollback",
        openapi_extra=_body_schema(RollbackBody, False),
    )
    def rollback(
        request: Request,
        model: str,
        environment: str,
        token: Caller,
        body: RollbackParsed,
    ) -> dict[str, Any]:
        given = body or RollbackBody()
        _note(request, to_release=given.to_release, reason=given.reason)
        release = manager.rollback(
            model, environment, token.identity, given.to_release, given.reason
        )
        _note(request, release_id=release.id, version=release.version)
        return _out(release.to_dict())

    # After the fixed paths (rollback) so those are not taken for a verb.
    @app.post(
        "/v1/models/{model}/environments/{environment}/{verb}",
        openapi_extra=_body_schema(CommandBody, False),
    )
    def command(
        request: Request,
        model: str,
        environment: str,
        verb: Verb,
        token: Caller,
        body: CommandParsed,
    ) -> dict[str, Any]:
        reason = body.reason if body is not None else None
        _note(request, reason=reason)
        if verb == "abort":
            record = manager.abort(model, environment, token.identity, reason)
        else:
            record = getattr(manager, verb)(model, environment, token.identity)
        _note(request, rollout_id=record.id, state=record.state)
        return _out(record.to_dict())

    @app.get("/v1/models/{model}/environments/{environment}/history")
    def history(request: Request, model: str, environment: str, token: Caller) -> list[Any]:
        allow(request, token, "history", environment)
        return [_out(release.to_dict()) for release in manager.history(model, environment)]

    @app.get("/v1/rollouts/{rollout_id}/report")
    def report(request: Request, rollout_id: str, token: Caller) -> dict[str, Any]:
        readable_rollout(request, token, rollout_id)
        return _out(manager.report(rollout_id))

    @app.get("/v1/rollouts/{rollout_id}/drift-report", response_class=HTMLResponse)
    def drift_report(
        request: Request,
        rollout_id: str,
        token: Caller,
        step: Annotated[int | None, Query(ge=1, le=1_000)] = None,
    ) -> FileResponse:
        record = readable_rollout(request, token, rollout_id)
        path = stored_report(manager.evidence.reports, record.id, step)
        return FileResponse(path, media_type="text/html; charset=utf-8")

    @app.get("/v1/rollouts/{rollout_id}/looks")
    def looks(
        request: Request,
        rollout_id: str,
        token: Caller,
        step: Annotated[int | None, Query(ge=1, le=1_000)] = None,
    ) -> dict[str, Any]:
        readable_rollout(request, token, rollout_id)
        kept = manager.looks(rollout_id, step - 1 if step is not None else None)
        return _out({"rollout_id": rollout_id, "looks": [look.to_dict() for look in kept]})

    @app.get("/v1/audit")
    def audit_rows(
        request: Request,
        token: Caller,
        model: str | None = None,
        environment: str | None = None,
        identity: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[Any]:
        allow(request, token, "audit", environment)
        rows = manager.audit.list(
            model=model,
            environment=environment,
            identity=identity,
            environments=token.environments,  # a token limited to some sees only theirs
            limit=limit,
        )
        return [_out(row.to_dict()) for row in rows]

    @app.get("/v1/audit/verify")
    def audit_verify(
        request: Request,
        token: Caller,
        head: Annotated[
            str | None,
            Query(
                pattern=r"^[0-9a-f]{64}:[0-9]{1,12}$",
                description="the last exported head, HASH:COUNT (default: the manager's head "
                "file, when this process can read it)",
            ),
        ] = None,
    ) -> dict[str, Any]:
        allow(request, token, "audit", None)
        if head is not None:
            against: Head | None = Head.parse(head)
        else:
            path = manager.settings.audit_head_path
            try:
                against = Head.read(path) if path.exists() else None
            except ValueError as exc:
                raise Unavailable(f"the exported audit head is unreadable: {exc}") from exc
        return _out(manager.audit.verify(against).to_dict())

    @app.post("/v1/tokens", status_code=201, openapi_extra=_body_schema(TokenBody, True))
    def token_create(request: Request, body: TokenParsed, token: Caller) -> dict[str, Any]:
        _note(
            request,
            token_identity=body.identity,
            token_roles=body.roles,
            token_environments=body.environments,
        )
        allow(request, token, "token_create", None)
        for index, name in enumerate(body.environments or ()):
            manager.environments.check(name, f"environments[{index}]")  # 422, not a dead token
        issued = issue(
            store, body.identity, body.roles, body.environments, body.expires, token.identity
        )
        _note(request, created_token_id=issued.stored.id, expires_at=issued.stored.expires_at)
        return _out({**issued.stored.to_dict(store.clock.time()), "token": issued.token})

    @app.get("/v1/tokens")
    def token_list(request: Request, token: Caller) -> list[Any]:
        allow(request, token, "token_list", None)
        now = store.clock.time()
        return [_out(stored.to_dict(now)) for stored in store.list()]

    @app.delete("/v1/tokens/{id_or_identity}")
    def token_revoke(request: Request, id_or_identity: str, token: Caller) -> dict[str, Any]:
        _note(request, target=id_or_identity)
        allow(request, token, "token_revoke", None)
        revoked = revoke(store, id_or_identity, token.identity)
        _note(request, revoked=[stored.id for stored in revoked])
        now = store.clock.time()
        return {"revoked": [_out(stored.to_dict(now)) for stored in revoked]}

    add_metrics_route(app, manager, settings.metrics_token_sha256)
    app.include_router(dashboard(manager))  # the web dashboard: /ui/..., / redirects there
    # Outside everything else (added last): nothing reads a body over the limit.
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    return app


def _line(value: Mapping[str, Any]) -> str:
    """One NDJSON line (keys sorted, NaN/inf as null)."""
    return json.dumps(json_safe(value), sort_keys=True, default=str) + "\n"


def _out(value: Mapping[str, Any]) -> dict[str, Any]:
    safe = json_safe(value)
    assert isinstance(safe, dict)
    return safe
