"""Pinning: which version a request names in ``x-model-version``, if its caller may pin.

A pin bypasses the traffic split (smoke tests, previews of a 0% candidate), so it needs a
bearer token whose sha256 is in ``pin_token_sha256`` (``ROLLOUT_PIN_TOKEN_SHA256``): no header,
no pin; a header without a token 401; a token not allowed, or a router that allows none, 403;
a version the plan does not serve now, 404. Digests are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Final

from contract.names import MODEL_VERSION_HEADER
from router.errors import PinningNotAllowed, Unauthorized, UnknownModel
from router.plans import ActivePlan

PIN_HEADER: Final = MODEL_VERSION_HEADER  # in a request: the version the caller pins


def pinned_version(
    headers: Mapping[str, str], model: str, active: ActivePlan, pin_digests: tuple[str, ...]
) -> str | None:
    """The version ``x-model-version`` pins, if the bearer token may pin (401/403/404)."""
    wanted = headers.get(PIN_HEADER)
    if not wanted:
        return None
    if not pin_digests:
        raise PinningNotAllowed(
            f"pinning a version with '{PIN_HEADER}' needs a token allowed to pin; "
            "this router accepts none (ROLLOUT_PIN_TOKEN_SHA256 is empty)"
        )
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            f"pinning a version with '{PIN_HEADER}' needs 'Authorization: Bearer TOKEN'"
        )
    digest = hashlib.sha256(token.encode()).hexdigest()
    if not any(hmac.compare_digest(digest, allowed) for allowed in pin_digests):
        raise PinningNotAllowed(
            f"this bearer token may not pin versions with '{PIN_HEADER}' (its sha256 is "
            "not in ROLLOUT_PIN_TOKEN_SHA256)"
        )
    if wanted not in active.predictors:
        served = ", ".join(f"v{v}" for v in active.predictors)
        raise UnknownModel(
            f"{PIN_HEADER}: {wanted!r} is not a version of model {model!r} this router "
            f"serves now ({served})",
            error_code="unknown_version",
        )
    return wanted
