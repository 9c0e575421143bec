"""Named errors. Every message says what was wrong, what was expected, and where.

RolloutError
 ├── RegistryError        the registry has no such model/version/alias, or an artifact changed
 ├── SpecError            a rollout spec is invalid (names the field)
 ├── StateError           a command is not allowed in the rollout's current state
 └── ConflictError        someone else changed the rollout first (optimistic concurrency)
"""


class RolloutError(Exception):
    """Base of every error this package raises on purpose."""


class RegistryError(RolloutError):
    pass


class SpecError(RolloutError):
    pass


class StateError(RolloutError):
    pass


class ConflictError(RolloutError):
    pass
