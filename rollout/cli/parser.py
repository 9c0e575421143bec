"""The ``rollout`` argument parser: argparse and nothing heavy.

:func:`build_parser` declares every command and option; it imports no handler, so
``rollout --help`` and ``rollout COMMAND --help`` answer without loading the manager, MLflow
or scipy. The chosen command is ``args.command`` (its handler is looked up in
:data:`rollout.cli.handlers.HANDLERS` only after parsing). ``demo``, ``up`` and ``router``
(:data:`PASS_THROUGH`) take their own options: what follows them is left in ``args.argv``.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Callable
from typing import Any

PASS_THROUGH = ("demo", "up", "router")
LOCAL_ONLY = ("api", "manager", "demo", "up", "router", "replay")  # never through --api
ACTOR_HELP = "who does this (default: $ROLLOUT_ACTOR, else the OS user)"


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def bounded(low: float, high: float, what: str) -> Callable[[str], float]:
    """An argparse type: a number of ``what`` from ``low`` to ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not low <= value <= high:  # NaN fails too
            raise argparse.ArgumentTypeError(
                f"expected {what} from {low:g} to {high:g}, got {text}"
            )
        return value

    return parse


watch_interval = bounded(0.5, 60.0, "seconds")  # status --watch: rollout.cli.live's bounds


def clients(text: str) -> int:
    """An argparse type: a whole number of concurrent clients from 1 to 64."""
    value = positive_int(text)
    if value > 64:
        raise argparse.ArgumentTypeError(f"expected at most 64 clients, got {value}")
    return value


