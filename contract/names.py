"""Names the router and the manager must spell the same: arms, reply headers, limits.

A request is served by one *arm*: ``baseline`` or ``canary`` by the traffic split, ``pinned``
when the caller chose the version (``x-model-version``), ``shadow`` when a mirrored copy of a
served request went to the shadow candidate, or ``failover`` when the baseline answered a
request the canary failed (the canary's failure is recorded too, as its error). Failover
answers are not requests the split gave the baseline, so the gates leave them out. (The gates
compare two samples named like the first two, ``monitors.streaming.ARMS``: the canary's and a
preview's pinned requests make the candidate's.)
"""

from __future__ import annotations

from typing import Final, Literal

Arm = Literal["baseline", "canary", "pinned", "shadow", "failover"]
BASELINE: Final = "baseline"
CANARY: Final = "canary"
PINNED: Final = "pinned"
SHADOW: Final = "shadow"
FAILOVER: Final = "failover"
ARMS: Final[tuple[Arm, ...]] = (BASELINE, CANARY, PINNED, SHADOW, FAILOVER)


# Reply (and request) headers of the router.
REQUEST_ID_HEADER: Final = "x-request-id"
MODEL_NAME_HEADER: Final = "x-model-name"
MODEL_VERSION_HEADER: Final = "x-model-version"  # in a request: pin this version
ARM_HEADER: Final = "x-arm"
ROLLOUT_ID_HEADER: Final = "x-rollout-id"
PLAN_GENERATION_HEADER: Final = "x-plan-generation"
RELEASE_ID_HEADER: Final = "x-release-id"
ROLLOUT_KEY_HEADER: Final = "x-rollout-key"  # the default sticky key

MAX_REQUEST_ID: Final = 64  # the prediction log's column width
