"""What the rollout page shows, gathered from stored evidence and one bounded sample.

The timeline is the rollout's events (each transition with its actor, reason and evidence);
the gates' picture and the traffic over time come from the kept looks (:mod:`rollout.store.
looks`, bounded per step); the last verdict's gates from the newest event with evidence. Only
the distributions and the per-arm error rate and latency read prediction rows: at most
:data:`~rollout.store.page_samples.SAMPLE_PER_ARM` of each arm (:mod:`rollout.store.page_samples`,
its statistics :mod:`rollout.web.sample`); for a
finished rollout whose rows retention pruned, the sample the manager kept when it finished. The
pictures of the last few page states are kept in memory, so a reload with nothing new logged
draws nothing. With neither rows nor a kept sample, the page says so and the rest renders.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from monitors.feature_drift import FeatureDriftTable
from rollout.store.page_samples import kept_sample, last_evidence, sample, window_start
from rollout.store.records import RolloutRecord
from rollout.stored import parse_spec
from rollout.web import charts
from rollout.web.overview import alpha_spent, look_verdict
from rollout.web.sample import arm_stats, feature_drift, numeric

if TYPE_CHECKING:
    from rollout.manager import Manager

log = logging.getLogger(__name__)

MAX_EVENTS = 500
TOP_FEATURES = 3
DRAWN_KEPT = 32  # pictures of this many page states are kept (a reload of the same state
# while nothing new was logged costs no drawing)
_drawn: dict[tuple[object, ...], tuple[FeatureDriftTable | None, tuple[str | None, ...]]] = {}


def rollout_context(manager: Manager, rollout: RolloutRecord, now: float) -> dict[str, Any]:
    events = manager.events(rollout.id)[-MAX_EVENTS:]
    looks = manager.looks(rollout.id)
    evidence = last_evidence(events)
    step_weights = [step.weight_pct for step in parse_spec(rollout.spec).steps()]
    since = window_start(rollout, evidence)
    taken = sample(manager.engine, rollout.id, since)
    kept_at = None  # when the kept sample was taken, if the page draws from it
    if not rollout.active and not any(taken[arm].n for arm in taken):
        kept = kept_sample(manager.engine, rollout.id)
        if kept is not None and any(got.n for got in kept[1].values()):
            kept_at, taken = kept
    arms = [arm_stats(taken[arm]) for arm in ("baseline", "canary") if taken[arm].n]
    baseline, canary = taken["baseline"], taken["canary"]
    title = f"{rollout.model} v{rollout.candidate_version} in {rollout.environment}"
    drawn = (
        rollout.id,
        rollout.row_version,
        tuple((look.step_index, look.seq) for look in looks[-1:]),
        tuple((taken[arm].n, taken[arm].errors, len(taken[arm].outputs)) for arm in taken),
        tuple(latest.latencies_ms[0] for latest in taken.values() if latest.n),
    )
    cached = _drawn.get(drawn)
    if cached is None:
        drift = _drawn_or_none(lambda: feature_drift(baseline.features, canary.features))
        panels: list[tuple[str, list[float], list[float]]] = []
        if baseline.outputs or canary.outputs:
            panels.append(("output", baseline.outputs, canary.outputs))
        shown = [f for f in drift.features if f.kind == "numeric"] if drift is not None else []
        for f in shown[:TOP_FEATURES]:
            panels.append(
                (f"{f.name} (KS {f.distance:.2f}, adj. p {f.q_value:.2g})",
                 numeric(baseline.features, f.name), numeric(canary.features, f.name))
            )  # fmt: skip
        svgs = (
            _drawn_or_note(lambda: charts.gates_svg(looks, title)) if looks else None,
            _drawn_or_note(lambda: charts.traffic_svg(looks, step_weights)) if looks else None,
            _drawn_or_note(lambda: charts.arms_svg(arms)) if arms else None,
            _drawn_or_note(lambda: charts.distributions_svg(panels)) if panels else None,
        )
        cached = (drift, svgs)
        _drawn[drawn] = cached
        while len(_drawn) > DRAWN_KEPT:
            _drawn.pop(next(iter(_drawn)))
    drift, pictures = cached
    return {
        "rollout": rollout,
        "spec_text": json.dumps(json.loads(rollout.spec), indent=2, sort_keys=True),
        "events": events,
        "evidence": evidence,
        "alpha_spent": alpha_spent(evidence, rollout),
        "newest_look": looks[-1] if looks else None,
        "newest_verdict": look_verdict(looks[-1]) if looks else None,
        "step_weights": step_weights,
        "looks_count": len(looks),
        "gates_svg": pictures[0],
        "traffic_svg": pictures[1],
        "arms": arms,
        "arms_svg": pictures[2],
        "drift": drift,
        "distributions_svg": pictures[3],
        "sampled": {arm: taken[arm].n for arm in taken},
        "since": since,
        "kept_at": kept_at,
        "age_s": max(0.0, now - rollout.created_at),
    }


def _drawn_or_note(draw: Callable[[], str]) -> str:
    """A picture, or (should drawing fail) a note saying why: the page still renders."""
    try:
        return draw()
    except Exception as exc:
        log.exception("could not draw a picture of the rollout page")
        return f"<p class='error'>could not draw this picture: {html.escape(str(exc)[:200])}</p>"


def _drawn_or_none(compute: Callable[[], FeatureDriftTable | None]) -> FeatureDriftTable | None:
    """The feature-drift table, or None (logged) should it fail: the page still renders."""
    try:
        return compute()
    except Exception:
        log.exception("could not compare the features of the rollout page")
        return None
