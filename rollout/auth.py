"""Who may do what through the API: tokens, roles and environments (README, "Security").

``ROLLOUT_API_TOKENS`` is a comma-separated list of
``identity[:role+role...][@environment+environment...]=<sha256 hex of the token>``::

    alice:scientist@dev+staging=9f86…,bob:deployer+approver=2c26…,ci:admin=fcde…

Roles default to ``viewer`` (the old ``identity=sha256hex`` form therefore reads only);
environments default to all. A token may act when one of its roles grants the verb there
(:data:`GRANTS`) and the environment is one of its own::

    verb class  verbs                                   roles
    read        status history plan report audit        every role
    operate     start apply pause resume abort          scientist (not in production),
                                                        deployer, admin
    release     promote rollback                        deployer, admin
    approve     approve                                 approver, admin
    tokens      token_create token_list token_revoke    admin (not limited to environments)

"Production" is the last environment of the configured order (``prod`` by default); a
scientist acts only in the environments before it (``dev``, ``staging``), never in one outside
the order. One rule more is the API's (``allow`` in :mod:`rollout.api`), because it depends on
the environment's approval policy: where an environment requires an approval (``prod`` by
default) a forced ``promote`` is the ``approver``'s or ``admin``'s, not the ``deployer``'s, and
it still waits for an ``approve``. :func:`authorize` is a pure function: it returns ``None``
or a :class:`Denial` whose message names the identity, the verb, the environment and the roles
that would do.
"""

from __future__ import annotations

import string
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["viewer", "scientist", "deployer", "approver", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
DEFAULT_ROLES: tuple[Role, ...] = ("viewer",)

READ = frozenset({"status", "history", "plan", "report", "audit"})
OPERATE = frozenset({"start", "apply", "pause", "resume", "abort"})
RELEASE = frozenset({"promote", "rollback"})
APPROVE = frozenset({"approve"})
MUTATING = OPERATE | RELEASE | APPROVE
# Managing the API's tokens (rollout.tokens): admins only, and only admins not limited to some
# environments (a limited admin could otherwise make itself an unlimited token).
TOKENS = frozenset({"token_create", "token_list", "token_revoke"})
VERBS = READ | MUTATING | TOKENS

GRANTS: dict[Role, frozenset[str]] = {
    "viewer": READ,
    "scientist": READ | OPERATE,
    "deployer": READ | OPERATE | RELEASE,
    "approver": READ | APPROVE,
    "admin": VERBS,
}
NOT_IN_PRODUCTION: frozenset[Role] = frozenset({"scientist"})

_NAME_CHARS = set(string.ascii_letters + string.digits + "._-/")


@dataclass(frozen=True)
class Token:
    """What a token's holder is: an identity, its roles, and where it may act (None: all)."""

    identity: str
    roles: tuple[Role, ...] = DEFAULT_ROLES
    environments: frozenset[str] | None = None
    token_id: str | None = None  # a store token's id (rollout.store.tokens); None: from the env

    def may_see(self, environment: str | None) -> bool:
        return self.environments is None or environment in self.environments


@dataclass(frozen=True)
class Denial:
    identity: str
    verb: str
    environment: str | None
    needs: tuple[Role, ...]  # roles that would be allowed this verb here
    message: str


def parse_tokens(text: str) -> dict[str, Token]:
    """``ROLLOUT_API_TOKENS`` → {sha256 hex: Token}; ValueError names the bad entry."""
    tokens: dict[str, Token] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        head, sep, digest = item.rpartition("=")
        digest = digest.strip().lower()
        if not sep or not head:
            raise ValueError(
                f"ROLLOUT_API_TOKENS: expected 'identity[:role+role][@env+env]=<sha256 hex of "
                f"the token>', got {item!r}"
            )
        if len(digest) != 64 or not set(digest) <= set(string.hexdigits.lower()):
            raise ValueError(
                f"ROLLOUT_API_TOKENS: {head!r}: expected 64 hex digits (sha256 of the token) "
                f"after '=', got {len(digest)} characters"
            )
        token = _parse_head(head.strip(), item)
        if digest in tokens:
            raise ValueError(
                f"ROLLOUT_API_TOKENS: the same token hash is listed for "
                f"{tokens[digest].identity!r} and {token.identity!r}; give each identity its own"
            )
        tokens[digest] = token
    return tokens


def _parse_head(head: str, item: str) -> Token:
    rest, at, env_text = head.partition("@")
    identity, colon, role_text = rest.partition(":")
    if not identity or not set(identity) <= _NAME_CHARS:
        raise ValueError(
            f"ROLLOUT_API_TOKENS: {item!r}: the identity must be letters, digits or ._-/"
        )
    roles: tuple[Role, ...] = DEFAULT_ROLES
    if colon:
        names = role_text.split("+")
        unknown = [name for name in names if name not in ROLES]
        if not role_text or unknown:
            raise ValueError(
                f"ROLLOUT_API_TOKENS: {identity!r}: unknown role "
                f"{(unknown[0] if unknown else '')!r}; roles are {', '.join(ROLES)}"
            )
        roles = tuple(dict.fromkeys(name for name in ROLES if name in names))
    environments: frozenset[str] | None = None
    if at:
        envs = env_text.split("+")
        if not env_text or any(not env or not set(env) <= _NAME_CHARS for env in envs):
            raise ValueError(
                f"ROLLOUT_API_TOKENS: {identity!r}: expected '@env+env' after the roles, "
                f"got '@{env_text}'"
            )
        environments = frozenset(envs)
    return Token(identity=identity, roles=roles, environments=environments)


def roles_for(
    verb: str, environment: str | None, non_production: Collection[str]
) -> tuple[Role, ...]:
    """The roles that may do ``verb`` in ``environment`` (scientists: only in non-production)."""
    return tuple(
        role
        for role in ROLES
        if verb in GRANTS[role]
        and not (
            verb in MUTATING and role in NOT_IN_PRODUCTION and environment not in non_production
        )
    )


def authorize(
    token: Token, verb: str, environment: str | None, non_production: Collection[str]
) -> Denial | None:
    """None when ``token`` may do ``verb`` in ``environment``; else why not.

    ``non_production`` holds the environments where scientists may act (see
    :func:`non_production`): the ones before the last of the configured order. A call about no
    one environment (``environment`` None: the audit log) is not limited by the token's
    environments.
    """
    needs = roles_for(verb, environment, non_production)
    where = f"in {environment}" if environment is not None else "here"
    if verb in TOKENS and token.environments is not None and "admin" in token.roles:
        return Denial(
            token.identity,
            verb,
            environment,
            needs,
            f"{token.identity} may not {verb.replace('_', ' ')}: managing tokens needs an admin "
            "token not limited to some environments",
        )
    if environment is not None and not token.may_see(environment):
        allowed = ", ".join(sorted(token.environments or ()))
        return Denial(
            token.identity,
            verb,
            environment,
            needs,
            f"{token.identity} may not {verb} {where}: the token is limited to environments "
            f"{allowed} (a token for {environment} with role {_either(needs)} would do)",
        )
    if any(role in needs for role in token.roles):
        return None
    return Denial(
        token.identity,
        verb,
        environment,
        needs,
        f"{token.identity} may not {verb} {where}: needs role {_either(needs)}, "
        f"has {'+'.join(token.roles)}",
    )


def non_production(ordered: Iterable[str]) -> frozenset[str]:
    """Where scientists may act: the environments before the last of the configured order."""
    names = tuple(ordered)
    return frozenset(names[:-1])


def _either(roles: tuple[Role, ...]) -> str:
    if not roles:
        return "(none)"
    return " or ".join(roles)
