"""Tokens with a lifecycle: create, list, revoke, expire (README, "Security").

``rollout token create --role R [--role R2] [--env E ...] --expires 30d --identity NAME``
(:func:`issue`) makes a token ``rlt_`` + 43 URL-safe characters (256 random bits), prints it
once and stores only its sha256 (:mod:`rollout.store.tokens`). The API (:class:`Authenticator`)
accepts a bearer token whose sha256 is one of ``ROLLOUT_API_TOKENS`` (bootstrap and
automation, :mod:`rollout.auth`) or one of the store's good tokens, read from the store on every
request: a revoked or expired token gets 401 at its next request, in every API process.

The embedded default (a SQLite store at ``$ROLLOUT_HOME/rollout.db``) needs no setup: on the
first start of ``rollout api`` or ``rollout up`` with no tokens anywhere,
:func:`ensure_first_admin` makes an admin token (identity ``admin``, never expires), writes it
to ``$ROLLOUT_HOME/admin-token`` (mode 0600) and says where. On any other store, ``rollout
api`` with no tokens at all (:meth:`Authenticator.has_tokens`) refuses to start with
:data:`NO_TOKENS` unless ``--insecure-dev`` (then every call gets 401 until a token exists).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from contract.errors import Invalid, NotFound
from rollout.auth import _NAME_CHARS, ROLES, Role, Token
from rollout.settings import Settings
from rollout.store.tokens import StoredToken, TokenStore


class BadTokenRequest(Invalid):
    """A token request with a bad field (422 ``invalid_request``; the message names it)."""

    code = "invalid_request"


PREFIX = "rlt_"
ADMIN_TOKEN_FILE = "admin-token"
FIRST_ADMIN = "admin"
MAX_EXPIRES_S = 5 * 365 * 86_400.0  # a token lives at most 5 years ("never" excepted)
_EXPIRES = re.compile(r"^(\d{1,6})(m|h|d|w)$")
_UNIT_S = {"m": 60.0, "h": 3_600.0, "d": 86_400.0, "w": 604_800.0}


def digest(token: str) -> str:
    """The sha256 hex of a token: what the store and ``ROLLOUT_API_TOKENS`` hold."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def parse_expires(text: str) -> float | None:
    """Seconds from ``30d``, ``12h``, ``90m``, ``2w``; None for ``never``; Invalid otherwise."""
    value = text.strip().lower()
    if value == "never":
        return None
    found = _EXPIRES.match(value)
    seconds = float(found[1]) * _UNIT_S[found[2]] if found else 0.0
    if not found or not 0 < seconds <= MAX_EXPIRES_S:
        raise BadTokenRequest(
            f"expires: expected a lifetime such as 30d, 12h, 90m or 2w (at most 5 years), "
            f"or 'never'; got {text[:40]!r}"
        )
    return seconds


def check_identity(identity: str) -> str:
    if not identity or len(identity) > 255 or not set(identity) <= _NAME_CHARS:
        raise BadTokenRequest(
            f"identity: expected 1-255 letters, digits or ._-/, got {identity[:40]!r}"
        )
    return identity


def check_roles(roles: Collection[str]) -> tuple[Role, ...]:
    unknown = [role for role in roles if role not in ROLES]
    if not roles or unknown:
        got = repr(unknown[0][:40]) if unknown else "none"
        raise BadTokenRequest(f"roles: expected one or more of {', '.join(ROLES)}; got {got}")
    return tuple(role for role in ROLES if role in roles)


def check_environments(environments: Collection[str] | None) -> tuple[str, ...] | None:
    if environments is None or len(environments) == 0:
        return None
    for env in environments:
        if not env or len(env) > 64 or not set(env) <= _NAME_CHARS:
            raise BadTokenRequest(
                f"environments: expected names of letters, digits or ._-/, got {env[:40]!r}"
            )
    return tuple(sorted(set(environments)))


@dataclass(frozen=True)
class Issued:
    stored: StoredToken
    token: str  # shown once, never stored


def issue(
    store: TokenStore,
    identity: str,
    roles: Collection[str],
    environments: Collection[str] | None,
    expires: str,
    created_by: str,
) -> Issued:
    """Validate, make and store a new token; every problem is an :class:`Invalid` naming the
    field."""
    identity = check_identity(identity)
    checked_roles = check_roles(roles)
    envs = check_environments(environments)
    lifetime = parse_expires(expires)
    expires_at = None if lifetime is None else store.clock.time() + lifetime
    token = new_token()
    stored = store.add(identity, checked_roles, envs, digest(token), expires_at, created_by)
    return Issued(stored, token)


class Authenticator:
    """Who a bearer token is: ``ROLLOUT_API_TOKENS`` first, then the store's good tokens."""

    def __init__(self, env_tokens: Mapping[str, Token], store: TokenStore | None) -> None:
        self.env_tokens = dict(env_tokens)
        self.store = store

    def identify(self, token: str) -> Token | None:
        return self.identify_digest(digest(token))

    def identify_digest(self, hashed: str) -> Token | None:
        """Who the token with this sha256 (hex) is, else None."""
        found: Token | None = None
        for known, candidate in self.env_tokens.items():  # compare all: no early exit
            if hmac.compare_digest(known, hashed):
                found = candidate
        if found is not None or self.store is None:
            return found
        return self.store.lookup(hashed)

    def has_tokens(self) -> bool:
        return bool(self.env_tokens) or (self.store is not None and self.store.active_count() > 0)


def is_embedded(settings: Settings) -> bool:
    """Whether the store is the data directory's own SQLite file (the embedded default)."""
    return settings.store_url == f"sqlite:///{settings.home / 'rollout.db'}"


@contextmanager
def _home_lock(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".admin-token.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_first_admin(
    settings: Settings, store: TokenStore, env_tokens: Mapping[str, Token]
) -> Path | None:
    """On the embedded default with no tokens at all: make an admin token, write it to
    ``home/admin-token`` (mode 0600, replacing a stale one) and return that path; else None."""
    if env_tokens or not is_embedded(settings):
        return None
    with _home_lock(settings.home):
        if store.active_count() > 0:
            return None
        issued = issue(store, FIRST_ADMIN, ["admin"], None, "never", "rollout (first start)")
        path = settings.home / ADMIN_TOKEN_FILE
        partial = path.with_name(f".{ADMIN_TOKEN_FILE}.{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(issued.token + "\n")
        os.replace(partial, path)
        return path


NO_TOKENS = (
    "the API has no tokens: anyone could call it, so it will not start. Create one with "
    "`rollout token create --identity NAME --role admin --expires 30d` (on this store), or set "
    "ROLLOUT_API_TOKENS (identity:role=<sha256 of the token>); `rollout api --insecure-dev` "
    "starts it anyway for local development (every call gets 401 until a token exists)"
)


def revoke(store: TokenStore, id_or_identity: str, by: str) -> list[StoredToken]:
    """Revoke the token with this id, else every token of this identity; NotFound when no
    token ever had that id or identity (revoking again revokes nothing and is no error)."""
    if not id_or_identity or len(id_or_identity) > 255 or not set(id_or_identity) <= _NAME_CHARS:
        raise BadTokenRequest(
            f"id_or_identity: expected a token id (tok_...) or an identity of letters, digits "
            f"or ._-/, got {id_or_identity[:40]!r}"
        )
    if not store.exists(id_or_identity):
        raise NotFound(f"no token has the id or identity {id_or_identity[:80]!r}")
    return store.revoke(id_or_identity, by)
