"""``rollout``: the command line (argparse; console script ``rollout = rollout.cli:main``).

Global options ``--home``, ``--registry-uri``, ``--store-url`` (else ``$ROLLOUT_*``, else the
data directory, see :mod:`rollout.settings`). With ``--api URL`` (or ``$ROLLOUT_API_URL``) and a
token (``$ROLLOUT_TOKEN`` or ``--token-file``) the verbs go through the manager's API as the
token's identity (:mod:`rollout.cli.remote`; ``--actor`` is ignored); without, they use the
store directly and are audited as such (``via: store`` and the OS user). Commands::

    rollout init [--json]                 # make the data directory (else refused when missing)
    rollout start MODEL --candidate V|@alias --env ENV [-f spec.yaml] [--actor NAME] [--json]
    rollout apply -f spec.yaml [--actor NAME] [--json]   # idempotent
    rollout plan -f spec.yaml [--json]        # changes nothing; exit 1 on a problem
    rollout status MODEL --env ENV [--json] [--watch [--interval 0.5..60]]   # live view
    rollout promote|approve|pause|resume|abort MODEL --env ENV [--actor NAME] [--json]
    rollout rollback MODEL --env ENV [--to RELEASE_ID] [--actor NAME] [--json]
    rollout history MODEL --env ENV [--json]
    rollout events ROLLOUT_ID [--json]
    rollout report ROLLOUT_ID [--json]        # the rollout, its events and releases
    rollout audit [MODEL] [--env ENV] [--identity WHO] [--limit N] [--json]   # newest first
    rollout audit --verify [--head FILE_OR_HASH:COUNT] [--json]   # exit 1 at the first bad row
    rollout token create --identity NAME --role R [--role R2] [--env E ...] [--expires 30d]
    rollout token list | revoke ID|IDENTITY   # the API's tokens (rollout.tokens; admin)
    rollout replay MODEL ROWS.csv [--label COLUMN] [--router URL] [--requests N] [--json]
                                              # rows through the router, labels to /v1/feedback
    rollout api [--host 127.0.0.1] [--port 8090] [--insecure-dev]   # the HTTP API (rollout.api)
    rollout manager [--interval 0.5] [--lease-ttl 5]   # until SIGTERM / SIGINT
    rollout demo ... | up ... | router ...    # rollout.demo.run, rollout.up, router.server

``main`` returns the exit code: 0 on success, 1 when ``plan`` finds a problem (or ``audit
--verify`` a broken row, ``reference`` none), 2 on a usage error or a :class:`RolloutError`
(printed as one line on stderr), 130 when Ctrl-C stops ``status --watch``. On the store
directly (not through ``--api``) :mod:`rollout.cli.checks` refuses first (exit 2) a data
directory that does not exist (only ``init``, ``up`` and ``demo`` make one) and an
environment that is not configured.

The modules, each one job: :mod:`~rollout.cli.parser` (argparse only, so ``--help`` answers
at once), :mod:`~rollout.cli.handlers` (one function per command; the manager and anything
heavy are imported when a command runs), :mod:`~rollout.cli.formatting` (the text tables),
:mod:`~rollout.cli.live` (``status --watch``), :mod:`~rollout.cli.checks` (the refusals) and
:mod:`~rollout.cli.remote` (the verbs through the API).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rollout.cli.parser import LOCAL_ONLY, PASS_THROUGH, build_parser, os_user
from rollout.errors import RolloutError

__all__ = ["build_parser", "main"]


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
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    from rollout.cli.handlers import HANDLERS  # after parsing: --help never loads a handler
    from rollout.settings import Settings, SettingsError

    # The settings are read once, here, and passed down with the arguments.
    try:
        args.settings = Settings.resolve(
            home=args.home, registry_uri=args.registry_uri, store_url=args.store_url
        )
    except SettingsError as exc:  # a ROLLOUT_* variable that cannot be used, named
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        api_url = args.api or args.settings.api_url
        if api_url and args.command not in LOCAL_ONLY:
            from rollout.cli.remote import read_token_file, run

            token = read_token_file(args.token_file) if args.token_file else None
            return run(args, api_url, token or args.settings.api_token)
        from rollout.cli.checks import refusal

        problem = refusal(args, args.settings)  # a missing home, an unknown environment
        if problem is not None:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        if hasattr(args, "actor") and args.actor is None:
            args.actor = args.settings.actor or os_user()
        return HANDLERS[args.command](args)
    except RolloutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
