"""The manager's HTTP API (FastAPI; OpenAPI at ``/openapi.json``, docs at ``/docs``).

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
    GET  /healthz

Every ``/v1`` call needs ``Authorization: Bearer <token>``; the token's sha256 (hex) must be one
of ``ROLLOUT_API_TOKENS`` (``identity=sha256hex,identity=sha256hex``). The identity is the actor
recorded for the call, so "approved by someone other than who started it" holds through the API.
Errors are JSON ``{"error_code", "message"}``: 401 ``unauthenticated``, 404 ``not_found``,
409 ``state_conflict`` (not allowed in this state, or someone else acted first), 422
``invalid_spec`` / ``registry_error``.

Serve with ``rollout api --port 8090`` (the manager loop runs separately: ``rollout manager``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from rollout.declarative import apply, plan
from rollout.errors import ConflictError, RegistryError, RolloutError, SpecError, StateError
from rollout.manager import Manager
from rollout.spec import load_spec
from rollout.store.records import json_safe

Verb = Literal["pause", "resume", "promote", "approve", "abort"]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartBody(_Body):
    model: str
    candidate: str = Field(description="a version number or '@alias'")
    environment: str
    spec: dict[str, Any] | None = Field(default=None, description="rollout spec (as YAML maps)")


class SpecBody(_Body):
    spec: dict[str, Any]


class CommandBody(_Body):
    reason: str | None = None


class RollbackBody(_Body):
    to_release: int | None = Field(default=None, description="release id to return to")
    reason: str | None = None


def parse_tokens(text: str) -> dict[str, str]:
    """``identity=sha256hex,...`` → {sha256hex: identity}."""
    tokens: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        identity, sep, digest = item.partition("=")
        if not sep or len(digest) != 64 or not identity:
            raise ValueError(
                f"ROLLOUT_API_TOKENS: expected 'identity=<sha256 hex of the token>', got {item!r}"
            )
        tokens[digest.lower()] = identity
    return tokens


_bearer = HTTPBearer(auto_error=False)


def _identity(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The identity whose token was sent; 401 otherwise."""
    if credentials is None:
        raise ApiError(401, "unauthenticated", "send 'Authorization: Bearer <token>'")
    digest = hashlib.sha256(credentials.credentials.encode()).hexdigest()
    tokens: dict[str, str] = request.app.state.tokens
    for known_digest, name in tokens.items():
        if hmac.compare_digest(known_digest, digest):
            return name
    raise ApiError(401, "unauthenticated", "unknown token (its sha256 is not configured)")


Actor = Annotated[str, Depends(_identity)]


def create_app(manager: Manager, tokens: Mapping[str, str] | None = None) -> FastAPI:
    """The API over ``manager``; ``tokens`` maps sha256 hex → identity (else the env var)."""
    known = (
        dict(tokens)
        if tokens is not None
        else parse_tokens(os.environ.get("ROLLOUT_API_TOKENS", ""))
    )
    app = FastAPI(
        title="mlrollout manager",
        version="1",
        description="Start, watch, approve and roll back model rollouts (same verbs as the CLI).",
    )
    app.state.tokens = known

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error_code": exc.code, "message": exc.message}, exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        return JSONResponse({"error_code": "invalid_request", "message": problems}, 422)

    @app.exception_handler(RolloutError)
    async def _rollout_error(_request: Request, exc: RolloutError) -> JSONResponse:
        status, code = _classify(exc)
        return JSONResponse({"error_code": code, "message": str(exc)}, status)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/rollouts", status_code=201)
    def start(body: StartBody, actor: Actor) -> dict[str, Any]:
        spec = load_spec(body.spec) if body.spec is not None else None
        rollout_id = manager.start(body.model, body.candidate, body.environment, spec, actor)
        return _out(manager.rollout(rollout_id).to_dict())

    @app.post("/v1/apply")
    def apply_spec(body: SpecBody, actor: Actor) -> dict[str, Any]:
        return _out(apply(manager, load_spec(body.spec), actor).to_dict())

    @app.post("/v1/plan")
    def plan_spec(body: SpecBody, _actor: Actor) -> dict[str, Any]:
        return _out(plan(manager, load_spec(body.spec)).to_dict())

    @app.get("/v1/models/{model}/environments/{environment}/status", response_model=None)
    def status(
        model: str,
        environment: str,
        _actor: Actor,
        watch: bool = False,
        interval_s: float = 0.5,
    ) -> dict[str, Any] | StreamingResponse:
        if not watch:
            return _out(manager.status(model, environment).to_dict())
        return StreamingResponse(
            _watch(manager, model, environment, max(0.05, interval_s)),
            media_type="application/x-ndjson",
        )

    @app.post("/v1/models/{model}/environments/{environment}/rollback")
    def rollback(
        model: str, environment: str, actor: Actor, body: RollbackBody | None = None
    ) -> dict[str, Any]:
        given = body or RollbackBody()
        release = manager.rollback(model, environment, actor, given.to_release, given.reason)
        return _out(release.to_dict())

    # After the fixed paths (rollback) so those are not taken for a verb.
    @app.post("/v1/models/{model}/environments/{environment}/{verb}")
    def command(
        model: str, environment: str, verb: Verb, actor: Actor, body: CommandBody | None = None
    ) -> dict[str, Any]:
        reason = body.reason if body is not None else None
        if verb == "abort":
            record = manager.abort(model, environment, actor, reason)
        else:
            record = getattr(manager, verb)(model, environment, actor)
        return _out(record.to_dict())

    @app.get("/v1/models/{model}/environments/{environment}/history")
    def history(model: str, environment: str, _actor: Actor) -> list[Any]:
        return [_out(release.to_dict()) for release in manager.history(model, environment)]

    @app.get("/v1/rollouts/{rollout_id}/report")
    def report(rollout_id: str, _actor: Actor) -> dict[str, Any]:
        return _out(manager.report(rollout_id))

    return app


def _watch(manager: Manager, model: str, environment: str, interval_s: float) -> Iterator[str]:
    shown = ""
    while True:
        status = manager.status(model, environment)
        line = json.dumps(json_safe(status.to_dict()), sort_keys=True, default=str)
        if line != shown:
            shown = line
            yield line + "\n"
        if status.rollout is None or not status.rollout.active:
            return
        time.sleep(interval_s)


def _out(value: Mapping[str, Any]) -> dict[str, Any]:
    safe = json_safe(value)
    assert isinstance(safe, dict)
    return safe


def _classify(exc: RolloutError) -> tuple[int, str]:
    message = str(exc)
    if isinstance(exc, SpecError):
        return 422, "invalid_spec"
    if isinstance(exc, RegistryError):
        return (404, "not_found") if "not found" in message else (422, "registry_error")
    if isinstance(exc, StateError) and (
        message.startswith("no rollout with id") or "has no active rollout" in message
    ):
        return 404, "not_found"
    if isinstance(exc, StateError | ConflictError):
        return 409, "state_conflict"
    return 422, "rollout_error"
