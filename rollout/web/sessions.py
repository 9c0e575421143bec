"""Dashboard sessions: a login with an API token, an HttpOnly cookie, a CSRF token per session.

``POST /ui/login`` with a token the API knows (:class:`~rollout.tokens.Authenticator`) makes a
session: 32 random bytes (URL-safe) in the cookie :data:`COOKIE` (HttpOnly, SameSite=Strict,
Path=/ui, Secure when the request came over https). The session lives **in memory, per API
process** (:class:`Sessions`): a restarted API forgets every session (people log in again), and
behind several API processes a load balancer must keep a browser on one of them.

The session keeps the token itself (never sent back to the browser) so that every request asks
the authenticator again: a token revoked or expired since the login ends the session at the
next request, in every API process. Sessions also end after :data:`IDLE_S` without a request
and after :data:`MAX_AGE_S` in all; at most :data:`MAX_SESSIONS` are kept (the least recently
used goes first).

Every form carries the session's CSRF token (:attr:`Session.csrf`); :func:`csrf_matches`
compares it in constant time and a POST without the right one is refused with 403.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

COOKIE = "rollout_session"
IDLE_S = 8 * 3600.0
MAX_AGE_S = 24 * 3600.0
MAX_SESSIONS = 10_000
MAX_TOKEN_CHARS = 512  # a longer "token" is refused before it is hashed


@dataclass
class Session:
    token: str  # the API token it logged in with (stays on the server)
    csrf: str
    created_at: float
    used_at: float


class Sessions:
    """Session id → :class:`Session`, bounded and thread-safe (one per API process)."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()
        self.max_sessions = max_sessions

    def create(self, token: str, now: float) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        session = Session(token, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._sessions[session_id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None, now: float) -> Session | None:
        """The live session with this id (touched), else None (an expired one is dropped)."""
        if not session_id or len(session_id) > 64:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.used_at > IDLE_S or now - session.created_at > MAX_AGE_S:
                del self._sessions[session_id]
                return None
            session.used_at = now
            self._sessions.move_to_end(session_id)
            return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)


def csrf_matches(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())
