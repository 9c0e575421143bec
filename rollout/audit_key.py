"""The audit chain's key: from outside the store, never in it (:mod:`rollout.store.audit`).

:func:`audit_key` gives the key bytes of a manager-side process, in this order:

1. ``ROLLOUT_AUDIT_KEY`` (the key itself, at least 32 characters);
2. ``ROLLOUT_AUDIT_KEY_FILE`` (a file holding it; read up to 4 KiB, surrounding whitespace
   stripped; it must exist);
3. otherwise ``$ROLLOUT_HOME/audit.key``, created on first use with 32 random bytes (hex) and
   mode 0600, and logged with its path (the embedded default: a SQLite store on one machine).

A server store (PostgreSQL) configured from the environment with neither variable is refused
(:class:`AuditKeyMissing`, the message says what to set): every API and manager process of one
store must share one key, and a key made up per machine would not be shared. Keep the key away
from whoever administers the database; whoever holds it can rewrite the chain.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from rollout.errors import Invalid

log = logging.getLogger(__name__)

MIN_KEY_CHARS = 32
MAX_KEY_FILE_BYTES = 4096
KEY_FILE_NAME = "audit.key"


class AuditKeyMissing(Invalid):
    """No audit key is configured where one must be (or the one configured is unusable)."""


def audit_key(
    key: str | None, key_file: Path | None, home: Path, *, required: bool, create: bool = True
) -> bytes:
    """The key (see the module docstring for the order); with nothing configured, the home's
    key file, created when ``create`` (a verifier never makes a key up), unless ``required``
    (a server store, read from the environment)."""
    if key:
        if len(key) < MIN_KEY_CHARS:
            raise AuditKeyMissing(
                f"ROLLOUT_AUDIT_KEY: expected at least {MIN_KEY_CHARS} characters, got {len(key)}"
            )
        return key.encode()
    if key_file is not None:
        return _read(key_file, "ROLLOUT_AUDIT_KEY_FILE")
    if required:
        raise AuditKeyMissing(
            "no audit key: set ROLLOUT_AUDIT_KEY_FILE (or ROLLOUT_AUDIT_KEY) to the same secret "
            "for every API and manager process of this store; a server store gets no key made "
            "up per machine (generate one with: python -c 'import secrets; "
            "print(secrets.token_hex(32))' > audit.key; chmod 600 audit.key)"
        )
    path = home / KEY_FILE_NAME
    if not path.exists() and not create:
        raise AuditKeyMissing(
            f"no audit key: {path} does not exist (set ROLLOUT_AUDIT_KEY_FILE to the key the "
            "log was written with)"
        )
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return _read(path, "the audit key file")
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        log.warning(
            "created the audit chain's key %s (mode 0600): keep it, and a copy away from the "
            "store; without it the audit log cannot be verified",
            path,
        )
    return _read(path, "the audit key file")


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise AuditKeyMissing(f"{what}: cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_KEY_FILE_BYTES:
        raise AuditKeyMissing(f"{what}: {path} is over {MAX_KEY_FILE_BYTES} bytes")
    key = data.strip()
    if len(key) < MIN_KEY_CHARS:
        raise AuditKeyMissing(
            f"{what}: {path} holds {len(key)} characters, expected at least {MIN_KEY_CHARS}"
        )
    return key
