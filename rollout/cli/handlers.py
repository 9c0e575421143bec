"""One function per ``rollout`` command (:data:`HANDLERS`), each ``(args) -> exit code``.

Every command that needs the manager runs inside :func:`opened` (the manager on the registry
and store the arguments name, closed when the command ends); every mutating one also runs
inside :func:`audited`, which appends its audit row through :mod:`rollout.audited`. Nothing
heavy is imported at module level: the manager (MLflow, scipy, pandas), the spec (pydantic) and
the store are imported by the commands that use them, so loading this module stays cheap.
A :class:`~rollout.errors.RolloutError` raised here is printed by :func:`rollout.cli.main`.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from rollout.audited import Call, record
from rollout.cli.formatting import (
    format_audit,
    format_detectors,
    format_events,
    format_history,
    format_looks,
    format_monitor,
    format_report,
    format_status,
    to_json,
)
from rollout.cli.parser import os_user
from rollout.settings import Settings

if TYPE_CHECKING:
    from rollout.manager import Manager, Status
    from rollout.store.audit import AuditLog

Handler = Callable[[argparse.Namespace], int]


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings ``main`` read once, at the start (or, called directly, read now)."""
    settings = getattr(args, "settings", None)
    if isinstance(settings, Settings):
        return settings
    return Settings.resolve(
        home=args.home, registry_uri=args.registry_uri, store_url=args.store_url
    )


@contextmanager
def opened(args: argparse.Namespace) -> Iterator[Manager]:
    """The manager on the registry and store ``args`` name; closed when the block ends."""
    from rollout.manager import Manager

    manager = Manager(settings_of(args))
    try:
        yield manager
    finally:
        manager.close()


@contextmanager
def audited(
    log: AuditLog,
    args: argparse.Namespace,
    verb: str,
    model: str | None,
    environment: str | None,
) -> Iterator[dict[str, Any]]:
    """Append the audit row of a mutating CLI verb: ``allowed`` (exit 0) or ``failed`` (2).

    The CLI writes the store directly, so it is not role-checked (whoever can write the store
    is trusted: the embedded default's user, an admin with the database's credentials), but it
    is audited like the API: identity ``--actor`` (claimed, not proven), detail ``via: store``
    and the OS user, plus what the block adds to the yielded detail. (With ``--api`` the verbs
    go through the API instead, as the token's identity: :mod:`rollout.cli.remote`.) The row
    is appended after the action; a failure to append is printed as a warning, and the action
    stands.
    """
    user = os_user()
    call = Call(
        verb,
        model,
        environment,
        args.actor,
        {"via": "store", "os_user": user},
        address=socket.gethostname()[:64],
        user_agent=f"rollout-cli (os user {user})",
    )
    try:
        yield call.detail
    except BaseException as exc:  # Ctrl-C too: whatever it left behind did not succeed
        call.detail["error"] = str(exc) or type(exc).__name__
        record(log, call, "failed", 2, _warn)
        raise
    record(log, call, "allowed", 0, _warn)


NO_GATES_WARNING = (
    "gates: none: nothing judges this rollout; every step passes on its floors alone "
    "(leave gates out for the default gates)"
)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


@contextmanager
def audit_log(args: argparse.Namespace, *, keyed: bool) -> Iterator[AuditLog]:
    """The store's audit log alone (``rollout audit`` needs no registry, so no manager);
    ``keyed`` (to verify) reads the audit key, never making one up."""
    from contract.sql.engine import open_engine
    from rollout.store.audit import AuditLog

    settings = settings_of(args)
    key = settings.audit_key_bytes(create=False) if keyed else None
    engine = open_engine(settings.store_url)
    try:
        yield AuditLog(engine, key)
    finally:
        engine.dispose()


# -- the commands --