def http_url(text: str) -> str:
    """An argparse type: an http(s) URL with a host and a valid port, without a trailing /."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        port = parts.port  # ValueError when out of range
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an http(s) URL, got {text!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"expected an http(s) URL such as http://127.0.0.1:8080, got {text!r}"
        )
    del port
    return text.rstrip("/")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollout", description="Safe rollouts of MLflow model versions."
    )
    parser.add_argument(
        "--home",
        help="data directory (ROLLOUT_HOME, default ./.rollout); refused when it does not exist "
        "(make one with `rollout init`)",
    )
    parser.add_argument("--registry-uri", help="MLflow registry URI (ROLLOUT_REGISTRY_URI)")
    parser.add_argument("--store-url", help="rollout store URL (ROLLOUT_STORE_URL)")
    parser.add_argument(
        "--api",
        metavar="URL",
        help="go through the manager's API at URL as the token's identity (ROLLOUT_API_URL; "
        "the token from ROLLOUT_TOKEN or --token-file)",
    )
    parser.add_argument("--token-file", metavar="FILE", help="file holding the API token")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str, **kw: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text, **kw)

    def model_env(sub: argparse.ArgumentParser, *, actor: bool = False) -> None:
        sub.add_argument("model", help="registered model name")
        sub.add_argument("--env", required=True, help="a configured environment, e.g. prod")
        if actor:
            sub.add_argument("--actor", help=ACTOR_HELP)

    def json_flag(sub: argparse.ArgumentParser, what: str = "print JSON") -> None:
        sub.add_argument("--json", action="store_true", help=what)

    init = command("init", "make the data directory (ROLLOUT_HOME or --home) if it is missing")
    json_flag(init)

    start = command("start", "start a rollout of a model version")
    start.add_argument("model", help="registered model name")
    start.add_argument("--candidate", help="version number or @alias (else the spec's)")
    start.add_argument("--env", help="environment (else the spec's)")
    start.add_argument("-f", "--file", help="rollout spec (YAML); default: steps 10/50/100")
    start.add_argument("--actor", help=ACTOR_HELP)
    json_flag(start, "print the rollout as JSON")

    apply = command("apply", "start the rollout a spec declares, unless it exists")
    apply.add_argument("-f", "--file", required=True, help="rollout spec (YAML)")
    apply.add_argument("--actor", help=ACTOR_HELP)
    apply.add_argument("--json", action="store_true", help="print JSON")

    plan = command(
        "plan",
        "show what a spec would do (steps, gates, time, approval); exit 1 when it would do "
        "nothing because of a problem",
    )
    plan.add_argument("-f", "--file", required=True, help="rollout spec (YAML)")
    plan.add_argument("--json", action="store_true", help="print JSON")

    status = command("status", "show the plan, the alias and the current rollout")
    model_env(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument(
        "--watch",
        action="store_true",
        help="a live view until the rollout finishes (Ctrl-C stops): redrawn in place on a "
        "terminal, else a snapshot on every change",
    )
    status.add_argument(
        "--interval", type=watch_interval, default=1.0, help="seconds between looks (0.5 to 60)"
    )

    for name, help_text in (
        ("promote", "promote the active rollout now (skip the remaining steps)"),
        ("approve", "approve the active rollout (in prod: not who started it)"),
        ("pause", "pause the active rollout"),
        ("resume", "resume a paused rollout (the current step restarts)"),
        ("abort", "abort the active rollout (traffic back to the baseline)"),
    ):
        sub = command(name, help_text)
        model_env(sub, actor=True)
        sub.add_argument("--reason", help="why (stored with the event)")
        json_flag(sub, "print the rollout as JSON")

    rollback = command("rollback", "roll back the active rollout or the last release")
    model_env(rollback, actor=True)
    rollback.add_argument("--to", type=int, metavar="RELEASE_ID", help="an earlier release")
    rollback.add_argument("--reason", help="why (stored with the release)")
    json_flag(rollback, "print the release as JSON")

    history = command("history", "release records, newest first")
    model_env(history)
    history.add_argument("--json", action="store_true", help="print JSON")

    monitor = command(
        "monitor", "what a model serves in an environment, window by window (rollout or not)"
    )
    model_env(monitor)
    monitor.add_argument("--hours", type=float, default=24.0, help="how far back (default 24)")
    monitor.add_argument("--window", default="1h", help="window length (default 1h)")
    monitor.add_argument("--json", action="store_true", help="print JSON")

    reference = command(
        "reference", "the training reference of a model version (for input drift), or why none"
    )
    reference.add_argument("model", help="registered model name")
    reference.add_argument("version", help="version number or @alias")
    reference.add_argument("--json", action="store_true", help="print JSON")

    events = command("events", "a rollout's transitions with their evidence")
    events.add_argument("rollout_id")
    events.add_argument("--json", action="store_true", help="print JSON")

    report = command("report", "a rollout with its events, evidence and releases")
    report.add_argument("rollout_id")
    report.add_argument("--json", action="store_true", help="print JSON")

    looks = command("looks", "every kept look's gate bounds of a rollout, as a table or a plot")
    looks.add_argument("rollout_id")
    looks.add_argument("--step", type=positive_int, help="only this step (1 is the first)")
    looks.add_argument("--json", action="store_true", help="print JSON (every kept look)")
    looks.add_argument("--plot", metavar="FILE", help="draw the bounds to FILE (.png or .svg)")

    audit = command("audit", "the audit log of API calls, or --verify its hash chain")
    audit.add_argument("model", nargs="?", help="only this model")
    audit.add_argument("--env", help="only this environment")
    audit.add_argument("--identity", help="only calls by this identity")
    audit.add_argument("--limit", type=int, default=50, help="rows to show (newest first)")
    audit.add_argument(
        "--verify", action="store_true", help="check the chain; exit 1 at the first broken row"
    )
    audit.add_argument(
        "--head",
        metavar="FILE_OR_HASH:COUNT",
        help="with --verify: the last exported head (a head file, or HASH:COUNT); "
        "default $ROLLOUT_AUDIT_HEAD_FILE or $ROLLOUT_HOME/audit-head.jsonl when it exists",
    )
    audit.add_argument("--json", action="store_true", help="print JSON")

    replay = command(
        "replay",
        "send a file of rows through the router, a request per row, and each row's label to "
        "/v1/feedback for the reply's x-request-id (exit 1 when a request failed or a label "
        "was refused)",
    )
    replay.add_argument("model", help="registered model name (the router's route)")
    replay.add_argument(
        "rows", help="a .csv, .jsonl or .parquet file (at most 256 MiB and 1,000,000 rows)"
    )
    replay.add_argument(
        "--label",
        metavar="COLUMN",
        help="the column holding the true label: left out of the inputs, sent as the label",
    )
    replay.add_argument(
        "--router",
        type=http_url,
        default="http://127.0.0.1:8080",
        help="router URL (default: rollout up's)",
    )
    replay.add_argument(
        "--requests",
        type=positive_int,
        help="how many to send (default: each row once; the rows repeat when there are more)",
    )
    replay.add_argument(
        "--concurrency",
        type=clients,
        default=4,
        help="concurrent clients, 1 to 64 (default 4)",
    )
    replay.add_argument(
        "--label-delay",
        type=bounded(0, 3600, "seconds"),
        default=0.5,
        help="seconds from a reply to its label (default 0.5)",
    )
    replay.add_argument(
        "--label-token-file",
        metavar="FILE",
        help="the label writer's token (default: <home>/secrets/label-writer.token)",
    )
    replay.add_argument(
        "--wait",
        type=bounded(0, 600, "seconds"),
        default=60.0,
        help="seconds to wait for the router's /healthz first (default 60)",
    )
    json_flag(replay, "print the counts as JSON at the end instead of progress lines")

    api = command("api", "serve the manager's HTTP API (OpenAPI at /docs)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8090)
    api.add_argument(
        "--insecure-dev",
        action="store_true",
        help="start even with no tokens at all (every call gets 401 until one is created)",
    )

    token = command("token", "create, list or revoke the API's tokens (admin)")
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token_commands.add_parser("create", help="make a token; it is printed once")
    create.add_argument("--identity", required=True, help="who the token acts as")
    create.add_argument(
        "--role",
        action="append",
        required=True,
        help="viewer, scientist, deployer, approver or admin (repeat for several)",
    )
    create.add_argument(
        "--env", action="append", help="an environment it may act in (repeat; default: all)"
    )
    create.add_argument(
        "--expires", default="30d", help="lifetime: 30d, 12h, 90m, 2w or never (default 30d)"
    )
    create.add_argument("--actor", help=ACTOR_HELP)
    create.add_argument("--json", action="store_true", help="print JSON")
    listing = token_commands.add_parser("list", help="every token (never the token itself)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = token_commands.add_parser("revoke", help="revoke a token, or all of an identity's")
    revoke.add_argument("target", metavar="ID|IDENTITY")
    revoke.add_argument("--actor", help=ACTOR_HELP)
    revoke.add_argument("--json", action="store_true", help="print JSON")

    manager = command("manager", "run the manager loop until SIGTERM/SIGINT")
    manager.add_argument("--interval", type=float, default=0.5, help="seconds between ticks")
    manager.add_argument(
        "--lease-ttl",
        type=float,
        default=5.0,
        help="seconds a standby manager waits for a silent one before taking over",
    )

    command("demo", "the whole loop on the embedded default", add_help=False)
    command("up", "router + manager (+ mlflow server) on loopback", add_help=False)
    command("router", "serve inference (router.server)", add_help=False)
    return parser


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
