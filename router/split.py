"""Which arm serves a request: pure functions, no I/O.

A request goes to the canary when its bucket is below the plan's ``canary_weight_pct``. With a
sticky key the bucket is a stable hash of the key into ``0..99`` (salted by the rollout, so each
rollout picks its own canary users); without one it is a uniform random draw. Because a key's
bucket never changes during a rollout, stickiness is monotone: a key on the canary at 5% stays
on it at 25%, and a key on the baseline at 25% was on the baseline at 5%.

Where the key comes from (:func:`sticky_key`): the plan's ``sticky_key`` rule,
``"header:NAME"`` (a request header) or ``"field:NAME"`` (the first input row's column), else
the ``x-rollout-key`` header; none of them present → no key.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from typing import Final

from contract.names import BASELINE, CANARY, ROLLOUT_KEY_HEADER, Arm

BUCKETS: Final = 100


def bucket(key: str, salt: str = "") -> int:
    """A stable bucket in ``0..99`` for ``key`` (the same on every process and machine)."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def choose_arm(
    canary_weight_pct: int, key: str | None, *, salt: str = "", rng: random.Random | None = None
) -> Arm:
    """``canary`` if the key's bucket (or a random draw) is below the canary weight."""
    if canary_weight_pct <= 0:
        return BASELINE
    if canary_weight_pct >= BUCKETS:
        return CANARY
    draw = bucket(key, salt) if key is not None else (rng or random).randrange(BUCKETS)
    return CANARY if draw < canary_weight_pct else BASELINE


def parse_sticky_rule(rule: str | None) -> tuple[str, str] | None:
    """``"header:x-user-id"`` → ``("header", "x-user-id")``; None → None; else ValueError."""
    if rule is None or rule == "":
        return None
    source, _, name = rule.partition(":")
    source = source.strip().lower()
    name = name.strip()
    if source not in ("header", "field") or not name:
        raise ValueError(f"sticky key rule {rule!r}: expected 'header:NAME' or 'field:NAME'")
    return source, name


def sticky_key(
    rule: str | None,
    headers: Mapping[str, str],
    field: Callable[[str], str | None],
) -> str | None:
    """The request's sticky key under ``rule``, falling back to the ``x-rollout-key`` header.

    ``headers`` have lower-case names (rule names are lower-cased to match); ``field(name)``
    returns the first input row's value of a column as text. An invalid rule is ignored.
    """
    try:
        parsed = parse_sticky_rule(rule)
    except ValueError:
        parsed = None
    if parsed is not None:
        source, name = parsed
        value = headers.get(name.lower()) if source == "header" else field(name)
        if value:
            return value
    value = headers.get(ROLLOUT_KEY_HEADER)
    return value or None
