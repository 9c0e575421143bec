"""Splitting: stable buckets, monotone stickiness, and observed shares that match the weights."""

from __future__ import annotations

import itertools
import random

import pytest
from scipy.stats import chisquare

from contract.names import BASELINE, CANARY
from router.split import (
    bucket,
    choose_arm,
    parse_sticky_rule,
    sticky_key,
)

WEIGHTS = (0, 1, 5, 10, 25, 30, 50, 75, 99, 100)


def _keys(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [f"user-{rng.getrandbits(64):016x}" for _ in range(n)]


def test_bucket_is_stable_and_in_range() -> None:
    # Pinned values: the same on every process, machine and Python version (sha256).
    assert bucket("user-42", salt="r1") == 88
    assert bucket("user-42", salt="r2") == 71
    assert all(0 <= bucket(k) < 100 for k in _keys(2000))


def test_buckets_are_uniform() -> None:
    counts = [0] * 100
    for key in _keys(20_000):
        counts[bucket(key, salt="rollout-1")] += 1
    assert chisquare(counts).pvalue > 0.001


@pytest.mark.parametrize("salt", ["", "rollout-1", "bc"])
def test_stickiness_is_monotone_as_the_weight_grows(salt: str) -> None:
    keys = _keys(3000)
    arms = {w: [choose_arm(w, k, salt=salt) for k in keys] for w in WEIGHTS}
    for low, high in itertools.pairwise(WEIGHTS):
        for at_low, at_high in zip(arms[low], arms[high], strict=True):
            # On the canary at the lower weight → still on it at the higher one.
            assert not (at_low == CANARY and at_high == BASELINE)
    # And the same key always lands on the same arm at a given weight.
    assert arms[30] == [choose_arm(30, k, salt=salt) for k in keys]


def test_salt_reshuffles_who_is_canary_but_not_how_many() -> None:
    keys = _keys(5000)
    first = {k for k in keys if choose_arm(20, k, salt="rollout-1") == CANARY}
    second = {k for k in keys if choose_arm(20, k, salt="rollout-2") == CANARY}
    assert first != second
    assert abs(len(first) - len(second)) < 250


def test_zero_and_hundred_ignore_the_key() -> None:
    rng = random.Random(1)
    for key in [*_keys(200), None]:
        assert choose_arm(0, key, rng=rng) == BASELINE
        assert choose_arm(100, key, rng=rng) == CANARY


@pytest.mark.parametrize("weight", [5, 30, 50, 90])
def test_keyed_split_matches_the_weight(weight: int) -> None:
    n = 20_000
    canary = sum(choose_arm(weight, k, salt="r1") == CANARY for k in _keys(n, seed=weight))
    observed = [n - canary, canary]
    expected = [n * (100 - weight) / 100, n * weight / 100]
    assert chisquare(observed, expected).pvalue > 0.001


@pytest.mark.parametrize("weight", [5, 30, 50, 90])
def test_keyless_split_matches_the_weight(weight: int) -> None:
    rng = random.Random(weight)
    n = 20_000
    canary = sum(choose_arm(weight, None, rng=rng) == CANARY for _ in range(n))
    observed = [n - canary, canary]
    expected = [n * (100 - weight) / 100, n * weight / 100]
    assert chisquare(observed, expected).pvalue > 0.001


def test_parse_sticky_rule() -> None:
    assert parse_sticky_rule(None) is None
    assert parse_sticky_rule("header:x-user-id") == ("header", "x-user-id")
    assert parse_sticky_rule("field: user_id ") == ("field", "user_id")
    for bad in ("cookie:sid", "header:", "user_id"):
        with pytest.raises(ValueError, match="expected 'header:NAME' or 'field:NAME'"):
            parse_sticky_rule(bad)


def test_sticky_key_sources() -> None:
    fields = {"user_id": "u-7"}
    headers = {"x-rollout-key": "k-1", "x-user-id": "u-9"}
    assert sticky_key(None, headers, fields.get) == "k-1"
    assert sticky_key("header:x-user-id", headers, fields.get) == "u-9"
    assert sticky_key("field:user_id", headers, fields.get) == "u-7"
    # The rule's source is absent: fall back to x-rollout-key, then to no key.
    assert sticky_key("field:account", headers, fields.get) == "k-1"
    assert sticky_key("header:x-account", {}, fields.get) is None
    # An invalid rule is ignored rather than failing requests.
    assert sticky_key("cookie:sid", headers, fields.get) == "k-1"
