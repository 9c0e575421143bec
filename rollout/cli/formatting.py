"""The CLI's text: tables of status, events, evidence, history and audit rows, and JSON.

Pure functions from records to strings (the handlers print them). Nothing heavy is imported
here: the record types are for type checking only, and :func:`to_json` imports the store's
``json_safe`` when it is called. (``rollout plan``'s text is
:func:`rollout.declarative.format_plan`.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rollout.degradation import KeptWindow
    from rollout.manager import Status
    from rollout.store.audit import AuditEntry
    from rollout.store.looks import LookRecord
    from rollout.store.monitoring import Window
    from rollout.store.records import EventRecord, Release, RolloutRecord

STEP_STATES = ("progressing", "paused", "awaiting_approval")


def to_json(value: object, indent: int | None = 2) -> str:
    """JSON with sorted keys, NaN/inf as null and anything else unknown as its ``str``."""
    from rollout.store.records import json_safe

    return json.dumps(json_safe(value), indent=indent, sort_keys=True, default=str)


def when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "") -> str:
    cells = [[str(h) for h in headers], *[["-" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(indent + line.rstrip() for line in lines)


def _num(value: object, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def format_evidence(evidence: dict[str, Any], indent: str = "    ") -> str:
    """One table of gate results (test, effect, its anytime-valid bounds, the margin, the
    gate's alpha, n per arm, verdict), then each gate's reason."""
    gates = evidence.get("gates") or []
    if evidence.get("kind", "step") != "step":
        return f"{indent}{evidence.get('kind')} evidence: {evidence.get('verdict')}: " + str(
            evidence.get("reason", "")
        )
    head = (
        f"{indent}{evidence.get('kind', 'step')} evidence: {evidence.get('verdict')} "
        f"(baseline n={evidence.get('n_baseline')}, canary n={evidence.get('n_canary')})"
    )
    if not gates:
        return f"{head}: {evidence.get('reason', '')}"
    rows = [
        [
            g.get("gate"),
            g.get("test"),
            _num(g.get("effect_size")),
            f"{_num(g.get('ci_low'))} to {_num(g.get('ci_high'))}",
            _num(g.get("threshold"), 3),
            _num(g.get("alpha"), 3) if g.get("blocking", True) else "advisory",
            g.get("n_baseline"),
            g.get("n_canary"),
            g.get("verdict"),
        ]
        for g in gates
    ]
    headers = ["gate", "test", "effect", "bounds", "margin", "alpha", "n base", "n canary"]
    out = [head, table([*headers, "verdict"], rows, indent + "  ")]
    out += [f"{indent}  {g.get('gate')}: {g.get('reason')}" for g in gates if g.get("reason")]
    budget = error_budget(gates)
    if budget:
        out.append(f"{indent}  {budget}")
    return "\n".join(out)


def error_budget(gates: Sequence[dict[str, Any]]) -> str:
    """The rollout's error budget as the gates spend it: each blocking gate's share of alpha,
    committed when the rollout starts to one confidence sequence over its whole window, so
    looks, steps, pauses and resumes spend nothing more."""
    shares = [float(g["alpha"]) for g in gates if g.get("blocking", True) and g.get("alpha")]
    if not shares:
        return ""
    total = sum(shares)
    names = [str(g.get("gate", "")) for g in gates]
    if any(name.startswith("slo_") or name.endswith("_history") for name in names):
        return (
            f"error budget of the candidate alone (its own): alpha {total:.3g}, "
            f"{shares[0]:.3g} to each of {len(shares)} blocking gate"
            f"{'s' if len(shares) > 1 else ''} (its SLO and history), one confidence sequence "
            "each over the 100% step"
        )
    return (
        f"error budget: alpha spent {total:.3g} of {total:.3g}, all at the start: "
        f"{shares[0]:.3g} to each of {len(shares)} blocking gate{'s' if len(shares) > 1 else ''}"
        ", one confidence sequence each over the rollout (no look, step, pause or resume "
        "spends more)"
    )


def format_events(events: Sequence[EventRecord]) -> str:
    lines: list[str] = []
    for event in events:
        shows_step = event.step_index is not None and event.to_state in STEP_STATES
        step = f" [step {(event.step_index or 0) + 1}]" if shows_step else ""
        lines.append(
            f"{when(event.ts)}  {event.from_state or '-'} → {event.to_state}{step}  "
            f"({event.actor}) {event.reason}"
        )
        if event.evidence:
            lines.append(format_evidence(dict(event.evidence)))
    return "\n".join(lines) if lines else "no events"


def format_status(status: Status) -> str:
    lines = [f"{status.model} in {status.environment}"]
    plan = status.plan
    if plan is None:
        lines.append("  plan: none (never released here)")
    else:
        serving = f"v{plan.baseline_version}"
        if plan.canary_version is not None and plan.canary_weight_pct >= 100:
            # a 100% step or a watch: the baseline stays loaded for the failover and a rollback
            serving = f"v{plan.canary_version} 100% (v{plan.baseline_version} loaded beside it)"
        elif plan.canary_version is not None:
            serving += f" {100 - plan.canary_weight_pct}% + canary v{plan.canary_version} "
            serving += f"{plan.canary_weight_pct}%"
        else:
            serving += " 100%"
        lines.append(f"  plan: {serving} (generation {plan.generation})")
    alias = f"v{status.alias_version}" if status.alias_version else "not set"
    lines.append(f"  alias @{status.environment}: {alias}")
    record = status.rollout
    if record is None:
        lines.append("  rollout: none")
        return "\n".join(lines)
    lines.append(
        f"  rollout {record.id}: {record.state} — v{record.candidate_version} over "
        f"{'v' + record.baseline_version if record.baseline_version else 'nothing'}, "
        f"started by {record.started_by} at {when(record.created_at)}"
        + (f", approved by {record.approved_by}" if record.approved_by else "")
    )
    lines += status_notes(status, "    ")
    if status.live is not None and status.live.gates:
        lines.append(format_evidence(status.live.to_dict()))
    if status.events:
        lines.append("  events:")
        lines.append(format_events(status.events).replace("\n", "\n  ").join(["  ", ""]))
    return "\n".join(lines)


def status_notes(status: Status, indent: str) -> list[str]:
    """The rollout's last reason, what the manager would do now and what the step needs."""
    record = status.rollout
    notes = [record.reason] if record is not None and record.reason else []
    if status.next_move:
        notes.append(f"now: {status.next_move}")
    if status.expected:
        notes.append(f"expected: {status.expected}")
    return [indent + note for note in notes]


def format_report(
    record: RolloutRecord,
    events: Sequence[EventRecord],
    releases: Sequence[Release],
    pictures: Mapping[str, Any] | None = None,
) -> str:
    """A rollout in one line, then its events (with evidence), the releases it made, and
    where its drift report and dashboard page are (``pictures``: the report's
    ``drift_report``)."""
    lines = [
        f"{record.id}: {record.model} v{record.candidate_version} in {record.environment} "
        f"({record.strategy}), {record.state}; started by {record.started_by}"
        + (f", approved by {record.approved_by}" if record.approved_by else ""),
        format_events(events),
    ]
    if releases:
        lines.append(format_history(releases))
    if pictures:
        url = pictures.get("url")
        lines.append(
            f"drift report: {'GET ' + url if url else 'none yet'} on the API; "
            f"dashboard page: {pictures.get('dashboard')}"
        )
    return "\n".join(lines)


def format_audit(rows: Sequence[AuditEntry]) -> str:
    table_rows = [
        [
            row.id,
            when(row.ts),
            row.identity,
            row.verb,
            row.model,
            row.environment,
            row.outcome,
            row.status_code,
            _audit_detail(row),
        ]
        for row in rows
    ]
    headers = ["id", "when", "identity", "verb", "model", "env", "outcome", "status", "detail"]
    return table(headers, table_rows)


def _audit_detail(row: AuditEntry) -> str | None:
    detail = json.loads(row.detail)
    if "message" in detail:
        return str(detail["message"])
    shown = ", ".join(f"{k}={v}" for k, v in sorted(detail.items()) if v is not None)
    return shown or None


def format_tokens(tokens: Sequence[Mapping[str, Any]]) -> str:
    """The API's tokens (``GET /v1/tokens`` or the store's, as dicts); never a token itself."""
    if not tokens:
        return "no tokens (ROLLOUT_API_TOKENS may still hold some)"
    rows = [
        [
            t["id"],
            t["identity"],
            "+".join(t["roles"]),
            "+".join(t["environments"]) if t["environments"] else "all",
            when(t["created_at"]),
            t["created_by"],
            when(t["expires_at"]) if t["expires_at"] is not None else "never",
            t["state"] + (f" by {t['revoked_by']}" if t.get("revoked_by") else ""),
            when(t["last_used_at"]) if t.get("last_used_at") is not None else "-",
        ]
        for t in tokens
    ]
    headers = ["id", "identity", "roles", "envs", "created", "by", "expires", "state", "used"]
    return table(headers, rows)


def format_history(releases: Sequence[Release]) -> str:
    rows = [
        [
            r.id,
            r.kind,
            f"v{r.version}",
            f"v{r.previous_version}" if r.previous_version else None,
            r.outcome,
            r.started_by,
            r.approved_by,
            when(r.finished_at or r.started_at),
            (r.artifact_digest or "")[:19] or None,
            (r.config_hash or "")[:12] or None,
            (r.git_commit or "")[:10] or None,
            r.rollout_id,
        ]
        for r in releases
    ]
    headers = [
        "release",
        "kind",
        "version",
        "previous",
        "outcome",
        "started by",
        "approved by",
        "finished",
        "digest",
        "config",
        "commit",
        "rollout",
    ]
    return table(headers, rows)


def format_looks(looks: Sequence[LookRecord], per_step: int = 12) -> str:
    """Per step, a table of kept looks (at most ``per_step``, evenly spread, the newest
    always): canary and baseline requests, then each gate's bounds and verdict."""
    if not looks:
        return "no looks kept yet (a look is kept when a step's judged window grows)"
    out: list[str] = []
    for step in sorted({look.step_index for look in looks}):
        kept = [look for look in looks if look.step_index == step]
        shown = _spread(kept, per_step)
        gates = list(dict.fromkeys(gate.gate for look in kept for gate in look.gates))
        rows = []
        for look in shown:
            by_gate = {gate.gate: gate for gate in look.gates}
            cells: list[object] = [look.seq, look.n_canary, look.n_baseline]
            for name in gates:
                gate = by_gate.get(name)
                cells.append(
                    "-"
                    if gate is None
                    else f"{_num(gate.low)} to {_num(gate.high)} {gate.verdict[:4]}"
                )
            rows.append(cells)
        margins = ", ".join(
            f"{name} {_num(gate.threshold)}"
            for name in gates
            if (gate := next((g for g in kept[-1].gates if g.gate == name), None)) is not None
        )
        out.append(f"step {step + 1}: {len(kept)} looks kept, {len(shown)} shown")
        out.append(f"  margins: {margins}")
        out.append(table(["look", "canary", "baseline", *gates], rows, indent="  "))
    return "\n".join(out)


def _spread(items: Sequence[LookRecord], most: int) -> list[LookRecord]:
    if len(items) <= most:
        return list(items)
    picks = {round(i * (len(items) - 1) / (most - 1)) for i in range(most)}
    return [items[i] for i in sorted(picks)]


def format_monitor(
    model: str, environment: str, windows: Sequence[Window], hours: float, window_s: float
) -> str:
    """``rollout monitor``: one block per window (oldest first), one line per version."""
    head = f"{model} in {environment}: windows of {window_s:g} s over the last {hours:g} h"
    if not windows:
        return f"{head}\n  no requests logged"
    lines = [head]
    for window in windows:
        lines.append(
            f"  {when(window.start)} to {when(window.end)[11:]}  {window.requests:,} requests"
        )
        for v in window.versions:
            latency = " ".join(
                f"{name} {value:.3g} ms"
                for name, value in v.latency_ms.items()
                if value is not None
            )
            rate = v.error_rate
            parts = [
                f"v{v.version}: {v.requests:,} requests",
                f"{rate:.2%} failed" if rate is not None else "none served",
            ]
            if latency:
                parts.append(latency)
            if v.failovers:
                parts.append(f"answered {v.failovers:,} failovers")
            if v.outputs:
                parts.append(
                    "outputs " + ", ".join(f"{k}: {share:.1%}" for k, share in v.outputs.items())
                )
            if v.output_mean is not None and len(v.outputs) > 1:
                parts.append(f"mean {v.output_mean:.4g}")
            if v.labelled:
                assert v.correct_share is not None
                parts.append(f"{v.labelled:,} labelled, {v.correct_share:.1%} correct")
            lines.append("    " + "; ".join(parts))
    return "\n".join(lines)


def format_detectors(latest: KeptWindow | None, alarms: Sequence[KeptWindow]) -> str:
    """``rollout monitor``'s last part: the serving release's change detectors after the
    newest kept window, and the newest alarms (rollout/degradation.py)."""
    from monitors.changes import ChangeDetector

    lines = ["change detectors (at most one false alarm per 30 days of hourly windows):"]
    if latest is None or latest.detectors is None:
        lines.append("  no window kept yet (the manager keeps each closed window)")
    elif "warming_up" in latest.detectors:
        ref = latest.detectors["warming_up"]
        lines.append(
            f"  v{latest.version}: warming up on its first windows: {ref['requests']:,} "
            f"requests over {ref['windows']} window(s) so far"
        )
    else:
        parts = []
        for name, stream in latest.detectors["streams"].items():
            detector = ChangeDetector.from_dict(stream["detector"])
            where = f" over {stream['bound_ms']:.3g} ms" if name == "latency" else ""
            parts.append(
                f"{name}{where} held to {stream['p0']:.3%}, log statistic "
                f"{max(detector.log_statistic, 0.0):.2f} of {detector.log_threshold:.2f}"
            )
        lines.append(f"  v{latest.version} after {when(latest.end)}: " + "; ".join(parts))
    if latest is not None and "input_drift" in latest.summary:
        lines.append(f"  inputs: {_inputs_text(latest.summary['input_drift'])}")
    lines.append("alarms:" if alarms else "alarms: none")
    for alarm in alarms:
        lines.append(f"  {when(alarm.start)} to {when(alarm.end)[11:]}  {alarm.alarm}")
    return "\n".join(lines)


def _inputs_text(drift: dict[str, Any]) -> str:
    """A kept window's input drift, in a line."""
    if drift.get("is_reference"):
        return f"this window is the reference: {drift['source']}"
    if "features" not in drift:
        return f"not compared ({drift.get('why', '?')}; {drift.get('rows', 0):,} rows)"
    most = ", ".join(f"{name} {distance:.2f}" for name, distance, _, _ in drift["most"])
    return (
        f"{drift['drifted']} of {drift['features']} features drifted over {drift['rows']:,} "
        f"requests from {drift['source']}{f' (most: {most})' if most else ''}"
    )
