"""What the CLI refuses before a command runs, instead of acting on a silently wrong place.

- :func:`missing_home`: the data directory (``--home``, ``$ROLLOUT_HOME``, else ``.rollout`` in
  the current folder) does not exist while the registry or the store is a SQLite file inside
  it: running there would make an empty registry and store and report "never released here".
  Only the commands of :data:`MAKES_HOME` make one; the others are refused (exit 2) with the
  absolute path, where it was looked for and how to make one. A home that holds neither (a
  PostgreSQL store and an MLflow server) need not exist.
- :func:`unknown_environments`: an environment a command names (``--env``) that is not in
  the configured order (:meth:`rollout.environments.Environments.check`: the configured
  names and the closest one). Through ``--api`` the API refuses it the same way (422).

Both are checked by :func:`rollout.cli.main` in direct mode only: through the API the server's
places and environments are the ones that count.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

from rollout.settings import Settings

MAKES_HOME = ("init", "up", "demo")  # the commands that make the data directory
NO_STORE = ("replay",)  # a client of the router: reads no registry or store


def home_source(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """Where the data directory's path came from, in words."""
    if getattr(args, "home", None):
        return "from --home"
    if environ.get("ROLLOUT_HOME"):
        return "from ROLLOUT_HOME"
    return f"the default .rollout in the current folder {Path.cwd()}"


def missing_home(settings: Settings, source: str) -> str | None:
    """Why the command may not run here (the data directory is missing), or None."""
    home = settings.home
    if home.exists():
        return None
    inside = [
        what
        for what, url in (("registry", settings.registry_uri), ("store", settings.store_url))
        if url.startswith("sqlite:///") and home in Path(url.removeprefix("sqlite:///")).parents
    ]
    if not inside:
        return None
    return (
        f"no data directory at {home} ({source}); the {' and '.join(inside)} would be made "
        "empty there. Run where the data directory is, set ROLLOUT_HOME (or --home) to its "
        "absolute path, or make a new one with `rollout init` (`rollout up` and `rollout demo` "
        "make theirs)"
    )


def unknown_environments(args: argparse.Namespace, settings: Settings) -> str | None:
    """Why an environment the arguments name is refused, or None (all configured)."""
    given = getattr(args, "env", None)
    names = [given] if isinstance(given, str) else list(given or [])
    if not names:
        return None
    from rollout.environments import load_environments
    from rollout.errors import RolloutError

    try:
        environments = load_environments(settings.environments_file)
        for name in names:
            environments.check(name, "--env")
    except RolloutError as exc:
        return str(exc)
    return None


def refusal(args: argparse.Namespace, settings: Settings) -> str | None:
    """The first reason to refuse ``args`` on the store directly, or None."""
    if args.command not in MAKES_HOME + NO_STORE:
        missing = missing_home(settings, home_source(args, os.environ))
        if missing is not None:
            return missing
    return unknown_environments(args, settings)
