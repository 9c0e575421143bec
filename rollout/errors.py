"""The manager's named errors, built on the five kinds of :mod:`contract.errors`.

::

    RolloutError
     ├── NotFound       404   NoSuchRollout, NoActiveRollout, VersionNotFound
     ├── Forbidden      403   Unauthenticated (401)
     ├── Conflict       409   StateError (not allowed now), ConflictError (someone acted first)
     ├── Invalid        422   SpecError, InvalidReference, ArtifactChanged, ModelLoadFailed
     └── Unavailable    503   RegistryUnavailable (the registry gave no answer),
                              NotFoundUnconfirmed (its "not found" is not believed yet)

:func:`~contract.errors.http_status` maps any of them to its HTTP status and error code, by
type; nothing matches on a message.
"""

from __future__ import annotations

from contract.errors import (
    ArtifactChanged,
    Conflict,
    Forbidden,
    Invalid,
    InvalidReference,
    ModelLoadFailed,
    NotFound,
    RegistryError,
    RegistryUnavailable,
    RolloutError,
    Unauthenticated,
    Unavailable,
    VersionNotFound,
    http_status,
)

__all__ = [
    "ArtifactChanged",
    "Conflict",
    "ConflictError",
    "Forbidden",
    "Invalid",
    "InvalidReference",
    "ModelLoadFailed",
    "NoActiveRollout",
    "NoSuchRollout",
    "NotFound",
    "NotFoundUnconfirmed",
    "RegistryError",
    "RegistryUnavailable",
    "RolloutError",
    "SpecError",
    "StateError",
    "Unauthenticated",
    "Unavailable",
    "VersionNotFound",
    "http_status",
]


class SpecError(Invalid):
    """A rollout spec is invalid; the message names the field path."""

    code = "invalid_spec"


class StateError(Conflict):
    """Not allowed in the rollout's (or the environment's) current state."""


class ConflictError(Conflict):
    """Someone else changed the rollout first (optimistic concurrency); reload and retry."""


class NoSuchRollout(NotFound):
    """No rollout has this id."""


class NoActiveRollout(NotFound):
    """The model has no active rollout in the environment."""


class NotFoundUnconfirmed(Unavailable):
    """The registry answered "not found" too few times yet to be believed
    (:mod:`rollout.outage`): a rollout waits and asks again."""
