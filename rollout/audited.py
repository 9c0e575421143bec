"""One audited call → one audit row: shared by the CLI's mutating verbs and the API's middleware.

A :class:`Call` says what the row will say (identity, verb, model, environment, detail); the
caller fills it in while the call runs, then :func:`record` appends it with its outcome and
status to the store's :class:`~rollout.store.audit.AuditLog`. The API's status is the HTTP
status (:func:`http_outcome` maps it: ``allowed`` below 400, ``denied`` for 401/403, ``failed``
otherwise); the CLI's is its exit code (``allowed`` 0, ``failed`` 2).

The call's result stands whatever happens to its row, so :func:`record` never raises: a row
that could not be appended is reported loudly through ``report`` (by default an error with its
traceback on this module's logger; the CLI prints a warning on stderr), naming the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rollout.store.audit import AuditEntry, AuditLog, Outcome

log = logging.getLogger(__name__)


@dataclass
class Call:
    """What the audit row of one mutating call will say (filled in as the call runs)."""

    verb: str
    model: str | None = None
    environment: str | None = None
    identity: str = "anonymous"
    detail: dict[str, Any] = field(default_factory=dict)


def http_outcome(status: int) -> Outcome:
    """The outcome of an HTTP call by its status: allowed, denied (401/403) or failed."""
    if status < 400:
        return "allowed"
    return "denied" if status in (401, 403) else "failed"


def _log_error(message: str) -> None:
    log.error(message, exc_info=True)


def record(
    audit: AuditLog,
    call: Call,
    outcome: Outcome,
    status: int,
    report: Callable[[str], None] = _log_error,
) -> AuditEntry | None:
    """Append ``call``'s row; None (after ``report``-ing it) when the append failed."""
    try:
        return audit.append(
            call.identity, call.verb, call.model, call.environment, outcome, status, call.detail
        )
    except Exception as exc:  # the call's result stands; the missing row must be loud
        report(
            f"could not append to the audit log: {call.verb} {call.model or '-'} in "
            f"{call.environment or '-'} by {call.identity} ({outcome}, {status}): {exc}"
        )
        return None
