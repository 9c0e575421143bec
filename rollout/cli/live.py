"""``rollout status --watch``: a live view of a rollout, the same on the store and through the API.

:func:`format_live` shows what a watcher needs at a glance: the steps (done, current, to come)
with their weights, the traffic split the router applies, the requests per arm in the current
step against the canary requests and time the step needs, each gate's verdict and bounds
against its margin (:func:`rollout.cli.formatting.format_evidence`), and what the manager would
do now. With no active rollout it is :func:`~rollout.cli.formatting.format_status`.

:func:`watch` runs the loop of :func:`rollout.watch.changes` over ``read`` (a status read on the
store, or ``GET .../status`` through the API): on a terminal each change redraws the screen in
place (ANSI home + clear; the step's elapsed time is shown, so the view moves every
``interval_s``); otherwise each change is appended as a plain snapshot (no elapsed time, so
only a real change prints), and with ``--json`` one JSON document a line. It returns 0 when
the rollout is no longer active, and 130 on Ctrl-C, with nothing half-printed. The interval
is bounded by :data:`MIN_INTERVAL_S` and :data:`MAX_INTERVAL_S` (the parser refuses others).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from rollout.cli.formatting import format_evidence, format_status, status_notes, to_json
from rollout.watch import changes, rollout_active

if TYPE_CHECKING:
    from rollout.lifecycle import Step
    from rollout.queries import Status

MIN_INTERVAL_S = 0.5
MAX_INTERVAL_S = 60.0
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear the screen
INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _steps(status: Status) -> tuple[Step, ...]:
    from rollout.errors import SpecError
    from rollout.stored import parse_spec

    assert status.rollout is not None
    try:
        return parse_spec(status.rollout.spec).steps()
    except (SpecError, ValueError):  # a spec this version cannot read: show no steps
        return ()


def _step_line(steps: tuple[Step, ...], current: int, active: bool) -> str:
    parts = []
    for index, step in enumerate(steps):
        share = (
            f"shadow {step.shadow_fraction:.0%}" if step.shadow_fraction else f"{step.weight_pct}%"
        )
        mark = "done" if index < current else ("now" if index == current and active else "")
        parts.append(f"{index + 1}) {share}" + (f" {mark}" if mark else ""))
    return "  steps: " + "  ".join(parts) if parts else "  steps: -"


def _step_requests(live: dict[str, Any] | None) -> int:
    """The canary requests of the current step (``step_requests``, else ``n_canary``)."""
    if live is None:
        return 0
    in_step = live.get("step_requests")
    return int(in_step if in_step is not None else live.get("n_canary") or 0)


def format_live(status: Status, now: float | None = None) -> str:
    """The live view of ``status``; ``now`` (epoch seconds) adds the step's elapsed time."""
    record = status.rollout
    if record is None or not record.active:
        return format_status(status)
    steps = _steps(status)
    index = record.step_index
    baseline = f"v{record.baseline_version}" if record.baseline_version else "nothing"
    lines = [
        f"{status.model} in {status.environment}: rollout {record.id} {record.state}, "
        f"v{record.candidate_version} over {baseline}, started by {record.started_by}",
        _step_line(steps, index, record.active),
    ]
    plan = status.plan
    if plan is not None:
        canary = (
            f", canary v{plan.canary_version} {plan.canary_weight_pct}%"
            if plan.canary_version is not None
            else ""
        )
        lines.append(
            f"  traffic: baseline v{plan.baseline_version} {100 - plan.canary_weight_pct}%"
            f"{canary} (plan generation {plan.generation})"
        )
    # the evidence as a mapping: the store's StepEvidence, or the API's JSON of it
    live = status.live.to_dict() if status.live is not None else None
    step = steps[index] if 0 <= index < len(steps) else None
    if step is not None:
        canary_n = _step_requests(live)
        baseline_n = live["n_baseline"] if live is not None else 0
        needs = f"at least {_duration(step.min_duration_s)}" if step.min_duration_s else "no wait"
        if step.max_duration_s is not None:
            needs += f", at most {_duration(step.max_duration_s)}"
        elapsed = ""
        if now is not None and record.step_started_at is not None:
            elapsed = f"{_duration(now - record.step_started_at)} in, "
        share = min(canary_n / step.min_requests, 1.0) if step.min_requests else 1.0
        lines.append(
            f"  requests in step {index + 1}: canary {canary_n:,} of {step.min_requests:,} "
            f"needed ({share:.0%}), baseline {baseline_n:,}; time: {elapsed}{needs}"
        )
    if live is not None and live.get("gates"):
        lines.append(format_evidence(live, indent="  "))
    elif live is not None:
        lines.append(f"  gates: {live.get('verdict')}: {live.get('reason', '')}")
    return "\n".join([*lines, *status_notes(status, "  ")])


def watch(
    read: Callable[[], Status],
    *,
    as_json: bool,
    interval_s: float,
    out: TextIO | None = None,
    clock: Callable[[], float] = time.time,
    wait: Callable[[float], object] = time.sleep,
) -> int:
    """Print ``read()`` on every change until its rollout is no longer active (see above)."""
    stream = out if out is not None else sys.stdout
    tty = stream.isatty() and not as_json

    def render(status: Status) -> str:
        if as_json:
            return to_json(status.to_dict(), indent=None)
        return format_live(status, clock() if tty else None)

    try:
        for text in changes(read, render, rollout_active, interval_s, wait):
            stream.write((CLEAR + text if tty else text) + "\n")
            stream.flush()
    except KeyboardInterrupt:
        stream.write("\n")
        stream.flush()
        return INTERRUPTED
    return 0
