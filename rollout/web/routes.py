"""The dashboard's routes (an APIRouter the API mounts): pages under ``/ui/``, ``/`` → overview.

    GET  /ui/login, POST /ui/login {token}     log in with an API token (sets the cookie)
    POST /ui/logout {csrf}
    GET  /ui/                                   overview: every model x environment
    GET  /ui/rollouts/{id}                      a rollout: timeline, gates, traffic, arms
    GET  /ui/rollouts/{id}/drift-report         its latest drift report (as /v1 serves it)
    GET  /ui/models/{model}                     releases per environment, each to its rollout
    GET  /ui/audit                              the audit log and the chain's verification
    POST /ui/models/{m}/environments/{e}/{verb} {csrf, reason?}: pause resume promote approve
                                                abort rollback (then back to the page)

Who may see and do what is the API's own check (``app.state.allow``, :mod:`rollout.auth`'s
table): a button is shown only when that check passes, and the POST checks again. A page needs
a session (:mod:`rollout.web.sessions`) whose token the authenticator still accepts; otherwise
it redirects to the login. A POST without the session's CSRF token is refused (403) before
anything else. Pages forbid scripts, frames and every fetch (``Content-Security-Policy``):
the buttons cannot be clicked from another site's frame. Every verb done here is appended to
the audit log like the API's (its detail says ``via: dashboard``). Errors are HTML pages with
the status of the error's type; a form body over :data:`MAX_FORM_BYTES` is refused (413).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from rollout.audited import Call, http_outcome, record
from rollout.auth import Token
from rollout.drift_report import stored_report
from rollout.errors import Forbidden, RolloutError, http_status
from rollout.store.audit import Head
from rollout.web import overview
from rollout.web.rollout_page import rollout_context
from rollout.web.sessions import COOKIE, MAX_TOKEN_CHARS, Session, Sessions, csrf_matches

if TYPE_CHECKING:
    from rollout.manager import Manager

MAX_FORM_BYTES = 16_384
REFRESH_S = 5  # how often a page reloads while a rollout it shows is active
ROLLOUT_VERBS = ("pause", "resume", "promote", "approve", "abort")
VERBS = (*ROLLOUT_VERBS, "rollback")
# No script, no frame, nothing fetched: the pages are self-contained (inline CSS and SVG).
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# A drift report is Evidently's HTML with its scripts: a sandbox keeps them off the session.
REPORT = {"Cache-Control": "no-store", "Content-Security-Policy": "sandbox allow-scripts"}
BAD_CSRF = "csrf: the form's CSRF token is missing or wrong; reload the page and try again"

templates = Environment(
    loader=PackageLoader("rollout.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
templates.filters["when"] = lambda ts: (
    "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(ts)))
)
templates.filters["age"] = lambda s: "-" if s is None else _age(float(s))
templates.filters["svg"] = Markup  # matplotlib's own SVG, made on the server


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def dashboard(manager: Manager) -> APIRouter:
    """The dashboard over ``manager``; its sessions live in the store (see sessions)."""
    router = APIRouter(include_in_schema=False)
    sessions = Sessions(manager.engine)
    clock = manager.clock

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = templates.get_template(name).render(request=request, **context)
        return HTMLResponse(html, status, headers=HEADERS)

    def login_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
        return page(request, "login.html", status, message=message, viewer=None)

    def signed_in(request: Request) -> tuple[Session, Token] | None:
        """The session and its token, asked again of the authenticator; None: log in."""
        session_id = request.cookies.get(COOKIE)
        session = sessions.get(session_id, clock.time())
        if session is None:
            return None
        token = request.app.state.authenticator.identify_digest(session.token_sha256)
        if token is None:  # revoked or expired since the login: the session ends
            sessions.end(session_id)
            return None
        return session, token

    def may(request: Request, token: Token, verb: str, environment: str | None) -> bool:
        try:
            request.app.state.allow(request, token, verb, environment)
        except Forbidden:
            return False
        return True

    def refuse(
        request: Request, status: int, code: str, message: str, viewer: Token | None
    ) -> HTMLResponse:
        return page(request, "error.html", status, code=code, message=message, viewer=viewer)

    def error_page(request: Request, exc: RolloutError, viewer: Token | None) -> HTMLResponse:
        status, code = http_status(exc)
        return refuse(request, status, code, str(exc), viewer)

    def guarded(request: Request, render: Callable[[Session, Token], Response]) -> Response:
        found = signed_in(request)
        if found is None:
            return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", 303)
        try:
            return render(*found)
        except RolloutError as exc:
            return error_page(request, exc, found[1])

    async def form(request: Request) -> dict[str, str] | None:
        raw = await request.body()
        if len(raw) > MAX_FORM_BYTES:
            return None
        parsed = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=20)
        return {key: values[0] for key, values in parsed.items()}

    @router.get("/")
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/", 303)

    @router.get("/ui")
    def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/", 303)

    @router.get("/ui/login")
    def login_form(request: Request) -> HTMLResponse:
        return login_page(request)

    @router.post("/ui/login")
    async def login(request: Request) -> Response:
        fields = await form(request)
        token_text = (fields or {}).get("token", "").strip()
        if fields is None or not token_text or len(token_text) > MAX_TOKEN_CHARS:
            return login_page(
                request, f"token: expected an API token of 1-{MAX_TOKEN_CHARS} characters", 422
            )
        token = await run_in_threadpool(request.app.state.authenticator.identify, token_text)
        if token is None:
            return login_page(request, "unknown, expired or revoked token", 401)
        session_id, _ = await run_in_threadpool(sessions.create, token_text, clock.time())
        target = fields.get("next") or "/ui/"
        if not target.startswith("/ui/") or target.startswith("//"):
            target = "/ui/"
        response = RedirectResponse(target, 303)
        response.set_cookie(
            COOKIE, session_id, httponly=True, samesite="strict", path="/ui",
            secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    @router.post("/ui/logout")
    async def logout(request: Request) -> Response:
        found = await run_in_threadpool(signed_in, request)
        fields = await form(request) or {}
        if found is not None and not csrf_matches(found[0], fields.get("csrf")):
            return refuse(request, 403, "forbidden", BAD_CSRF, found[1])
        await run_in_threadpool(sessions.end, request.cookies.get(COOKIE))
        response = RedirectResponse("/ui/login", 303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    @router.get("/ui/")
    def overview_page(request: Request) -> Response:
        def render(session: Session, token: Token) -> HTMLResponse:
            rows = overview.rows(
                manager, lambda env: may(request, token, "status", env), clock.time()
            )
            return page(
                request, "overview.html", rows=rows, viewer=token, session=session,
                refresh_s=REFRESH_S if any(row.active for row in rows) else None,
            )  # fmt: skip

        return guarded(request, render)

    @router.get("/ui/rollouts/{rollout_id}")
    def rollout_view(request: Request, rollout_id: str) -> Response:
        def render(session: Session, token: Token) -> HTMLResponse:
            # the API's own read check: outside the token's environments, an unknown id (404)
            rollout = request.app.state.readable_rollout(request, token, rollout_id)
            context = rollout_context(manager, rollout, clock.time())
            buttons = [
                verb
                for verb in VERBS
                if (rollout.active or verb == "rollback")
                and may(request, token, verb, rollout.environment)
            ]
            return page(
                request, "rollout.html", viewer=token, session=session, buttons=buttons,
                refresh_s=REFRESH_S if rollout.active else None, **context,
            )  # fmt: skip

        return guarded(request, render)

    @router.get("/ui/rollouts/{rollout_id}/drift-report")
    def drift_report(request: Request, rollout_id: str) -> Response:
        """The rollout's latest drift report (the file ``GET /v1/.../drift-report`` serves),
        for a browser's session; sandboxed: its scripts run in an origin of their own."""

        def render(session: Session, token: Token) -> Response:
            record = request.app.state.readable_rollout(request, token, rollout_id)
            path = stored_report(manager.evidence.reports, record.id)
            return FileResponse(path, media_type="text/html; charset=utf-8", headers=REPORT)

        return guarded(request, render)

    @router.get("/ui/models/{model}")
    def model_view(request: Request, model: str) -> Response:
        def render(session: Session, token: Token) -> HTMLResponse:
            environments = [
                (env, manager.history(model, env)[:100])
                for env in manager.environment_names
                if may(request, token, "history", env)
            ]
            return page(
                request, "model.html", viewer=token, session=session, model=model,
                environments=environments, config=_config,
            )  # fmt: skip

        return guarded(request, render)

    @router.get("/ui/audit")
    def audit_view(request: Request) -> Response:
        def render(session: Session, token: Token) -> HTMLResponse:
            request.app.state.allow(request, token, "audit", None)
            rows = manager.audit.list(environments=token.environments, limit=200)
            path: Path = manager.settings.audit_head_path
            try:
                head = Head.read(path) if path.exists() else None
            except ValueError:
                head = None
            verification = manager.audit.verify(head)
            return page(
                request, "audit.html", viewer=token, session=session, rows=rows,
                verification=verification, detail=lambda text: json.loads(text),
            )  # fmt: skip

        return guarded(request, render)

    @router.post("/ui/models/{model}/environments/{environment}/{verb}")
    async def act(request: Request, model: str, environment: str, verb: str) -> Response:
        found = await run_in_threadpool(signed_in, request)
        if found is None:
            return RedirectResponse("/ui/login", 303)
        session, token = found
        fields = await form(request)
        if fields is None:
            too_large = f"the form may be at most {MAX_FORM_BYTES} bytes"
            return refuse(request, 413, "body_too_large", too_large, token)
        if not csrf_matches(session, fields.get("csrf")):
            return refuse(request, 403, "forbidden", BAD_CSRF, token)
        if verb not in VERBS:
            expected = f"verb: expected one of {', '.join(VERBS)}, got {verb[:40]!r}"
            return refuse(request, 404, "not_found", expected, token)
        reason = (fields.get("reason") or "").strip()[:1000] or None
        call = Call(
            verb, model[:255], environment[:64], token.identity,
            {"via": "dashboard", "reason": reason}, request.client.host if request.client else None,
            request.headers.get("user-agent", "")[:255] or None, request.url.path[:255],
        )  # fmt: skip
        try:
            request.app.state.allow(request, token, verb, environment)
            done = await run_in_threadpool(_do, manager, verb, model, environment, token, reason)
        except RolloutError as exc:
            status, _ = http_status(exc)
            call.detail["message"] = str(exc)[:500]
            await run_in_threadpool(record, manager.audit, call, http_outcome(status), status)  # type: ignore[arg-type]
            return error_page(request, exc, token)
        call.detail["rollout_id"] = done
        await run_in_threadpool(record, manager.audit, call, "allowed", 200)
        return RedirectResponse(
            f"/ui/rollouts/{quote(done)}" if done else f"/ui/models/{quote(model)}", 303
        )

    return router


def _do(
    manager: Manager, verb: str, model: str, environment: str, token: Token, reason: str | None
) -> str | None:
    """Run the verb; the id of the rollout it acted on (a rollback: its release's, if any)."""
    if verb == "rollback":
        release = manager.rollback(model, environment, token.identity, None, reason)
        return release.rollout_id
    if verb == "abort":
        return manager.abort(model, environment, token.identity, reason).id
    record_: Any = getattr(manager, verb)(model, environment, token.identity)
    return str(record_.id)


def _config(config_hash: str | None) -> str:
    return "-" if not config_hash else config_hash[:12]
