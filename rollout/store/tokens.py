"""The API's tokens in the store (table ``api_tokens``): sha256 hashes, never the tokens.

One row per token made with ``rollout token create`` (:mod:`rollout.tokens`): its id
(``tok_`` + 12 hex digits, safe to show and to name in ``revoke``), the identity it acts as,
its roles and environments (None: all), who made it and when, when it expires (None: never),
when and by whom it was revoked, and when it was last used (written at most once a minute per
token). :meth:`TokenStore.lookup` answers a hash with the token only while it is good: not
revoked and not expired, read from the database on every call, so a revocation or an expiry
takes effect at the next request, in every API process.
"""

from __future__ import annotations

import builtins
import logging
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from contract.clock import SYSTEM_CLOCK, Clock
from contract.sql.schema import api_tokens
from rollout.auth import ROLES, Role, Token

log = logging.getLogger(__name__)
TokenState = Literal["active", "expired", "revoked"]
TOUCH_EVERY_S = 60.0  # last_used_at is written at most this often per token


@dataclass(frozen=True)
class StoredToken:
    """A token's row: everything about it but the token itself."""

    id: str
    identity: str
    roles: tuple[Role, ...]
    environments: tuple[str, ...] | None
    created_at: float
    created_by: str
    expires_at: float | None = None
    revoked_at: float | None = None
    revoked_by: str | None = None
    last_used_at: float | None = None

    def state(self, now: float) -> TokenState:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def token(self) -> Token:
        """What the API knows its holder as."""
        envs = frozenset(self.environments) if self.environments is not None else None
        return Token(self.identity, self.roles, envs, token_id=self.id)

    def to_dict(self, now: float) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["roles"] = list(self.roles)
        out["environments"] = None if self.environments is None else list(self.environments)
        out["state"] = self.state(now)
        return out


def _row(row: Any) -> StoredToken:
    known = set(ROLES)
    roles = tuple(r for r in str(row.roles).split("+") if r in known)
    envs = tuple(str(row.environments).split("+")) if row.environments else None
    return StoredToken(
        id=row.id,
        identity=row.identity,
        roles=roles,  # filtered to ROLES above
        environments=envs,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        last_used_at=row.last_used_at,
    )


class TokenStore:
    def __init__(self, engine: Engine, clock: Clock = SYSTEM_CLOCK) -> None:
        self.engine = engine
        self.clock = clock

    def add(
        self,
        identity: str,
        roles: Collection[Role],
        environments: Collection[str] | None,
        token_sha256: str,
        expires_at: float | None,
        created_by: str,
    ) -> StoredToken:
        """Store a new token's hash (validated by :func:`rollout.tokens.issue`)."""
        stored = StoredToken(
            id="tok_" + secrets.token_hex(6),
            identity=identity,
            roles=tuple(role for role in ROLES if role in roles),
            environments=tuple(sorted(environments)) if environments is not None else None,
            created_at=self.clock.time(),
            created_by=created_by[:255],
            expires_at=expires_at,
        )
        values = dict(stored.__dict__)
        values["roles"] = "+".join(stored.roles)
        values["environments"] = (
            "+".join(stored.environments) if stored.environments is not None else None
        )
        with self.engine.begin() as conn:
            conn.execute(api_tokens.insert().values(token_sha256=token_sha256, **values))
        return stored

    def lookup(self, token_sha256: str) -> Token | None:
        """The good (not revoked, not expired) token with this hash, else None."""
        now = self.clock.time()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_tokens).where(api_tokens.c.token_sha256 == token_sha256)
            ).first()
        if row is None:
            return None
        stored = _row(row)
        if stored.state(now) != "active":
            return None
        if stored.last_used_at is None or now - stored.last_used_at >= TOUCH_EVERY_S:
            try:
                with self.engine.begin() as conn:
                    touch = api_tokens.update().where(api_tokens.c.id == stored.id)
                    conn.execute(touch.values(last_used_at=now))
            except SQLAlchemyError:  # "last used" is a hint: a busy store must not refuse a call
                log.warning("could not note the use of token %s", stored.id, exc_info=True)
        return stored.token()

    def list(self) -> list[StoredToken]:
        """Every token, newest first (revoked and expired ones too)."""
        query = select(api_tokens).order_by(api_tokens.c.created_at.desc(), api_tokens.c.id)
        with self.engine.connect() as conn:
            return [_row(row) for row in conn.execute(query)]

    def active_count(self) -> int:
        now = self.clock.time()
        query = (
            select(func.count())
            .select_from(api_tokens)
            .where(api_tokens.c.revoked_at.is_(None))
            .where(or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > now))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def revoke(self, id_or_identity: str, by: str) -> builtins.list[StoredToken]:
        """Revoke the token with this id, else every unrevoked token of this identity; the
        tokens revoked now (empty: nothing matched, or all were revoked already)."""
        now = self.clock.time()
        unrevoked = api_tokens.c.revoked_at.is_(None)
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(api_tokens).where(api_tokens.c.id == id_or_identity).where(unrevoked)
            ).all()
            if not rows:
                rows = conn.execute(
                    select(api_tokens)
                    .where(api_tokens.c.identity == id_or_identity)
                    .where(unrevoked)
                ).all()
            ids = [row.id for row in rows]
            if ids:
                conn.execute(
                    api_tokens.update()
                    .where(api_tokens.c.id.in_(ids))
                    .where(unrevoked)
                    .values(revoked_at=now, revoked_by=by[:255])
                )
        return [
            StoredToken(**{**_row(row).__dict__, "revoked_at": now, "revoked_by": by[:255]})
            for row in rows
        ]

    def exists(self, id_or_identity: str) -> bool:
        """Whether any token (revoked or not) has this id or identity."""
        query = (
            select(func.count())
            .select_from(api_tokens)
            .where(or_(api_tokens.c.id == id_or_identity, api_tokens.c.identity == id_or_identity))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one()) > 0
