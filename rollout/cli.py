"""``rollout``: the command line (argparse; console script ``rollout = rollout.cli:main``).

Global options ``--home``, ``--registry-uri``, ``--store-url`` (else ``$ROLLOUT_*``, else the
data directory, see :mod:`rollout.settings`). Commands::

    rollout start MODEL --candidate V|@alias --env ENV [-f spec.yaml] [--actor NAME]
    rollout apply -f spec.yaml [--actor NAME] [--json]   # idempotent
    rollout plan -f spec.yaml [--json]                   # changes nothing
    rollout status MODEL --env ENV [--json] [--watch [--interval S]]
    rollout promote|approve|pause|resume|abort MODEL --env ENV [--actor NAME]
    rollout rollback MODEL --env ENV [--to RELEASE_ID] [--actor NAME]
    rollout history MODEL --env ENV [--json]
    rollout events ROLLOUT_ID [--json]
    rollout report ROLLOUT_ID [--json]        # the rollout, its events and releases
    rollout audit [MODEL] [--env ENV] [--identity WHO] [--limit N] [--json]   # newest first
    rollout audit --verify [--json]           # walk the hash chain; exit 1 if it is broken
    rollout api [--host 127.0.0.1] [--port 8090]   # the HTTP API (rollout.api)
    rollout manager [--interval 0.5] [--lease-ttl 5]   # until SIGTERM / SIGINT
    rollout demo ... | up ... | router ...    # rollout.demo.run, rollout.up, router.server

``main`` returns the exit code: 0 on success, 2 on a usage error or a :class:`RolloutError`
(printed as one line on stderr).
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import inspect
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import FrameType
from typing import Any

from rollout.errors import RolloutError
from rollout.manager import Manager, Status
from rollout.settings import Settings
from rollout.spec import load_spec
from rollout.store.audit import AuditEntry, AuditLog, Outcome
from rollout.store.records import EventRecord, Release, json_safe

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # usage errors and --help
        return exc.code if isinstance(exc.code, int) else 0
    args.argv = extra
    if extra and args.command not in PASS_THROUGH:
        print(f"rollout: error: unrecognized arguments: {' '.join(extra)}", file=sys.stderr)
        return 2
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except RolloutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


PASS_THROUGH = ("demo", "up", "router")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollout", description="Safe rollouts of MLflow model versions."
    )
    parser.add_argument("--home", help="data directory (ROLLOUT_HOME, default ./.rollout)")
    parser.add_argument("--registry-uri", help="MLflow registry URI (ROLLOUT_REGISTRY_URI)")
    parser.add_argument("--store-url", help="rollout store URL (ROLLOUT_STORE_URL)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str, **kw: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, **kw)
        sub.set_defaults(handler=handler)
        return sub

    def model_env(sub: argparse.ArgumentParser, *, actor: bool = False) -> None:
        sub.add_argument("model", help="registered model name")
        sub.add_argument("--env", required=True, help="environment, e.g. prod")
        if actor:
            sub.add_argument("--actor", default=default_actor(), help="who does this")

    start = command("start", _start, "start a rollout of a model version")
    start.add_argument("model", help="registered model name")
    start.add_argument("--candidate", help="version number or @alias (else the spec's)")
    start.add_argument("--env", help="environment (else the spec's)")
    start.add_argument("-f", "--file", help="rollout spec (YAML); default: steps 10/50/100")
    start.add_argument("--actor", default=default_actor(), help="who starts it")

    apply = command("apply", _apply, "start the rollout a spec declares, unless it exists")
    apply.add_argument("-f", "--file", required=True, help="rollout spec (YAML)")
    apply.add_argument("--actor", default=default_actor(), help="who applies it")
    apply.add_argument("--json", action="store_true", help="print JSON")

    plan = command("plan", _plan, "show what a spec would do (steps, gates, time, approval)")
    plan.add_argument("-f", "--file", required=True, help="rollout spec (YAML)")
    plan.add_argument("--json", action="store_true", help="print JSON")

    status = command("status", _status, "show the plan, the alias and the current rollout")
    model_env(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument(
        "--watch", action="store_true", help="print again on every change until it finishes"
    )
    status.add_argument("--interval", type=float, default=1.0, help="seconds between looks")

    for name, help_text in (
        ("promote", "promote the active rollout now (skip the remaining steps)"),
        ("approve", "approve the active rollout (in prod: not who started it)"),
        ("pause", "pause the active rollout"),
        ("resume", "resume a paused rollout (the current step restarts)"),
        ("abort", "abort the active rollout (traffic back to the baseline)"),
    ):
        sub = command(name, _lifecycle, help_text)
        model_env(sub, actor=True)
        sub.add_argument("--reason", help="why (stored with the event)")

    rollback = command("rollback", _rollback, "roll back the active rollout or the last release")
    model_env(rollback, actor=True)
    rollback.add_argument("--to", type=int, metavar="RELEASE_ID", help="an earlier release")
    rollback.add_argument("--reason", help="why (stored with the release)")

    history = command("history", _history, "release records, newest first")
    model_env(history)
    history.add_argument("--json", action="store_true", help="print JSON")

    events = command("events", _events, "a rollout's transitions with their evidence")
    events.add_argument("rollout_id")
    events.add_argument("--json", action="store_true", help="print JSON")

    report = command("report", _report, "a rollout with its events, evidence and releases")
    report.add_argument("rollout_id")
    report.add_argument("--json", action="store_true", help="print JSON")

    audit = command("audit", _audit, "the audit log of API calls, or --verify its hash chain")
    audit.add_argument("model", nargs="?", help="only this model")
    audit.add_argument("--env", help="only this environment")
    audit.add_argument("--identity", help="only calls by this identity")
    audit.add_argument("--limit", type=int, default=50, help="rows to show (newest first)")
    audit.add_argument(
        "--verify", action="store_true", help="check the chain; exit 1 at the first broken row"
    )
    audit.add_argument("--json", action="store_true", help="print JSON")

    api = command("api", _api, "serve the manager's HTTP API (OpenAPI at /docs)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8090)

    manager = command("manager", _manager, "run the manager loop until SIGTERM/SIGINT")
    manager.add_argument("--interval", type=float, default=0.5, help="seconds between ticks")
    manager.add_argument(
        "--lease-ttl",
        type=float,
        default=5.0,
        help="seconds a standby manager waits for a silent one before taking over",
    )

    command("demo", _demo, "the whole loop on the embedded default", add_help=False)
    command("up", _up, "router + manager (+ mlflow server) on loopback", add_help=False)
    command("router", _router, "serve inference (router.server)", add_help=False)
    return parser


def default_actor() -> str:
    return os.environ.get("ROLLOUT_ACTOR") or _os_user()


def settings_of(args: argparse.Namespace) -> Settings:
    return Settings.resolve(
        home=args.home, registry_uri=args.registry_uri, store_url=args.store_url
    )


def _manager_of(args: argparse.Namespace) -> Manager:
    return Manager(settings_of(args))


@contextmanager
def _audited(
    manager: Manager,
    args: argparse.Namespace,
    verb: str,
    model: str | None,
    environment: str | None,
) -> Iterator[dict[str, Any]]:
    """Append the audit row of a mutating CLI verb: ``allowed`` (exit 0) or ``failed`` (2).

    The CLI writes the store directly, so it is not role-checked (whoever can write the store
    is trusted), but it is audited like the API: identity ``--actor``, detail ``via: cli``
    and the OS user. The row is appended after the action; a failure to append is printed.
    """
    note: dict[str, Any] = {"via": "cli", "os_user": _os_user()}
    outcome: Outcome = "allowed"
    code = 0
    try:
        yield note
    except Exception as exc:
        outcome, code = "failed", 2
        note["error"] = str(exc)
        raise
    finally:
        try:
            AuditLog(manager.engine).append(
                args.actor, verb, model, environment, outcome, code, note
            )
        except Exception as exc:  # the action stands; the missing row must be loud
            print(f"warning: could not append to the audit log: {exc}", file=sys.stderr)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# -- handlers --


def _start(args: argparse.Namespace) -> int:
    spec = load_spec(args.file) if args.file else None
    candidate = args.candidate or (spec.candidate if spec is not None else None)
    environment = args.env or (spec.environment if spec is not None else None)
    if candidate is None or environment is None:
        missing = "--candidate" if candidate is None else "--env"
        print(f"error: {missing} is required (or set it in the spec)", file=sys.stderr)
        return 2
    manager = _manager_of(args)
    try:
        with _audited(manager, args, "start", args.model, environment) as note:
            rollout_id = manager.start(args.model, candidate, environment, spec, args.actor)
            note["rollout_id"] = rollout_id
        record = manager.rollout(rollout_id)
    finally:
        manager.close()
    if record.baseline_version is None:
        print(
            f"{rollout_id}: initial release of {record.model} v{record.candidate_version} "
            f"in {environment} (100% of traffic, @{environment})"
        )
    else:
        print(f"{rollout_id}: {record.state}: {record.reason}")
    return 0


def _apply(args: argparse.Namespace) -> int:
    from rollout.declarative import apply

    spec = load_spec(args.file)
    manager = _manager_of(args)
    try:
        with _audited(manager, args, "apply", spec.model, spec.environment) as note:
            result = apply(manager, spec, args.actor)
            note["result"] = result.message
    finally:
        manager.close()
    if args.json:
        _print_json(result.to_dict())
    else:
        print(result.message)
    return 0


def _plan(args: argparse.Namespace) -> int:
    from rollout.declarative import format_plan, plan

    spec = load_spec(args.file)
    manager = _manager_of(args)
    try:
        result = plan(manager, spec)
    finally:
        manager.close()
    if args.json:
        _print_json(result.to_dict())
    else:
        print(format_plan(result))
    return 0


def _status(args: argparse.Namespace) -> int:
    manager = _manager_of(args)
    shown = ""
    try:
        while True:
            status = manager.status(args.model, args.env)
            if args.json:
                text = json.dumps(
                    json_safe(status.to_dict()),
                    indent=None if args.watch else 2,
                    sort_keys=True,
                    default=str,
                )
            else:
                text = format_status(status)
            if text != shown:
                print(text, flush=True)
                shown = text
            if not args.watch or status.rollout is None or not status.rollout.active:
                return 0
            time.sleep(max(0.05, args.interval))
    except KeyboardInterrupt:
        return 0
    finally:
        manager.close()


def _lifecycle(args: argparse.Namespace) -> int:
    manager = _manager_of(args)
    try:
        with _audited(manager, args, args.command, args.model, args.env) as note:
            if args.command == "abort":
                record = manager.abort(args.model, args.env, args.actor, args.reason)
            else:
                method = getattr(manager, args.command)
                record = method(args.model, args.env, args.actor)
            note |= {"rollout_id": record.id, "state": record.state}
    finally:
        manager.close()
    print(f"{record.id}: {record.state}: {record.reason}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    manager = _manager_of(args)
    try:
        with _audited(manager, args, "rollback", args.model, args.env) as note:
            release = manager.rollback(args.model, args.env, args.actor, args.to, args.reason)
            note |= {"release_id": release.id, "version": release.version}
    finally:
        manager.close()
    reason = (release.evidence or {}).get("reason", "")
    print(f"release {release.id}: {release.model} v{release.version} serves {release.environment}")
    if reason:
        print(f"  {reason}")
    return 0


def _history(args: argparse.Namespace) -> int:
    manager = _manager_of(args)
    try:
        releases = manager.history(args.model, args.env)
    finally:
        manager.close()
    if args.json:
        _print_json([release.to_dict() for release in releases])
    elif not releases:
        print(f"no releases of {args.model} in {args.env}")
    else:
        print(format_history(releases))
    return 0


def _events(args: argparse.Namespace) -> int:
    manager = _manager_of(args)
    try:
        events = manager.events(args.rollout_id)
    finally:
        manager.close()
    if args.json:
        _print_json([event.to_dict() for event in events])
    else:
        print(format_events(events))
    return 0


def _report(args: argparse.Namespace) -> int:
    manager = _manager_of(args)
    try:
        report = manager.report(args.rollout_id)
        events = manager.events(args.rollout_id)
        record = manager.rollout(args.rollout_id)
    finally:
        manager.close()
    if args.json:
        _print_json(report)
        return 0
    print(
        f"{record.id}: {record.model} v{record.candidate_version} in {record.environment} "
        f"({record.strategy}), {record.state}; started by {record.started_by}"
        + (f", approved by {record.approved_by}" if record.approved_by else "")
    )
    print(format_events(events))
    releases = [Release(**release) for release in report["releases"]]
    if releases:
        print(format_history(releases))
    return 0


def _audit(args: argparse.Namespace) -> int:
    from contract.sql.engine import open_engine
    from rollout.store.audit import AuditLog

    engine = open_engine(settings_of(args).store_url)
    try:
        log = AuditLog(engine)
        if args.verify:
            result = log.verify()
            if args.json:
                _print_json(result.to_dict())
            elif result.ok:
                print(f"audit log ok: {result.rows} rows, head {result.head_hash}")
            else:
                print(f"audit log broken at row {result.broken_id}: {result.reason}")
            return 0 if result.ok else 1
        rows = log.list(
            model=args.model, environment=args.env, identity=args.identity, limit=args.limit
        )
    finally:
        engine.dispose()
    if args.json:
        _print_json([row.to_dict() for row in rows])
    elif not rows:
        print("no audit rows")
    else:
        print(format_audit(rows))
    return 0


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from rollout.api import create_app

    manager = _manager_of(args)
    try:
        uvicorn.run(create_app(manager), host=args.host, port=args.port, log_level="info")
    finally:
        manager.close()
    return 0


def _manager(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    manager = _manager_of(args)
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _stop)
    try:
        manager.run(interval_s=args.interval, stop_event=stop, lease_ttl_s=args.lease_ttl)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        manager.close()
    return 0


def _demo(args: argparse.Namespace) -> int:
    return _delegate("rollout.demo.run", "rollout demo", args)


def _up(args: argparse.Namespace) -> int:
    return _delegate("rollout.up", "rollout up", args)


def _delegate(module_name: str, prog: str, args: argparse.Namespace) -> int:
    """Call ``module.main``; its options come from ``module.add_arguments`` if it has one."""
    module = importlib.import_module(module_name)
    sub_args = args
    if hasattr(module, "add_arguments"):
        parser = argparse.ArgumentParser(prog=prog)
        module.add_arguments(parser)
        try:
            sub_args = parser.parse_args(args.argv, namespace=argparse.Namespace(**vars(args)))
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 0
    settings = settings_of(args)
    sub_args.settings = settings
    entry = module.main
    if len(inspect.signature(entry).parameters) >= 2:
        return int(entry(sub_args, settings) or 0)
    return int(entry(sub_args) or 0)


def _router(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    os.environ.update(settings.env())
    argv = list(args.argv)
    if "--store-url" not in argv:
        argv += ["--store-url", settings.store_url]
    if "--registry-uri" not in argv:
        argv += ["--registry-uri", settings.registry_uri]
    module = importlib.import_module("router.server")
    return int(module.main(argv) or 0)


# -- formatting --


def _print_json(value: object) -> None:
    print(json.dumps(json_safe(value), indent=2, sort_keys=True, default=str))


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
    """One table of gate results (test, statistic, p-value, effect, n per arm, verdict)."""
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
            _num(g.get("statistic")),
            _num(g.get("p_value"), 3),
            _num(g.get("effect_size")),
            _num(g.get("threshold"), 3),
            g.get("n_baseline"),
            g.get("n_canary"),
            g.get("verdict"),
        ]
        for g in gates
    ]
    headers = ["gate", "test", "statistic", "p-value", "effect", "threshold", "n base", "n canary"]
    out = [head, table([*headers, "verdict"], rows, indent + "  ")]
    out += [f"{indent}  {g.get('gate')}: {g.get('reason')}" for g in gates if g.get("reason")]
    return "\n".join(out)


STEP_STATES = ("progressing", "paused", "awaiting_approval")


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
        if plan.canary_version is not None:
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
    if record.reason:
        lines.append(f"    {record.reason}")
    if status.next_move:
        lines.append(f"    now: {status.next_move}")
    if status.live is not None and status.live.gates:
        lines.append(format_evidence(status.live.to_dict()))
    if status.events:
        lines.append("  events:")
        lines.append(format_events(status.events).replace("\n", "\n  ").join(["  ", ""]))
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
