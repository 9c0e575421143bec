"""The router's status views: ``GET /v1/models`` and ``GET /readyz``, from the plan poller.

- :func:`models_view`: every model with a plan (latest read or applied), its baseline, canary
  and shadow versions with their role, weight, release, whether each is loaded and why not,
  the applied and latest plan generations, and whether the router is ready.
- :func:`readiness_view`: ``(True, {"ready": true, "generations": ...})`` once every version
  of every plan is loaded and warmed (with ``store_error`` when the last poll failed but the
  applied plans still serve), else ``(False, ...)`` with ``error_code`` ``not_ready``, one
  sentence naming each cause, and the causes themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contract.names import BASELINE, CANARY, SHADOW
from router.config import RouterConfig
from router.plans import PlanPoller


def models_view(poller: PlanPoller, config: RouterConfig) -> dict[str, Any]:
    """``GET /v1/models``: every model with a plan, its versions, weights and readiness."""
    status = poller.status()
    causes = status.not_ready()
    out = []
    for model in sorted(set(status.latest) | set(status.active)):
        latest = status.latest.get(model)
        active = status.active.get(model)
        plan = active.plan if active is not None else latest
        assert plan is not None
        weight = plan.canary_weight_pct
        versions = []
        for role, version in (
            (BASELINE, plan.baseline_version),
            (CANARY, plan.canary_version),
            (SHADOW, plan.shadow_version),
        ):
            if version is None:
                continue
            failure = status.failures.get((model, version))
            versions.append(
                {
                    "version": version,
                    "role": role,
                    "weight_pct": _weight(role, weight),
                    "release": plan.release_of(version),
                    "loaded": (model, version) in status.loaded,
                    "error": failure.reason if failure else None,
                }
            )
        out.append(
            {
                "model": model,
                "generation": active.plan.generation if active else None,
                "latest_generation": latest.generation if latest else None,
                "ready": active is not None and latest is not None and active.plan == latest,
                "baseline_version": plan.baseline_version,
                "canary_version": plan.canary_version,
                "canary_weight_pct": weight,
                "shadow_version": plan.shadow_version,
                "shadow_fraction": plan.shadow_fraction,
                "sticky_key": plan.sticky_key,
                "rollout_id": plan.rollout_id,
                "versions": versions,
            }
        )
    return {
        "environment": config.environment,
        "default_model": config.default_model
        or (next(iter(status.latest)) if len(status.latest) == 1 else None),
        "ready": not causes,
        "models": out,
    }


def readiness_view(poller: PlanPoller) -> tuple[bool, dict[str, Any]]:
    """``GET /readyz``: ready when every version of every plan is loaded and warmed."""
    status = poller.status()
    causes = status.not_ready()
    generations = {m: a.plan.generation for m, a in sorted(status.active.items())}
    if not causes:
        body: dict[str, Any] = {"ready": True, "generations": generations}
        if status.poll_error:
            body["store_error"] = status.poll_error
        return True, body
    described = "; ".join(_describe_cause(c) for c in causes)
    return False, {
        "error_code": "not_ready",
        "message": f"not ready: {described}",
        "not_ready": causes,
        "generations": generations,
    }


def _describe_cause(cause: Mapping[str, str]) -> str:
    """``bc v9: RegistryError: ...``, ``bc: generation 4 ...`` or just the reason."""
    if cause["version"]:
        return f"{cause['model']} v{cause['version']}: {cause['reason']}"
    if cause["model"]:
        return f"{cause['model']}: {cause['reason']}"
    return cause["reason"]


def _weight(role: str, canary_weight_pct: int) -> int:
    if role == BASELINE:
        return 100 - canary_weight_pct
    return canary_weight_pct if role == CANARY else 0
