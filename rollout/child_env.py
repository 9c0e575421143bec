"""Settings a process puts in its own environment for itself, kept out of its children's.

Some libraries read their settings only from the environment: MLflow reads its HTTP timeout and
retries there at each request. The manager's registry sets bounded ones
(:mod:`rollout.registry`) with :func:`default_env`, unless the operator set them.
:func:`child_environ` is the environment for a child process without those: a router started by
``rollout up`` or the demo keeps MLflow's own defaults. Values the operator set, and any changed
since, are passed on.
"""

from __future__ import annotations

import os

_SET_HERE: dict[str, str] = {}  # name -> the value this process set itself


def default_env(name: str, value: str) -> None:
    """Set ``name`` to ``value`` in this process's environment unless it is set already."""
    if name not in os.environ:
        os.environ[name] = value
        _SET_HERE[name] = value


def child_environ() -> dict[str, str]:
    """This process's environment without what :func:`default_env` set in it."""
    return {k: v for k, v in os.environ.items() if _SET_HERE.get(k) != v}
