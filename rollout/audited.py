"""One audited call → one audit row: shared by the CLI's mutating verbs and the API's middleware.

A :class:`Call` says what the row will say (identity, verb, model, environment, detail, the
caller's address and user agent); the caller fills it in while the call runs, then
:func:`record` appends it with its outcome and status to the store's
:class:`~rollout.store.audit.AuditLog`. The API's status is the HTTP status
(:func:`http_outcome` maps it: ``allowed`` for 2xx, ``redirected`` for 3xx, which changed
nothing and is not recorded, ``denied`` for 401/403, ``failed`` otherwise); the CLI's is its
exit code (``allowed`` 0, ``failed`` 2).

Denied calls cost an anonymous caller nothing, so they must not cost the log a row each:
:class:`Denials` (one per API process) lets the first of identical denials (same address,
identity, verb, path and status) within :data:`DENIAL_WINDOW_S` through as a row, and at most
:data:`DENIALS_PER_ADDRESS` such rows per address per window; the rest are counted, and
:meth:`Denials.due` gives the summary rows when the window closes: one per group that had
repeats, and one per address for its denials beyond the limit (``over_limit``); a summary's
``count`` says how many denials it stands for, its detail ``suppressed: true``. So one address
costs at most ``2 * DENIALS_PER_ADDRESS + 1`` rows a window however many calls it makes, all
addresses together at most ``2 * MAX_DENIAL_ROWS + MAX_OVERFLOW_ADDRESSES + 1``, and every
denial is still counted.

The call's result stands whatever happens to its row, so :func:`record` never raises: a row
that could not be appended is reported loudly through ``report`` (by default an error with its
traceback on this module's logger; the CLI prints a warning on stderr), naming the call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rollout.store.audit import AuditEntry, AuditLog, Outcome

log = logging.getLogger(__name__)

DENIAL_WINDOW_S = 60.0
DENIALS_PER_ADDRESS = 20  # denied rows one address may cause per window (the rest are counted)
MAX_DENIAL_ROWS = 600  # denied rows per window from all addresses together (the rest: counted)
MAX_OVERFLOW_ADDRESSES = 1_000  # addresses with their own over-limit summary (beyond: one for all)


@dataclass
class Call:
    """What the audit row of one mutating call will say (filled in as the call runs)."""

    verb: str
    model: str | None = None
    environment: str | None = None
    identity: str = "anonymous"
    detail: dict[str, Any] = field(default_factory=dict)
    address: str | None = None  # the caller's address (API) or host (CLI)
    user_agent: str | None = None  # the caller's User-Agent (API) or OS user (CLI)
    path: str = ""  # the request path (API): part of what makes denials identical


def http_outcome(status: int) -> Outcome | Literal["redirected"]:
    """The outcome of an HTTP call by its status: allowed (2xx), redirected (3xx: nothing
    happened), denied (401/403) or failed."""
    if status < 300:
        return "allowed"
    if status < 400:
        return "redirected"
    return "denied" if status in (401, 403) else "failed"


@dataclass
class _Group:
    call: Call
    status: int
    first_ts: float
    last_ts: float
    suppressed: int = 0
    over_limit: bool = False  # the address's other denials beyond its rows per window


class Denials:
    """Rate limit and deduplicate denied calls' rows (see the module docstring); thread-safe."""

    def __init__(
        self,
        window_s: float = DENIAL_WINDOW_S,
        per_address: int = DENIALS_PER_ADDRESS,
        max_rows: int = MAX_DENIAL_ROWS,
    ) -> None:
        self.window_s = window_s
        self.per_address = per_address
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._window_start = -float("inf")
        self._groups: dict[tuple[str, str, str, str, int], _Group] = {}
        self._rows: dict[str, int] = {}  # rows let through per address this window
        self._overflow: dict[str, _Group] = {}  # per address (or "*"), beyond the limits

    def admit(self, call: Call, status: int, now: float) -> tuple[bool, list[tuple[Call, int]]]:
        """Whether this denial gets its own row now, and the summary rows now due."""
        with self._lock:
            due = self._close(now)
            address = call.address or "-"
            key = (address, call.identity, call.verb, call.path, status)
            group = self._groups.get(key)
            if group is None:
                over = self._rows.get(address, 0) >= self.per_address
                if over or len(self._groups) >= self.max_rows:  # one summary per address
                    slot = address
                    if slot not in self._overflow and len(self._overflow) >= MAX_OVERFLOW_ADDRESSES:
                        slot = "*"  # so many addresses: one summary for the rest of them
                    group = self._overflow.get(slot)
                    if group is None:
                        template = call if slot == address else replace(call, address="*")
                        group = self._overflow[slot] = _Group(template, status, now, now, 0, True)
                else:
                    self._groups[key] = _Group(call, status, now, now)
                    self._rows[address] = self._rows.get(address, 0) + 1
                    return True, due
            if group.suppressed == 0:
                group.first_ts = now  # of the denials the summary stands for
            group.suppressed += 1
            group.last_ts = now
            return False, due

    def due(self, now: float, *, all_of_them: bool = False) -> list[tuple[Call, int]]:
        """Summary rows whose window closed (all pending ones with ``all_of_them``)."""
        with self._lock:
            return self._close(float("inf") if all_of_them else now)

    def _close(self, now: float) -> list[tuple[Call, int]]:
        if now < self._window_start + self.window_s:
            return []
        groups = [*self._groups.values(), *self._overflow.values()]
        self._groups, self._overflow, self._rows = {}, {}, {}
        self._window_start = now if now != float("inf") else self._window_start
        out: list[tuple[Call, int]] = []
        for group in groups:
            if group.suppressed == 0:
                continue
            call = Call(
                group.call.verb,
                group.call.model,
                group.call.environment,
                group.call.identity,
                {
                    "suppressed": True,
                    "over_limit": group.over_limit,
                    "status_code": group.status,
                    "path": group.call.path,
                    "first_ts": group.first_ts,
                    "last_ts": group.last_ts,
                    "window_s": self.window_s,
                },
                group.call.address,
                group.call.user_agent,
                group.call.path,
            )
            out.append((call, group.suppressed))
        return out


def summary_status(call: Call) -> int:
    """The status of a summary row of :class:`Denials` (kept in its detail)."""
    status = call.detail.get("status_code")
    return status if isinstance(status, int) else 403


def _log_error(message: str) -> None:
    log.error(message, exc_info=True)


def record(
    audit: AuditLog,
    call: Call,
    outcome: Outcome,
    status: int,
    report: Callable[[str], None] = _log_error,
    count: int = 1,
) -> AuditEntry | None:
    """Append ``call``'s row (standing for ``count`` calls); None (after ``report``-ing it)
    when the append failed."""
    try:
        return audit.append(
            call.identity,
            call.verb,
            call.model,
            call.environment,
            outcome,
            status,
            call.detail,
            address=call.address,
            user_agent=call.user_agent,
            count=count,
        )
    except Exception as exc:  # the call's result stands; the missing row must be loud
        report(
            f"could not append to the audit log: {call.verb} {call.model or '-'} in "
            f"{call.environment or '-'} by {call.identity} ({outcome}, {status}): {exc}"
        )
        return None
