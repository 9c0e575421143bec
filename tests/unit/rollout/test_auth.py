"""Tokens, roles and environments (rollout.auth): the parser and the allow/deny rules."""

from __future__ import annotations

import hashlib

import pytest

from rollout.auth import Token, authorize, non_production, parse_tokens, roles_for

DIGEST = hashlib.sha256(b"t").hexdigest()
OTHER = hashlib.sha256(b"u").hexdigest()
SANDBOX = non_production(("dev", "staging", "prod"))


def test_parses_roles_and_environments() -> None:
    tokens = parse_tokens(
        f" alice:scientist@dev+staging={DIGEST} , ci:admin+viewer={OTHER.upper()} ,"
    )
    assert tokens == {
        DIGEST: Token("alice", ("scientist",), frozenset({"dev", "staging"})),
        OTHER: Token("ci", ("viewer", "admin"), None),
    }
    assert parse_tokens(f"bob@prod={DIGEST}") == {DIGEST: Token("bob", ("viewer",), {"prod"})}
    assert parse_tokens("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alice", "expected 'identity[:role+role][@env+env]=<sha256 hex of the token>'"),
        (f"={DIGEST}", "expected 'identity"),
        ("alice=abc", "'alice': expected 64 hex digits (sha256 of the token) after '=', got 3"),
        ("alice=" + "g" * 64, "'alice': expected 64 hex digits"),
        (f"alice:root={DIGEST}", "'alice': unknown role 'root'; roles are viewer, scientist, "
                                 "deployer, approver, admin"),
        (f"alice:={DIGEST}", "'alice': unknown role ''"),
        (f"alice:viewer@={DIGEST}", "'alice': expected '@env+env' after the roles, got '@'"),
        (f"alice@dev+={DIGEST}", "expected '@env+env' after the roles, got '@dev+'"),
        (f"al ice={DIGEST}", "the identity must be letters, digits or ._-/"),
        (f"alice={DIGEST},bob={DIGEST}", "the same token hash is listed for 'alice' and 'bob'"),
    ],
)  # fmt: skip
def test_parser_errors_name_the_entry(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="ROLLOUT_API_TOKENS") as caught:
        parse_tokens(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("verb", "environment", "roles"),
    [
        ("status", "prod", ("viewer", "scientist", "deployer", "approver", "admin")),
        ("audit", None, ("viewer", "scientist", "deployer", "approver", "admin")),
        ("start", "dev", ("scientist", "deployer", "admin")),
        ("abort", "staging", ("scientist", "deployer", "admin")),
        ("start", "prod", ("deployer", "admin")),
        ("pause", "qa", ("deployer", "admin")),  # outside the configured order
        ("promote", "dev", ("deployer", "admin")),
        ("rollback", "prod", ("deployer", "admin")),
        ("approve", "prod", ("approver", "admin")),
        ("explode", "prod", ()),
    ],
)
def test_roles_for_each_verb_class(verb: str, environment: str, roles: tuple[str, ...]) -> None:
    assert roles_for(verb, environment, SANDBOX) == roles


def test_denials_name_identity_verb_environment_and_role() -> None:
    sam = Token("sam", ("scientist",))
    assert authorize(sam, "start", "staging", SANDBOX) is None
    denial = authorize(sam, "start", "prod", SANDBOX)
    assert denial is not None
    assert denial.needs == ("deployer", "admin")
    assert (
        denial.message == "sam may not start in prod: needs role deployer or admin, has scientist"
    )

    dee = Token("dee", ("deployer",), frozenset({"staging"}))
    assert authorize(dee, "promote", "staging", SANDBOX) is None
    assert authorize(dee, "audit", None, SANDBOX) is None  # not about one environment
    limited = authorize(dee, "promote", "prod", SANDBOX)
    assert limited is not None and limited.message == (
        "dee may not promote in prod: the token is limited to environments staging "
        "(a token for prod with role deployer or admin would do)"
    )
    assert authorize(Token("vic"), "status", "prod", SANDBOX) is None
    assert authorize(Token("vic"), "approve", "prod", SANDBOX) is not None


@pytest.mark.parametrize("verb", ["token_create", "token_list", "token_revoke"])
def test_only_an_admin_of_every_environment_manages_tokens(verb: str) -> None:
    assert authorize(Token("root", ("admin",)), verb, None, SANDBOX) is None
    for roles in [("viewer",), ("scientist",), ("deployer",), ("approver",)]:
        denial = authorize(Token("dee", roles), verb, None, SANDBOX)
        assert denial is not None and denial.needs == ("admin",)
    limited = authorize(Token("lim", ("admin",), frozenset({"dev"})), verb, None, SANDBOX)
    assert limited is not None
    assert limited.message == (
        f"lim may not {verb.replace('_', ' ')}: managing tokens needs an admin token not "
        "limited to some environments"
    )
