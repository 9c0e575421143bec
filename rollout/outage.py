"""A registry outage during a rollout: the rollout waits it out, and says why.

The contract:

- A look or a save that needs the registry and gets no answer
  (:class:`~contract.errors.RegistryUnavailable`: refused, timed out, a 5xx, a transient
  MLflow error) does not move the rollout. The registry is needed for the artifact digest
  (before verifying, before an initial release, before promoting), for the lineage of a release
  record and to move the ``@environment`` alias. The rollout stays in its state; the first such
  look records an event in that state (``promoting → promoting``, with its ``state_change``
  webhook) and sets the rollout's reason to ``registry unavailable since 2026-11-30 16:50:01
  UTC: <short reason>; waiting``. Later ticks ask again (the registry client at most every
  ``PROBE_EVERY_S``, :mod:`rollout.registry`) without an event per tick.
- Once the registry answers, an event ``registry answers again after 42 s; resuming`` is
  recorded and the rollout moves on by its usual rules in the same tick.
- "Not found" is believed only when the registry *answered* it ``NOT_FOUND_ANSWERS`` (3) times
  in a row, at least 5 s apart (over ``NOT_FOUND_OVER_S``, 10 s): a registry restored from a
  backup, or a replica that lags, may not know the version yet. Until then the rollout waits as
  for an outage (``the registry says … not found (answer 1 of 3, one every 5 s); asking again
  before believing it``, an event per counted answer); then the check fails as it always did
  (``verifying``: aborted; ``promoting``: rolled back, the release recorded without lineage).
- Clocks: a state that does not need the registry is judged as usual during an outage. A
  ``progressing`` step's evidence is the prediction log and the canary keeps serving from the
  routers' loaded models, so its ``min_duration``/``max_duration`` count as usual (the outage
  neither passes nor fails a step; a failing canary is still rolled back at once: the plan goes
  back to the baseline through the store, and only the release record then waits for the
  registry in ``rolling_back``). Where the registry is needed nothing counts down: promoting has
  no deadline, and the smoke tests' wait for the router to load the candidate counts from the
  rollout's last update, which the resume event is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from contract.errors import RegistryUnavailable, Unavailable, VersionNotFound
from rollout.errors import NotFoundUnconfirmed

NOT_FOUND_ANSWERS = 3  # "not found" answers in a row before a rollout believes it
NOT_FOUND_OVER_S = 10.0  # ... spread over at least this long


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class NotFoundAnswers:
    """Per key (a rollout): the "not found" answers in a row, until they are believed. Answers
    count at most one per ``over_s / (answers - 1)`` seconds, so ``answers`` of them span at
    least ``over_s``, and the wait's reason changes (and is recorded) once per counted answer."""

    answers: int = NOT_FOUND_ANSWERS
    over_s: float = NOT_FOUND_OVER_S
    _seen: dict[str, list[float]] = field(default_factory=dict)

    @property
    def every_s(self) -> float:
        """The least time between two counted answers."""
        return self.over_s / max(1, self.answers - 1)

    def confirm(self, key: str, now: float, error: VersionNotFound) -> str:
        """Count ``error`` (an answer at ``now``); once it is believed, say how often it was
        answered (``answered 3 times over 10 s``); raise
        :class:`~rollout.errors.NotFoundUnconfirmed` until then."""
        seen = self._seen.setdefault(key, [])
        if not seen or now - seen[-1] >= self.every_s:
            seen.append(now)
        if len(seen) >= self.answers:
            del self._seen[key]
            return f"answered {len(seen)} times over {seen[-1] - seen[0]:.0f} s"
        raise NotFoundUnconfirmed(
            f"the registry says {error} (answer {len(seen)} of {self.answers}, one every "
            f"{self.every_s:g} s); asking again before believing it"
        )

    def forget(self, key: str) -> None:
        """Another answer came: the count starts again."""
        self._seen.pop(key, None)


@dataclass
class Holds:
    """The rollouts waiting for the registry: since when, and the kind of wait last recorded
    (a new event only when a wait starts or its kind changes)."""

    _held: dict[str, tuple[float, str]] = field(default_factory=dict)

    def hold(self, rollout_id: str, now: float, error: Unavailable) -> str | None:
        """The reason to record for ``error`` now, or None when it was already recorded."""
        since, recorded = self._held.get(rollout_id, (now, ""))
        if isinstance(error, NotFoundUnconfirmed):
            kind, reason = str(error), f"{error}; waiting"
        elif isinstance(error, RegistryUnavailable):
            kind = "unavailable"
            reason = f"registry unavailable since {_utc(since)}: {error}; waiting"
        else:
            kind = type(error).__name__
            reason = f"waiting since {_utc(since)}: {error}"
        self._held[rollout_id] = (since, kind)
        return None if kind == recorded else reason

    def resume(self, rollout_id: str, now: float) -> str | None:
        """The reason to record when a held rollout's look went through: None if it was not
        held, or held for a "not found" (the decision that follows tells what came of it)."""
        held = self._held.pop(rollout_id, None)
        if held is None or held[1] != "unavailable":
            return None
        return f"registry answers again after {max(0.0, now - held[0]):.0f} s; resuming"

    def forget(self, rollout_id: str) -> None:
        self._held.pop(rollout_id, None)

    def keep_only(self, active: set[str]) -> None:
        """Forget the rollouts that ended while they waited (a command aborted them)."""
        for gone in set(self._held) - active:
            del self._held[gone]

    def __contains__(self, rollout_id: object) -> bool:
        return rollout_id in self._held