def _init(args: argparse.Namespace) -> int:
    """Make the data directory when it is missing (the registry and store are made in it on
    first use); say where it is either way."""
    settings = settings_of(args)
    made = not settings.home.exists()
    settings.ensure_home()
    if args.json:
        shown = {"registry_uri": settings.registry_uri, "store_url": settings.store_url}
        print(to_json({"home": str(settings.home), "made": made, **shown}))
    else:
        print(f"data directory {settings.home}: {'made' if made else 'already there'}")
        print(f"  registry {settings.registry_uri}\n  store    {settings.store_url}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    """Rows through the router and their labels (:mod:`rollout.replay`); progress each second."""
    import asyncio

    from rollout.replay import ReplayResult, label_token_from, read_rows, replay
    from rollout.router_keys import TOKEN_FILE

    frame, labels = read_rows(Path(args.rows), args.label)
    token = None
    if labels is not None:
        token_file = args.label_token_file or settings_of(args).home / "secrets" / TOKEN_FILE
        token = label_token_from(Path(token_file))

    def progress(result: ReplayResult) -> None:
        print(f"replay: {result.line()}", flush=True)

    result = asyncio.run(
        replay(
            args.router,
            args.model,
            frame,
            labels,
            requests=args.requests or len(frame),
            label_token=token,
            concurrency=args.concurrency,
            label_delay_s=args.label_delay,
            wait_s=args.wait,
            progress=None if args.json else progress,
        )
    )
    if args.json:
        print(to_json(result.as_json()))
    elif result.first_error is not None:
        print(f"replay: first failure: {result.first_error}", file=sys.stderr)
    return 0 if result.ok else 1


def _start(args: argparse.Namespace) -> int:
    from rollout.spec import load_spec

    spec = load_spec(args.file) if args.file else None
    candidate = args.candidate or (spec.candidate if spec is not None else None)
    environment = args.env or (spec.environment if spec is not None else None)
    if candidate is None or environment is None:
        missing = "--candidate" if candidate is None else "--env"
        print(f"error: {missing} is required (or set it in the spec)", file=sys.stderr)
        return 2
    if spec is not None and spec.analysis.no_gates:
        _warn(NO_GATES_WARNING)
    with opened(args) as manager:
        with audited(manager.audit, args, "start", args.model, environment) as note:
            rollout_id = manager.start(args.model, candidate, environment, spec, args.actor)
            note["rollout_id"] = rollout_id
        started = manager.rollout(rollout_id)
    if args.json:
        print(to_json(started.to_dict()))
    elif started.baseline_version is None:
        print(
            f"{rollout_id}: initial release of {started.model} v{started.candidate_version} "
            f"in {environment} (100% of traffic, @{environment})"
        )
    else:
        print(f"{rollout_id}: {started.state}: {started.reason}")
    return 0


def _apply(args: argparse.Namespace) -> int:
    from rollout.declarative import apply
    from rollout.spec import load_spec

    spec = load_spec(args.file)
    if spec.analysis.no_gates:
        _warn(NO_GATES_WARNING)
    with (
        opened(args) as manager,
        audited(manager.audit, args, "apply", spec.model, spec.environment) as note,
    ):
        result = apply(manager, spec, args.actor)
        note["result"] = result.message
    print(to_json(result.to_dict()) if args.json else result.message)
    return 0


def _plan(args: argparse.Namespace) -> int:
    from rollout.declarative import format_plan, plan
    from rollout.spec import load_spec

    spec = load_spec(args.file)
    with opened(args) as manager:
        result = plan(manager, spec)
    print(to_json(result.to_dict()) if args.json else format_plan(result))
    return 1 if result.problems else 0  # it would do nothing because of a problem


def _status(args: argparse.Namespace) -> int:
    """Once, or with ``--watch`` the live view until the rollout is no longer active."""
    with opened(args) as manager:
        return show_status(lambda: manager.status(args.model, args.env), args)


def show_status(read: Callable[[], Status], args: argparse.Namespace) -> int:
    """``rollout status`` on a status ``read`` (the store's, or the API's): once, or
    :func:`rollout.cli.live.watch` with ``--watch``."""
    if args.watch:
        from rollout.cli.live import watch

        return watch(read, as_json=args.json, interval_s=args.interval)
    status = read()
    print(to_json(status.to_dict()) if args.json else format_status(status))
    return 0


def _lifecycle(args: argparse.Namespace) -> int:
    with (
        opened(args) as manager,
        audited(manager.audit, args, args.command, args.model, args.env) as note,
    ):
        if args.command == "abort":
            changed = manager.abort(args.model, args.env, args.actor, args.reason)
        else:
            changed = getattr(manager, args.command)(args.model, args.env, args.actor)
        note |= {"rollout_id": changed.id, "state": changed.state}
    text = f"{changed.id}: {changed.state}: {changed.reason}"
    print(to_json(changed.to_dict()) if args.json else text)
    return 0


def _rollback(args: argparse.Namespace) -> int:
    with (
        opened(args) as manager,
        audited(manager.audit, args, "rollback", args.model, args.env) as note,
    ):
        release = manager.rollback(args.model, args.env, args.actor, args.to, args.reason)
        note |= {"release_id": release.id, "version": release.version}
    if args.json:
        print(to_json(release.to_dict()))
        return 0
    reason = (release.evidence or {}).get("reason", "")
    print(f"release {release.id}: {release.model} v{release.version} serves {release.environment}")
    if reason:
        print(f"  {reason}")
    return 0


def _history(args: argparse.Namespace) -> int:
    with opened(args) as manager:
        releases = manager.history(args.model, args.env)
    if args.json:
        print(to_json([release.to_dict() for release in releases]))
    elif not releases:
        print(f"no releases of {args.model} in {args.env}")
    else:
        print(format_history(releases))
    return 0


def _monitor(args: argparse.Namespace) -> int:
    from rollout.spec import parse_duration

    try:
        window_s = parse_duration(args.window)
    except ValueError as exc:
        raise SystemExit(f"rollout monitor: --window: {exc}") from None
    with opened(args) as manager:
        try:
            windows = manager.monitor(args.model, args.env, hours=args.hours, window_s=window_s)
        except ValueError as exc:
            raise SystemExit(f"rollout monitor: {exc}") from None
        kept = manager.kept_windows(args.model, args.env, limit=10)
        alarms = manager.degradations(args.model, args.env, limit=10)
    detectors = next((w for w in reversed(kept) if w.detectors is not None), None)
    if args.json:
        print(
            to_json(
                {
                    "windows": [window.to_dict() for window in windows],
                    "detectors": None if detectors is None else detectors.to_dict(),
                    "alarms": [alarm.to_dict() for alarm in alarms],
                }
            )
        )
    else:
        print(format_monitor(args.model, args.env, windows, args.hours, window_s))
        print(format_detectors(detectors, alarms))
    return 0


def _reference(args: argparse.Namespace) -> int:
    with opened(args) as manager:
        found = manager.reference(args.model, args.version)
    if args.json:
        print(to_json(found.to_dict()))
    elif found.frame is None:
        print(found.why)
        print(
            "log one on the training run: mlflow.log_input(mlflow.data.from_pandas(train_df, "
            'source="train.csv"), context="training"), or log reference.parquet / '
            "reference.csv beside the model (README, 'Training reference')"
        )
    else:
        shown = found.to_dict()
        print(
            f"{args.model} v{found.version}: {found.source}\n"
            f"  {shown['rows']:,} rows (at most 100,000 read), columns: "
            + ", ".join(shown["columns"])
        )
    return 0 if found.frame is not None else 1


def _events(args: argparse.Namespace) -> int:
    with opened(args) as manager:
        events = manager.events(args.rollout_id)
    print(to_json([event.to_dict() for event in events]) if args.json else format_events(events))
    return 0


def _report(args: argparse.Namespace) -> int:
    from rollout.store.records import Release

    with opened(args) as manager:
        report = manager.report(args.rollout_id)
        events = manager.events(args.rollout_id)
        reported = manager.rollout(args.rollout_id)
    if args.json:
        print(to_json(report))
    else:
        releases = [Release(**release) for release in report["releases"]]
        print(format_report(reported, events, releases, report["drift_report"]))
    return 0


def _looks(args: argparse.Namespace) -> int:
    with opened(args) as manager:
        looks = manager.looks(args.rollout_id, args.step - 1 if args.step else None)
        record = manager.rollout(args.rollout_id)
    if args.plot:
        from rollout.plots import plot_looks

        title = (
            f"{record.model} v{record.candidate_version} in {record.environment} "
            f"(rollout {record.id}, {record.state})"
        )
        print(f"wrote {plot_looks(looks, Path(args.plot), title)}")
    elif args.json:
        print(to_json([look.to_dict() for look in looks]))
    else:
        print(format_looks(looks))
    return 0


def _audit(args: argparse.Namespace) -> int:
    if args.verify:
        return _audit_verify(args)
    with audit_log(args, keyed=False) as log:
        rows = log.list(
            model=args.model, environment=args.env, identity=args.identity, limit=args.limit
        )
    if args.json:
        print(to_json([row.to_dict() for row in rows]))
    elif not rows:
        print("no audit rows")
    else:
        print(format_audit(rows))
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    """Walk the chain with the key against the last exported head (``--head``, else the
    settings' head file when it exists); exit 1 naming the first bad entry."""
    from rollout.store.audit import Head

    settings = settings_of(args)
    try:
        if args.head:
            head: Head | None = Head.parse(args.head)
        else:
            path = settings.audit_head_path
            head = Head.read(path) if path.exists() else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with audit_log(args, keyed=True) as log:
        result = log.verify(head)
    if args.json:
        print(to_json(result.to_dict()))
    elif result.ok:
        against = f" (at the exported head of {head.count} rows)" if head else " (no exported head)"
        print(f"audit log ok: {result.rows} rows, head {result.head_hash}{against}")
    elif result.broken_id is not None:
        print(f"audit log broken at row {result.broken_id}: {result.reason}")
    else:
        print(f"audit log broken: {result.reason}")
    return 0 if result.ok else 1


def _api(args: argparse.Namespace) -> int:
    """Serve the API; on the embedded default make the first admin token; with no tokens at
    all refuse to start (exit 2) unless ``--insecure-dev``."""
    import uvicorn

    from rollout.api import create_app
    from rollout.auth import parse_tokens
    from rollout.store.tokens import TokenStore
    from rollout.tokens import NO_TOKENS, Authenticator, ensure_first_admin

    settings = settings_of(args)
    try:
        env_tokens = parse_tokens(settings.api_tokens)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with opened(args) as manager:
        for token in env_tokens.values():  # an environment not in the order acts nowhere
            for name in sorted(token.environments or ()):
                manager.environments.check(name, f"ROLLOUT_API_TOKENS ({token.identity})")
        store = TokenStore(manager.engine)
        written = ensure_first_admin(settings, store, env_tokens)
        if written is not None:
            print(
                f"made the first admin token (identity admin) and wrote it to {written} "
                "(mode 0600); use it with ROLLOUT_TOKEN=$(cat that file) rollout --api URL ...",
                file=sys.stderr,
                flush=True,
            )
        if not Authenticator(env_tokens, store).has_tokens():
            if not args.insecure_dev:
                print(f"error: {NO_TOKENS}", file=sys.stderr)
                return 2
            _warn("--insecure-dev: the API has no tokens; every call gets 401 until one exists")
        app = create_app(manager, env_tokens, store)
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def _token(args: argparse.Namespace) -> int:
    """``rollout token create|list|revoke`` on the store directly (audited ``via: store``)."""
    from contract.sql.engine import open_engine
    from rollout.cli.formatting import format_tokens
    from rollout.cli.remote import print_created, print_revoked
    from rollout.store.audit import AuditLog
    from rollout.store.tokens import TokenStore
    from rollout.tokens import issue, revoke

    settings = settings_of(args)
    engine = open_engine(settings.store_url)
    try:
        store = TokenStore(engine)
        if args.token_command == "list":
            now = store.clock.time()
            listed = [stored.to_dict(now) for stored in store.list()]
            print(to_json(listed) if args.json else format_tokens(listed))
            return 0
        verb = "token_create" if args.token_command == "create" else "token_revoke"
        log = AuditLog(engine, settings.audit_key_bytes())
        with audited(log, args, verb, None, None) as note:
            if args.token_command == "create":
                note |= {
                    "token_identity": args.identity,
                    "token_roles": args.role,
                    "token_environments": args.env,
                }
                issued = issue(store, args.identity, args.role, args.env, args.expires, args.actor)
                note["created_token_id"] = issued.stored.id
                created = {**issued.stored.to_dict(store.clock.time()), "token": issued.token}
            else:
                note["target"] = args.target
                revoked = [
                    s.to_dict(store.clock.time()) for s in revoke(store, args.target, args.actor)
                ]
                note["revoked"] = [item["id"] for item in revoked]
    finally:
        engine.dispose()
    if args.token_command == "create":
        print_created(created, args.json)
    else:
        print_revoked(revoked, args.target, args.json)
    return 0


def _manager(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    with opened(args) as manager:
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, _stop)
        try:
            manager.run(interval_s=args.interval, stop_event=stop, lease_ttl_s=args.lease_ttl)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
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
    """``python -m router`` with the settings' store and registry; on a SQLite store (the
    embedded default) also the home's request id key and label writer (as ``rollout up``
    gives its routers), so its ids can be labelled with ``<home>/secrets/label-writer.token``."""
    settings = settings_of(args)
    os.environ.update(settings.env())
    if settings.store_url.startswith("sqlite"):
        from rollout.router_keys import router_secrets

        os.environ.update(router_secrets(settings.home).env())
    argv = list(args.argv)
    if "--store-url" not in argv:
        argv += ["--store-url", settings.store_url]
    if "--registry-uri" not in argv:
        argv += ["--registry-uri", settings.registry_uri]
    module = importlib.import_module("router.server")
    return int(module.main(argv) or 0)


HANDLERS: dict[str, Handler] = {
    "init": _init,
    "start": _start,
    "apply": _apply,
    "plan": _plan,
    "status": _status,
    "promote": _lifecycle,
    "approve": _lifecycle,
    "pause": _lifecycle,
    "resume": _lifecycle,
    "abort": _lifecycle,
    "rollback": _rollback,
    "history": _history,
    "monitor": _monitor,
    "reference": _reference,
    "events": _events,
    "report": _report,
    "looks": _looks,
    "audit": _audit,
    "replay": _replay,
    "api": _api,
    "token": _token,
    "manager": _manager,
    "demo": _demo,
    "up": _up,
    "router": _router,
}
