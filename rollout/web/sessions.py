"""Dashboard sessions: a login with an API token, an HttpOnly cookie, a CSRF token per session.

``POST /ui/login`` with a token the API knows (:class:`~rollout.tokens.Authenticator`) makes a
session: 32 random bytes (URL-safe) in the cookie :data:`COOKIE` (HttpOnly, SameSite=Strict,
Path=/ui, Secure when the request came over https). Sessions live **in the store**
(``dashboard_sessions``), so every API process on it knows them: no sticky load balancing
behind several, and a restarted API keeps its sessions. The store holds only the sha256 of
the session id and of the token: someone who reads it can neither take over a session nor
learn a token.

Every request asks the authenticator again with the token's sha256
(:meth:`~rollout.tokens.Authenticator.identify_digest`): a token revoked or expired since the
login ends the session at the next request, in every API process. Sessions also end after
:data:`IDLE_S` without a request and after :data:`MAX_AGE_S` in all; at most
:data:`MAX_SESSIONS` are kept (a new one first drops the expired, then the least recently
used). A session's last use is written at most every :data:`TOUCH_EVERY_S`, not at every
request.

Every form carries the session's CSRF token (:attr:`Session.csrf`); :func:`csrf_matches`
compares it in constant time and a POST without the right one is refused with 403.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Engine, delete, func, or_, select, update

from contract.sql.schema import dashboard_sessions
from rollout.tokens import digest

COOKIE = "rollout_session"
IDLE_S = 8 * 3600.0
MAX_AGE_S = 24 * 3600.0
MAX_SESSIONS = 10_000
MAX_TOKEN_CHARS = 512  # a longer "token" is refused before it is hashed
TOUCH_EVERY_S = 60.0  # how stale a session's last use may be written


@dataclass(frozen=True)
class Session:
    token_sha256: str  # of the API token it logged in with (the token stays with the browser)
    csrf: str
    created_at: float
    used_at: float


class Sessions:
    """Session id → :class:`Session`, in the store's ``dashboard_sessions``, bounded."""

    def __init__(self, engine: Engine, max_sessions: int = MAX_SESSIONS) -> None:
        self.engine = engine
        self.max_sessions = max_sessions

    def create(self, token: str, now: float) -> tuple[str, Session]:
        """A new session for ``token`` (already authenticated): its id and itself."""
        session_id = secrets.token_urlsafe(32)
        session = Session(digest(token), secrets.token_urlsafe(32), now, now)
        table = dashboard_sessions.c
        with self.engine.begin() as conn:
            conn.execute(delete(dashboard_sessions).where(_expired(now)))
            conn.execute(
                dashboard_sessions.insert().values(
                    id_sha256=digest(session_id),
                    token_sha256=session.token_sha256,
                    csrf=session.csrf,
                    created_at=now,
                    used_at=now,
                )
            )
            beyond = select(table.id_sha256).order_by(table.used_at.desc(), table.id_sha256)
            oldest = list(conn.execute(beyond.offset(self.max_sessions).limit(100)).scalars())
            if oldest:
                conn.execute(delete(dashboard_sessions).where(table.id_sha256.in_(oldest)))
        return session_id, session

    def get(self, session_id: str | None, now: float) -> Session | None:
        """The live session with this id (its use written when stale), else None (an expired
        one is dropped)."""
        if not session_id or len(session_id) > 64:
            return None
        key = digest(session_id)
        table = dashboard_sessions.c
        with self.engine.connect() as conn:
            row = conn.execute(select(dashboard_sessions).where(table.id_sha256 == key)).first()
        if row is None:
            return None
        session = Session(row.token_sha256, row.csrf, row.created_at, row.used_at)
        if now - session.used_at > IDLE_S or now - session.created_at > MAX_AGE_S:
            self._drop(key)
            return None
        if now - session.used_at >= TOUCH_EVERY_S:
            with self.engine.begin() as conn:
                conn.execute(
                    update(dashboard_sessions).where(table.id_sha256 == key).values(used_at=now)
                )
            session = Session(session.token_sha256, session.csrf, session.created_at, now)
        return session

    def end(self, session_id: str | None) -> None:
        if session_id and len(session_id) <= 64:
            self._drop(digest(session_id))

    def _drop(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(dashboard_sessions).where(dashboard_sessions.c.id_sha256 == key))

    def __len__(self) -> int:
        with self.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(dashboard_sessions)).scalar()
        return int(count or 0)


def _expired(now: float) -> ColumnElement[bool]:
    table = dashboard_sessions.c
    return or_(table.used_at < now - IDLE_S, table.created_at < now - MAX_AGE_S)


def csrf_matches(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())
