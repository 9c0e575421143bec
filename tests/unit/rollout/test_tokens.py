"""The token lifecycle's pure parts (rollout.tokens): lifetimes, field checks, the format."""

from __future__ import annotations

import hashlib

import pytest

from rollout.tokens import (
    BadTokenRequest,
    check_environments,
    check_identity,
    check_roles,
    digest,
    new_token,
    parse_expires,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90m", 5_400.0), ("12h", 43_200.0), ("30d", 2_592_000.0), ("2W", 1_209_600.0),
     (" never ", None), ("260w", 157_248_000.0)],
)  # fmt: skip
def test_lifetimes(text: str, seconds: float | None) -> None:
    assert parse_expires(text) == seconds


@pytest.mark.parametrize("text", ["", "0d", "30", "1y", "-1d", "1.5d", "261w", "1d2h", "x" * 99])
def test_bad_lifetimes_name_the_field_and_show_a_short_excerpt(text: str) -> None:
    with pytest.raises(BadTokenRequest) as caught:
        parse_expires(text)
    message = str(caught.value)
    assert message.startswith("expires: expected a lifetime such as 30d")
    assert len(message) < 160


def test_field_checks() -> None:
    assert check_identity("ci/deploy-bot.1") == "ci/deploy-bot.1"
    assert check_roles(["approver", "viewer", "approver"]) == ("viewer", "approver")
    assert check_environments(["staging", "dev", "dev"]) == ("dev", "staging")
    assert check_environments([]) is None and check_environments(None) is None
    for bad_identity in ("", "a b", "é", "x" * 256):
        with pytest.raises(BadTokenRequest, match=r"^identity: expected"):
            check_identity(bad_identity)
    with pytest.raises(BadTokenRequest, match=r"^roles: expected .*; got 'root'$"):
        check_roles(["viewer", "root"])
    with pytest.raises(BadTokenRequest, match=r"^environments: expected"):
        check_environments(["dev", "pr\nod"])


def test_tokens_are_random_and_stored_as_their_sha256() -> None:
    made = {new_token() for _ in range(100)}
    assert len(made) == 100 and all(t.startswith("rlt_") and len(t) == 47 for t in made)
    token = next(iter(made))
    assert digest(token) == hashlib.sha256(token.encode()).hexdigest()
