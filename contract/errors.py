"""Named errors, and the one place that maps them to HTTP statuses.

Every error this project raises on purpose is a :class:`RolloutError` of one of five kinds; an
HTTP layer answers with the kind's status (:func:`http_status`), never by reading the message::

    RolloutError
     ├── NotFound      404  no such rollout, release, model, version or alias
     ├── Forbidden     403  the caller may not do this (Unauthenticated, 401: no known credentials)
     ├── Conflict      409  not allowed in the current state, or someone else acted first
     ├── Invalid       422  the input is wrong (a spec, a reference, an artifact that changed)
     └── Unavailable   503  something this needs does not answer

    RegistryError (the model registry said no) is one of them too:
     ├── VersionNotFound   NotFound   the registry has no such model, version or alias
     ├── InvalidReference  Invalid    not a version number or '@alias', or another model's
     ├── ArtifactChanged   Invalid    the artifact's digest differs from the recorded one
     ├── ModelLoadFailed   Invalid    the version's artifact cannot be loaded
     └── RegistryUnavailable  Unavailable  the registry did not answer (refused, timed out,
                                           a 5xx, a transient MLflow error): not a "no"

Each class may name its own ``code`` (the ``error_code`` of a JSON error reply); the
manager's own errors (:mod:`rollout.errors`) subclass these kinds.
"""

from __future__ import annotations

from typing import ClassVar


class RolloutError(Exception):
    """Base of every error raised on purpose. Its message says what was wrong, what was
    expected, and where."""

    code: ClassVar[str] = "error"


class NotFound(RolloutError):
    code = "not_found"


class Forbidden(RolloutError):
    code = "forbidden"


class Unauthenticated(Forbidden):
    code = "unauthenticated"


class Conflict(RolloutError):
    code = "state_conflict"


class Invalid(RolloutError):
    code = "invalid"


class Unavailable(RolloutError):
    code = "unavailable"


class RegistryError(RolloutError):
    """The model registry refused: see the subclasses for which kind."""

    code = "registry_error"


class VersionNotFound(RegistryError, NotFound):
    code = "not_found"


class InvalidReference(RegistryError, Invalid):
    pass


class ArtifactChanged(RegistryError, Invalid):
    pass


class ModelLoadFailed(RegistryError, Invalid):
    pass


class RegistryUnavailable(RegistryError, Unavailable):
    """The registry gave no answer: a rollout waits for it, a request gets a 503."""

    code = "unavailable"


HTTP_STATUS: dict[type[RolloutError], int] = {
    NotFound: 404,
    Unauthenticated: 401,
    Forbidden: 403,
    Conflict: 409,
    Invalid: 422,
    Unavailable: 503,
}


def http_status(error: RolloutError) -> tuple[int, str]:
    """The HTTP status and ``error_code`` of ``error``, by its kind (422 for a bare one)."""
    for kind in type(error).__mro__:
        status = HTTP_STATUS.get(kind)
        if status is not None:
            return status, error.code
    return 422, error.code
